"""Uploading a staged folder with the user's token in one commit, and [`publish`]: stage, validate, upload."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MissingTokenError
from .staging import StagedFolder, check_repo_id, stage_for_hub
from .validation import check_staged_folder

logger = logging.getLogger(__name__)


def get_hub_token() -> str:
    """The token of `HF_TOKEN` or of the cached `hf auth login`; a clear error when there is none."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise MissingTokenError(
            "No Hugging Face token found. Run `hf auth login` (or `huggingface-cli login`), or set the HF_TOKEN "
            "environment variable to a token with write access."
        )
    return token


def upload_staged_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
):
    """
    Create `repo_id` if it does not exist and upload every file of the staged `folder` in one commit, so the
    repository is never seen half-updated. The folder is checked again first; the token is never logged.
    Returns the `CommitInfo`.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    check_repo_id(repo_id)
    folder = Path(folder)
    files = check_staged_folder(folder)
    api = HfApi(token=token or get_hub_token())
    repo_url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    logger.info("Uploading %d files to %s in one commit.", len(operations), repo_url.repo_id)
    commit = api.create_commit(
        repo_url.repo_id,
        operations=operations,
        commit_message=commit_message or f"Upload {repo_url.repo_id.split('/')[-1]} with resp_audio_hf",
        repo_type="model",
        revision=revision,
    )
    logger.info("Uploaded %s: %s", repo_url.repo_id, commit.commit_url)
    return commit


@dataclass
class PublishResult:
    """What [`publish`] did: the staged folder (removed after upload unless kept) and the commit, if uploaded."""

    staged: StagedFolder
    commit: Any = None


def publish(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    benchmark: str | os.PathLike | None = None,
    family: str | None = None,
    training_data: str | None = None,
    datasets: list[str] | tuple[str, ...] = (),
    template_dir: str | os.PathLike | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
) -> PublishResult:
    """
    Stage, validate and (unless `dry_run`) upload `model_dir` to `repo_id`. A dry run needs no token and keeps the
    staged folder at `output_dir` (default `hub_staging/<namespace>--<name>`); an upload stages into `output_dir` if
    given and keeps it, otherwise into a temporary folder. The token is looked up before any work so a missing login
    fails fast.
    """
    token = None if dry_run else get_hub_token()
    if dry_run and output_dir is None:
        output_dir = Path("hub_staging") / repo_id.replace("/", "--")
    stage_options = dict(
        benchmark=benchmark, family=family, training_data=training_data, datasets=datasets,
        template_dir=template_dir, overwrite=overwrite,
    )
    if output_dir is not None:
        staged = stage_for_hub(model_dir, output_dir, repo_id, **stage_options)
        if dry_run:
            return PublishResult(staged=staged)
        commit = upload_staged_folder(
            staged.path, repo_id, private=private, token=token, commit_message=commit_message, revision=revision
        )
        return PublishResult(staged=staged, commit=commit)
    with tempfile.TemporaryDirectory(prefix="resp_audio_hub_") as scratch:
        staged = stage_for_hub(model_dir, Path(scratch) / "staged", repo_id, **stage_options)
        commit = upload_staged_folder(
            staged.path, repo_id, private=private, token=token, commit_message=commit_message, revision=revision
        )
    return PublishResult(staged=staged, commit=commit)
