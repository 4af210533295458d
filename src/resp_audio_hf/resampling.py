"""Resampling at any integer rate in bounded memory: torchaudio's windowed-sinc filter, without its huge kernels.

`torchaudio.functional.resample` builds one polyphase kernel of `new / gcd` phases by `2 * width + orig / gcd` taps.
For rates that share no factor with the target (22,051 Hz to 32 kHz) that is 32,000 x 22,065 floats (2.8 GB, and
12.5 GB at the peak for 8,000 samples). Such pairs are computed here by direct evaluation of the same filter (Hann-
windowed sinc, `lowpass_filter_width` 6, rolloff 0.99: torchaudio's defaults) at each output sample, a block of output
samples at a time: memory is one block times the filter's taps, whatever the rates. The output equals torchaudio's
within float32 round-off (the same weights, summed in another order); pairs with a small kernel still go through
torchaudio, unchanged.

This module is copied beside `feature_extraction_resp_audio.py` as remote code: it imports nothing from the package.
"""

from __future__ import annotations

import math

import torch

# torchaudio's defaults (sinc_interp_hann): zero crossings of the sinc on each side, and the cut-off below Nyquist.
LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99
# Above this many kernel elements (16 MiB of float32), resample by direct evaluation rather than torchaudio's kernel.
MAX_POLYPHASE_KERNEL_ELEMENTS = 1 << 22
# Output samples x filter taps evaluated at once by the direct method (each float64 temporary is 4 MiB).
DIRECT_BLOCK_ELEMENTS = 1 << 19


def polyphase_kernel_elements(orig_freq: int, new_freq: int) -> int:
    """Elements of the kernel `torchaudio.functional.resample` would build for this pair of rates."""
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * ROLLOFF))
    return new * (2 * width + orig)


