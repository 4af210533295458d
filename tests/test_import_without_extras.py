"""The package imports and runs its core (config, feature extractor, model, collator) without the optional extras."""

import subprocess
import sys
import textwrap

EXTRAS = ["datasets", "sklearn", "matplotlib", "accelerate", "pandas", "torchcodec", "soundfile", "jinja2", "openpyxl"]


def test_core_works_with_every_extra_missing():
    script = textwrap.dedent(
        f"""
        import sys
        for name in {EXTRAS!r}:
            sys.modules[name] = None  # makes `import name` fail and find_spec(name) report it absent
        import numpy as np
        import resp_audio_hf
        from resp_audio_hf import RespAudioCollator, RespAudioConfig, RespAudioFeatureExtractor, RespAudioModel

        config = RespAudioConfig.from_preset("tiny-m2d")
        fe = RespAudioFeatureExtractor.from_model_config(config)
        batch = RespAudioCollator(fe, sampling_rate=8000)(
            [{{"audio": np.random.default_rng(0).standard_normal(8000).astype(np.float32)}}]
        )
        out = RespAudioModel(config)(batch["input_values"], attention_mask=batch["attention_mask"])
        assert out.pooler_output.shape == (1, config.pooled_size)
        loaded = sorted(name for name in {EXTRAS!r} if sys.modules.get(name) is not None)
        assert not loaded, loaded
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": ""}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
