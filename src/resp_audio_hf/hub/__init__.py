"""Publishing a trained checkpoint to the Hugging Face Hub, with remote code and a model card.

The flow is stage -> validate -> upload:

1. [`stage_for_hub`] loads a checkpoint folder written by `save_pretrained`, re-saves it into a staging folder with
   `model.safetensors`, the feature extractor, the remote-code files (`save_pretrained` copies them because the
   classes are registered for the Auto classes) and a `README.md` model card rendered from `model_cards/`.
2. [`check_staged_folder`] and [`validate_staged_folder`] refuse a folder with a missing file, an incomplete
   `auto_map`, weights that do not reproduce the source model, non-finite outputs, or remote code that does not load
   in a Python process where `resp_audio_hf` cannot be imported.
3. [`upload_staged_folder`] creates the repository if needed and uploads every file in one commit, so users never
   see a half-updated repository.

Benchmark results come from the `results.json` written by the OPERA harness (`resp-audio-hf bench`); see
[`load_benchmark_results`] for the fields read. Its weight fingerprint must match the checkpoint being published, so
a card never shows another model's numbers.

Modules: `results` (benchmark results for the card), `card` (model card), `checkpoint` (loading a checkpoint folder),
`staging` (the staged folder), `validation` (checks, including `remote_code_check.py` run in a child process) and
`upload` (token, upload, [`publish`]). What `__all__` lists is importable from `resp_audio_hf.hub`; the rest from its module.
"""

from .card import CardFacts, families_with_cards, load_card_facts, render_model_card
from .checkpoint import load_checkpoint
from .errors import HubPublishError, MissingTokenError
from .results import BenchmarkResult, TaskResult, load_benchmark_results
from .staging import StagedFolder, stage_for_hub
from .upload import PublishResult, get_hub_token, publish, upload_staged_folder
from .validation import check_staged_folder, load_without_package, validate_staged_folder

__all__ = [
    "BenchmarkResult",
    "HubPublishError",
    "MissingTokenError",
    "CardFacts",
    "PublishResult",
    "StagedFolder",
    "TaskResult",
    "check_staged_folder",
    "get_hub_token",
    "load_benchmark_results",
    "load_checkpoint",
    "families_with_cards",
    "load_card_facts",
    "load_without_package",
    "publish",
    "render_model_card",
    "stage_for_hub",
    "upload_staged_folder",
    "validate_staged_folder",
]
