"""The one progress bar of the package: huggingface_hub's tqdm, so `HF_HUB_DISABLE_PROGRESS_BARS=1` (or
`huggingface_hub.utils.disable_progress_bars()`) silences every bar, the Hub's downloads and ours alike."""

from __future__ import annotations


def progress_bar(total: int | None = None, *, desc: str, unit: str = "it", enabled: bool = True, **kwargs):
    """
    A tqdm bar (`tqdm.auto` style) that is disabled when `enabled` is false or when huggingface_hub's progress bars
    are disabled. `kwargs` go to tqdm (`initial`, `unit_scale`, `leave`, ...). Always returns a bar, so callers need
    no `None` checks: a disabled bar ignores `update` and `close`.
    """
    from huggingface_hub.utils import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, name="resp_audio_hf", **kwargs)


__all__ = ["progress_bar"]
