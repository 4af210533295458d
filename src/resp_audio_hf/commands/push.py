"""`resp-audio-hf push`: publish a resp_audio_hf checkpoint to the Hugging Face Hub with remote code and a model card.

MODEL_DIR is a folder written by `save_pretrained`. The token comes from HF_TOKEN or `hf auth login` and is never
printed. `--dry-run` writes the exact folder that would be uploaded (default hub_staging/<org>--<name>) and lists it
without contacting the Hub. The logic lives in `resp_audio_hf.hub`; this is its command line (also
`scripts/push_to_hub.py`).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from pathlib import Path

from .errors import CommandFailed, run_command

EXAMPLES = """\
examples:
  resp-audio-hf push my-resp-passt --repo-id org/resp-passt --benchmark outputs/bench/my-resp-passt/results.json --dry-run
  HF_TOKEN=hf_... resp-audio-hf push my-resp-passt --repo-id org/resp-passt --private
"""


def add_push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", type=Path, help="checkpoint folder written by save_pretrained")
    parser.add_argument("--repo-id", required=True, help="Hub repository, namespace/name (e.g. org/resp-passt)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--dry-run", action="store_true", help="stage and validate only; list the staged folder")
    parser.add_argument("--output-dir", type=Path, help="where to write the staged folder (kept)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    parser.add_argument("--benchmark", type=Path, help="OPERA results JSON of `resp-audio-hf bench` for the card")
    from ..hub.card import families_with_cards

    parser.add_argument("--family", choices=families_with_cards(),
                        help="model family whose card facts to use (default: the configuration's)")
    parser.add_argument("--training-data", type=Path,
                        help="Markdown file describing the training data, for the card's Training data section")
    parser.add_argument("--dataset", action="append", default=[], dest="datasets",
                        help="training data set to list in the card's front matter (repeatable)")
    parser.add_argument("--template-dir", type=Path, help="folder of template.md and the family YAML files")
    parser.add_argument("--commit-message", help="message of the upload commit")
    parser.add_argument("--revision", help="branch to commit to (default: main)")


def run_push(args: argparse.Namespace) -> int:
    from ..hub import HubPublishError, publish

    # Every parameter of `publish` is a flag of the same name (tests/test_hub.py checks that they stay in step),
    # so the command passes them through by name; only --training-data is read from its file first.
    options = {name: getattr(args, name) for name in inspect.signature(publish).parameters}
    try:
        options["training_data"] = args.training_data.read_text() if args.training_data else None
        result = publish(**options)
    except (HubPublishError, OSError) as error:  # OSError includes the Hub's HTTP errors (HfHubHTTPError)
        raise CommandFailed(error) from error
    staged = result.staged
    if result.commit is None:
        print(f"Dry run: {len(staged.files)} files for {args.repo_id} staged in {staged.path}")
    else:
        print(f"Uploaded {len(staged.files)} files to {args.repo_id} in one commit: {result.commit.commit_url}")
    print(staged.listing())
    return 0



def main(argv: list[str] | None = None) -> int:
    """The command as a standalone program (`scripts/push_to_hub.py`), logging at INFO level."""
    parser = argparse.ArgumentParser(
        prog="push_to_hub.py", description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_push_arguments(parser)
    args = parser.parse_args(argv)
    from ..logging_setup import configure_logging

    configure_logging(logging.INFO)
    return run_command(run_push, args)


if __name__ == "__main__":
    sys.exit(main())