def resampled_length(length: int, orig_freq: int, new_freq: int) -> int:
    """Samples of a `length`-sample signal resampled from `orig_freq` to `new_freq` (torchaudio's rounding, up)."""
    return -(-int(length) * int(new_freq) // int(orig_freq))


def input_reach(orig_freq: int, new_freq: int) -> int:
    """Input samples on either side of an output sample's position that its filter reaches."""
    return math.ceil(LOWPASS_FILTER_WIDTH * orig_freq / (min(orig_freq, new_freq) * ROLLOFF))


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """`waveform` `[..., time]` resampled from `orig_freq` to `new_freq`, as `torchaudio.functional.resample`."""
    orig_freq, new_freq = int(orig_freq), int(new_freq)
    if orig_freq == new_freq:
        return waveform
    if polyphase_kernel_elements(orig_freq, new_freq) <= MAX_POLYPHASE_KERNEL_ELEMENTS:
        import torchaudio.functional as audio_functional

        return audio_functional.resample(waveform, orig_freq, new_freq)
    length = waveform.shape[-1]
    return resampled_span(waveform, orig_freq, new_freq, 0, resampled_length(length, orig_freq, new_freq))


def resampled_span(
    samples: torch.Tensor, orig_freq: int, new_freq: int, start: int, stop: int, offset: int = 0,
    length: int | None = None,
) -> torch.Tensor:
    """
    Output samples `[start, stop)` of a signal resampled from `orig_freq` to `new_freq` by direct evaluation of the
    windowed-sinc filter, in blocks. `samples` `[..., n]` are input samples `[offset, offset + n)` of a signal of
    `length` samples (default: `offset + n`); inputs outside the signal are zeros, as in torchaudio, and the caller
    passes every input within `input_reach` of the span.
    """
    orig_freq, new_freq = int(orig_freq), int(new_freq)
    length = offset + samples.shape[-1] if length is None else int(length)
    flat = samples.reshape(-1, samples.shape[-1])
    out = torch.zeros(flat.shape[0], max(0, stop - start), dtype=samples.dtype, device=samples.device)
    reach = input_reach(orig_freq, new_freq)
    base = min(orig_freq, new_freq) * ROLLOFF
    taps = torch.arange(2 * reach + 2, device=samples.device)
    block = max(1, DIRECT_BLOCK_ELEMENTS // taps.numel())
    for first in range(start, stop, block):
        outputs = torch.arange(first, min(first + block, stop), dtype=torch.int64, device=samples.device)
        inputs = ((outputs * orig_freq) // new_freq - reach)[:, None] + taps  # [outputs, taps]
        # The filter's argument, in units where its zero crossings are one apart: (k / orig - m / new) * base, from
        # exact integers (k * new - m * orig), so that hours of audio at 384 kHz lose no precision.
        argument = (inputs * new_freq - outputs[:, None] * orig_freq).to(torch.float64) * (base / (orig_freq * new_freq))
        argument = argument.clamp_(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
        window = torch.cos(argument * (math.pi / LOWPASS_FILTER_WIDTH / 2)).square_()
        argument = argument.mul_(math.pi)
        sinc = torch.where(argument == 0, torch.ones_like(argument), torch.sin(argument) / argument)
        weights = sinc.mul_(window).mul_(base / orig_freq)
        inside = (inputs >= max(0, offset)) & (inputs < min(length, offset + flat.shape[1]))
        weights = weights.masked_fill_(~inside, 0.0).to(samples.dtype)
        gathered = flat[:, (inputs - offset).clamp_(0, flat.shape[1] - 1)]  # [rows, outputs, taps]
        out[:, first - start : first - start + outputs.numel()] = (gathered * weights).sum(dim=-1)
    return out.reshape(*samples.shape[:-1], out.shape[-1])


def resampled_reader(clip, orig_freq: int, new_freq: int):
    """
    `(read, length)`: `read(start, stop)` returns samples `[start, stop)` of `clip` (a 1-D tensor, or anything sliced
    like one with a `numel()`, such as a file read range by range) resampled from `orig_freq` to `new_freq` (zeros
    past its end), computed from the input samples around them only; `length` is the resampled clip's length. Equal to
    resampling the whole clip at once: torchaudio's kernel applied block by block of `orig_freq // gcd` input samples,
    each block seeing the same inputs as in one pass, or, for pairs whose kernel is too large, the same filter
    evaluated directly (`resampled_span`).
    """

    def zero_padded(samples: torch.Tensor, size: int) -> torch.Tensor:
        return torch.nn.functional.pad(samples, (0, size - samples.numel())) if samples.numel() < size else samples

    if orig_freq == new_freq:
        return (lambda start, stop: zero_padded(clip[start:stop], stop - start)), clip.numel()
    length = resampled_length(clip.numel(), orig_freq, new_freq)
    if polyphase_kernel_elements(orig_freq, new_freq) > MAX_POLYPHASE_KERNEL_ELEMENTS:
        # Rates sharing few factors: torchaudio's kernel would take gigabytes; evaluate the same filter directly.
        reach = input_reach(orig_freq, new_freq)

        def read_direct(start: int, stop: int) -> torch.Tensor:
            end = min(stop, length)  # resampled samples past the clip's end are zeros, as torchaudio cuts there
            if start >= end:
                return torch.zeros(stop - start)
            first_in = max(0, start * orig_freq // new_freq - reach)
            end_in = min(clip.numel(), (end - 1) * orig_freq // new_freq + reach + 2)
            span = resampled_span(
                clip[first_in:end_in], orig_freq, new_freq, start, end, offset=first_in, length=clip.numel()
            )
            return zero_padded(span, stop - start)

        return read_direct, length
    import torchaudio.transforms as audio_transforms

    resampler = audio_transforms.Resample(orig_freq, new_freq, dtype=torch.float32)
    step_in, step_out = orig_freq // resampler.gcd, new_freq // resampler.gcd
    context = -(-resampler.width // step_in)  # input blocks each output block reaches on either side

    def read(start: int, stop: int) -> torch.Tensor:
        first_block, end_block = start // step_out, -(-stop // step_out)
        first_in = max(0, (first_block - context) * step_in)
        end_in = min(clip.numel(), (end_block + context + 1) * step_in)
        if first_in >= end_in:  # wholly inside the zero padding up to one patch
            return torch.zeros(stop - start)
        offset = first_in // step_in * step_out
        return zero_padded(resampler(clip[first_in:end_in])[start - offset : stop - offset], stop - start)

    return read, length



__all__ = [
    "input_reach", "polyphase_kernel_elements", "resample", "resampled_length", "resampled_reader", "resampled_span",
]
