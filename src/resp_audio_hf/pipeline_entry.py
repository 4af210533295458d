"""
The `audio-classification` pipeline entry a saved classifier carries (`CUSTOM_PIPELINES`), and the check that drops it
from a configuration where this package has registered its pipeline (`without_registered_pipeline`).

Shipped as remote code and imported by the configurations, so it imports only the standard library: the Auto-class
registration (`auto_classes`) reads the configurations' records, and this module keeps the two from importing each
other.
"""

from __future__ import annotations

import sys

TASK = "audio-classification"
PIPELINE_CLASS = "RespAudioClassificationPipeline"
# The `custom_pipelines` entry of a saved classifier's config.json: in a process without this package,
# `pipeline(TASK, model=folder, trust_remote_code=True)` loads the class from the folder's copy of its module.
CUSTOM_PIPELINES = {
    TASK: {
        "impl": f"pipeline_resp_audio.{PIPELINE_CLASS}",
        "pt": ["AutoModelForAudioClassification"],
        "type": "audio",
    }
}


def _pipeline_is_registered() -> bool:
    """Whether `resp_audio_hf.pipeline_resp_audio.register_pipeline` has run in this process."""
    pipelines = sys.modules.get("transformers.pipelines")
    if pipelines is None:
        return False
    implementation = pipelines.PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl")
    return getattr(implementation, "__name__", None) == PIPELINE_CLASS


def without_registered_pipeline(config_kwargs: dict) -> dict:
    """
    `config_kwargs` without the `custom_pipelines` entry where this package has registered its pipeline. Saved
    classifiers name their pipeline in `custom_pipelines` for processes without this package, where
    `pipeline(..., trust_remote_code=True)` builds it from the folder; where the package has registered it for the
    task already, transformers would demand trust_remote_code for the entry.
    """
    if config_kwargs.get("custom_pipelines") and _pipeline_is_registered():
        config_kwargs.pop("custom_pipelines")
    return config_kwargs


__all__ = ["CUSTOM_PIPELINES", "PIPELINE_CLASS", "TASK", "without_registered_pipeline"]
