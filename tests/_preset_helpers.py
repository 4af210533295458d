"""Presets the tests run on, derived from `MODEL_FAMILIES`: a family added there is tested without editing a list."""

from resp_audio_hf import MODEL_FAMILIES, PRESETS

# Each family's tiny preset (`tiny-passt`, ...), in `MODEL_FAMILIES` order; EfficientAT, configured apart from
# `RespAudioConfig`, has no presets.
TINY_PRESETS = tuple(
    preset for family in MODEL_FAMILIES.values() for preset in family.presets if preset.startswith("tiny-")
)
# One tiny preset per front-end sampling rate (the last family of each rate: `tiny-passt` at 32 kHz, `tiny-m2d` at
# 16 kHz), for tests of what depends on the model's rate alone.
ONE_TINY_PRESET_PER_RATE = tuple({PRESETS[preset]["sampling_rate"]: preset for preset in TINY_PRESETS}.values())
