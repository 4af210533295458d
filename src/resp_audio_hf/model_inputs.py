"""
The checks every model family's `forward` runs on its inputs before encoding them: the shape of the log-mel frames,
the mask that goes with them and finite values. Shipped as remote code beside each family's modeling file, so it
needs only torch.
"""

from __future__ import annotations

import torch

# The inputs every family's `forward` takes, documented once (transformers' `add_start_docstrings_to_model_forward`).
MODEL_INPUTS_DOCSTRING = r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, frames, num_mel_bins)`):
                Normalised log-mel spectrogram from [`RespAudioFeatureExtractor`].
            attention_mask (`torch.LongTensor` of shape `(batch_size, frames)`, *optional*):
                1 for real frames, 0 for padding (padding follows the real frames).
"""


def check_finite(input_values: torch.Tensor) -> None:
    """Refuse NaN or infinite features, naming the clips that hold them: NaN or inf would spread through the encoder
    (attention, or a convolution's receptive field and BatchNorm) and come out as a NaN embedding."""
    finite = torch.isfinite(input_values)
    if not bool(finite.all()):
        clips = (~finite).flatten(1).any(dim=1).nonzero()[:, 0].tolist()
        raise ValueError(
            f"input_values of clip(s) {clips} contain {int((~finite).sum())} NaN or infinite values; the feature "
            "extractor refuses such audio, so these features did not come from it unchanged."
        )


def check_model_inputs(
    input_values: torch.Tensor, attention_mask: torch.Tensor | None, num_mel_bins: int, min_frames: int = 1
) -> None:
    """
    `input_values` must be `[batch, frames, num_mel_bins]` log-mel frames, at least `min_frames` of them (the
    shortest input the encoder has an output for), `attention_mask` (if given) one mask value per frame, and every
    value finite. The finite check reads the data, so a compiled graph leaves it out rather than break in two.
    """
    if input_values.ndim != 3 or input_values.shape[-1] != num_mel_bins:
        raise ValueError(
            f"input_values must be [batch, frames, {num_mel_bins}] log-mel frames, got shape "
            f"{tuple(input_values.shape)}; run the audio through the model's feature extractor "
            "(RespAudioFeatureExtractor) first."
        )
    batch, num_frames, _ = input_values.shape
    if num_frames < min_frames:
        raise ValueError(f"Need at least {min_frames} frames (one patch), got {num_frames}.")
    if attention_mask is not None and tuple(attention_mask.shape) != (batch, num_frames):
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but input_values has {batch} clips of "
            f"{num_frames} frames: pass the mask the feature extractor returned with these input_values."
        )
    if not torch.compiler.is_compiling():
        check_finite(input_values)


def checked_frame_block(block, num_mel_bins: int, device: torch.device) -> torch.Tensor:
    """One block of a recording's log-mel frames streamed to `pool_frame_stream`, as a float32 `[frames,
    num_mel_bins]` tensor on `device`; refused (naming the shape, or the NaN / infinite values) otherwise."""
    block = torch.as_tensor(block, dtype=torch.float32).to(device)
    if block.ndim != 2 or block.shape[1] != num_mel_bins:
        raise ValueError(f"Frame blocks must be [frames, {num_mel_bins}] log-mel frames, got {tuple(block.shape)}.")
    check_finite(block[None])
    return block


__all__ = ["MODEL_INPUTS_DOCSTRING", "check_finite", "check_model_inputs", "checked_frame_block"]
