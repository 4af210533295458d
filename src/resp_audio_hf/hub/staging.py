"""Building the staged folder: the exact files that would be uploaded (weights, feature extractor, remote code, model
card), validated before it is moved into place."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..auto_classes import auto_map_of
from ..configuration_resp_audio import MODEL_FAMILIES, family_of_config
from ..data.file_io import atomic_folder
from .card import render_model_card
from .checkpoint import load_checkpoint
from .errors import HubPublishError
from .results import BenchmarkResult, check_benchmark_matches, load_benchmark_results
from .validation import CARD_FILE, STAGED_FILES, check_staged_folder, validate_staged_folder

logger = logging.getLogger(__name__)


def save_with_remote_code(model, feature_extractor, folder: str | os.PathLike) -> None:
    """
    Save `model` and `feature_extractor` into `folder` with their remote code, for any family of the package.

    The remote code is the package's own modules: importing `resp_audio_hf` registers its classes for the Auto
    classes, so `save_pretrained` copies the module of each saved class and the modules it imports. The package is
    the code's only source; the repository's `pretrained/` folders hold weights and configuration only, and the
    remote code is written here, when a folder is staged.
    """
    # Seeding auto_map lets save_pretrained add the entries for every Auto class, not only the saved class's.
    model.config.auto_map = auto_map_of(model)
    model.save_pretrained(folder)
    feature_extractor.save_pretrained(folder)


@dataclass
class StagedFolder:
    """A validated folder ready for upload: `files` maps each path relative to `path` to its size in bytes."""

    path: Path
    repo_id: str
    files: dict[str, int] = field(default_factory=dict)

    def listing(self) -> str:
        """One line per file: size and path."""
        return "\n".join(f"{size:>14,d}  {name}" for name, size in self.files.items())


def stage_for_hub(
    model_dir: str | os.PathLike,
    staging_dir: str | os.PathLike,
    repo_id: str,
    *,
    benchmark: BenchmarkResult | str | os.PathLike | None = None,
    family: str | None = None,
    training_data: str | None = None,
    datasets: list[str] | tuple[str, ...] = (),
    template_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    check_remote_code: bool = True,
) -> StagedFolder:
    """
    Write the exact folder that would be uploaded for `model_dir` to `staging_dir`, and validate it.

    The folder is built and validated next to `staging_dir` and only then moved into place, so `staging_dir` is
    either absent or complete. An existing `staging_dir` is replaced only with `overwrite=True`.
    """
    check_repo_id(repo_id)
    staging_dir = Path(staging_dir)
    if staging_dir.resolve() == Path(model_dir).resolve():
        raise HubPublishError(f"Stage into another folder than the checkpoint {model_dir} itself.")
    if staging_dir.exists():
        _check_replaceable(staging_dir, overwrite)
    if isinstance(benchmark, (str, os.PathLike)):
        benchmark = load_benchmark_results(benchmark)
    model, feature_extractor = load_checkpoint(model_dir)
    if benchmark is not None:
        check_benchmark_matches(benchmark, model, feature_extractor)
    card_family = MODEL_FAMILIES[family] if family is not None else family_of_config(model.config)
    if card_family.card is not None:
        card = render_model_card(
            model.config, repo_id, benchmark=benchmark, family=family, num_parameters=model.num_parameters(),
            training_data=training_data, datasets=datasets, template_dir=template_dir,
        ).content
    else:
        card = _own_card(Path(model_dir), card_family.name, benchmark)

    with atomic_folder(staging_dir) as building:
        save_with_remote_code(model, feature_extractor, building)
        (building / CARD_FILE).write_text(card, encoding="utf-8")
        files = check_staged_folder(building)
        validate_staged_folder(building, reference_model=model, isolated=check_remote_code)
    staged = StagedFolder(staging_dir, repo_id, {name: (staging_dir / name).stat().st_size for name in files})
    logger.info("Staged %d files for %s in %s.", len(staged.files), repo_id, staging_dir)
    return staged


def _own_card(model_dir: Path, family: str, benchmark) -> str:
    """The card of a family published without the card template (its record names no `card`): the checkpoint
    folder's own README.md, uploaded as it is."""
    if benchmark is not None:
        raise HubPublishError(
            f"The {family} family has no card template to put benchmark results in; publish without them, or add "
            "its card facts (model_cards/<card>.yaml and `card` in its MODEL_FAMILIES record)."
        )
    path = model_dir / CARD_FILE
    if not path.is_file():
        raise HubPublishError(
            f"{model_dir} has no {CARD_FILE}: the {family} family has no card template, so the folder's own model "
            "card is published; write it first."
        )
    return path.read_text(encoding="utf-8")


def _check_replaceable(staging_dir: Path, overwrite: bool) -> None:
    if not overwrite:
        raise HubPublishError(
            f"{staging_dir} already exists; choose another folder or pass overwrite=True (--overwrite)."
        )
    # Overwriting deletes the folder: only ever do that to an earlier staging folder, never to e.g. the checkpoint.
    existing = {p.name for p in staging_dir.iterdir()} if staging_dir.is_dir() else {staging_dir.name}
    if not existing <= STAGED_FILES:
        raise HubPublishError(
            f"{staging_dir} holds files a staging folder never has ({sorted(existing - STAGED_FILES)}); "
            "refusing to replace it. Choose an empty or new folder."
        )


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise HubPublishError(f"Invalid repository id {repo_id!r}: {error}") from None
    if repo_id.count("/") != 1:
        raise HubPublishError(f"Repository id must be 'namespace/name' (e.g. 'org/resp-passt'), got {repo_id!r}.")
