"""
Run as a script in a child process by `validation.load_without_package`:

    python remote_code_check.py FOLDER PROBE_NPZ OUTPUT_SAFETENSORS

It blocks `resp_audio_hf` so the remote code cannot lean on the installed package, loads FOLDER through the Auto
classes with `trust_remote_code=True` as a Hub user would, and saves the outputs on the probe clips. It therefore
imports nothing from this package, though it ships inside it.
"""

import importlib.abc
import sys
from pathlib import Path


class BlockPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "resp_audio_hf":
            raise ImportError(f"{name} is blocked: the remote code must not need the resp_audio_hf package")


def main(folder: str, probe_file: str, output_file: str) -> None:
    sys.meta_path.insert(0, BlockPackage())
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification

    probe = np.load(probe_file)
    clips = [probe[f"clip{i}"] for i in range(len(probe.files) - 1)]
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    inputs = extractor(clips, sampling_rate=int(probe["sampling_rate"]), return_tensors="pt")
    outputs = {}
    with torch.no_grad():
        encoder = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        encoded = encoder(**inputs)
        outputs["pooler_output"] = encoded.pooler_output
        outputs["last_hidden_state"] = encoded.last_hidden_state
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        if "AutoModelForAudioClassification" in config.auto_map:
            classifier = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True).eval()
            outputs["logits"] = classifier(**inputs).logits
    save_file({k: v.contiguous() for k, v in outputs.items()}, output_file)


if __name__ == "__main__":
    # Python puts this script's folder (resp_audio_hf/hub/) first on sys.path: drop it, so that its sibling modules
    # cannot be imported as top-level ones (`python -c`, which this replaces, put the empty working folder there).
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    main(*sys.argv[1:4])
