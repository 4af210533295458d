"""Batched log-mel front ends of PaSST, AST and M2D, as a transformers feature extractor."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.audio_utils import mel_filter_bank

from .resampling import resample, resampled_length, resampled_reader

PASST_LOG_OFFSET = 1e-5
FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


@dataclass(frozen=True)
class FrontEnd:
    """
    One published front end: the defaults of its settings and the ways its spectrogram differs from the
    others'. Adding a front end is adding one record to `FRONT_ENDS`.

    Args:
        defaults: the published value of every setting `RespAudioFeatureExtractor` leaves unset.
        kaldi_framing: frames lie inside the clip (frame t is samples `[t * hop, t * hop + win_length)`), each with
            its mean removed and pre-emphasised on its own, zero-padded to `n_fft`, as Kaldi's fbank; otherwise a
            centred STFT of the whole (pre-emphasised) clip, reflect-padded by `n_fft // 2` at its ends.
        periodic_window: periodic Hann window (torch/nnAudio's default) rather than the symmetric one.
        mel_scale, mel_norm, triangularize_in_mel_space: the filterbank, as `transformers.audio_utils.mel_filter_bank`
            names it.
        log_epsilon: keeps the log finite: added to the mel energies, or their floor if `clamp_log_epsilon`.
        clamp_log_epsilon: floor the mel energies at `log_epsilon` (Kaldi) rather than add it.
    """

    defaults: Mapping[str, Any]
    kaldi_framing: bool
    periodic_window: bool
    mel_scale: str
    mel_norm: str | None
    triangularize_in_mel_space: bool
    log_epsilon: float
    clamp_log_epsilon: bool

    def first_frame_samples(self, win_length: int, preemphasis: float) -> int:
        """Samples the first frame needs; each further frame needs `hop_length` more. The centred STFT's input loses
        one sample to pre-emphasis, whichever front end turns it on."""
        return win_length if self.kaldi_framing else int(bool(preemphasis))


# Kaldi's mel filterbank (triangles in mel space, unnormalised), which hear21passt reproduces as well.
_KALDI_MEL_BANKS = MappingProxyType(dict(mel_scale="kaldi", mel_norm=None, triangularize_in_mel_space=True))
# The ViT families' published front ends (EfficientAT's is PaSST's). PaSST: hear21passt `AugmentMelSTFT` in eval mode;
# AST: Kaldi fbank as in transformers' `ASTFeatureExtractor`; M2D: nnAudio/torchaudio `MelSpectrogram` with M2D's
# 16 kHz settings. `max_length` is the family's window (`RespAudioConfig.window_frames` of its presets).
FRONT_ENDS: Mapping[str, FrontEnd] = MappingProxyType({
    "passt": FrontEnd(
        defaults=MappingProxyType(dict(
            sampling_rate=32000, num_mel_bins=128, n_fft=1024, win_length=800, hop_length=320,
            f_min=0.0, f_max=15000.0, preemphasis=0.97, mean=-4.5, std=5.0, max_length=998, padding_value=0.0,
        )),
        kaldi_framing=False, periodic_window=False, **_KALDI_MEL_BANKS, log_epsilon=PASST_LOG_OFFSET,
        clamp_log_epsilon=False,
    ),
    "ast": FrontEnd(
        # AudioSet's log-fbank mean and twice its std; ASTFeatureExtractor pads the log-fbank with zeros before
        # normalising.
        defaults=MappingProxyType(dict(
            sampling_rate=16000, num_mel_bins=128, n_fft=512, win_length=400, hop_length=160, f_min=20.0,
            f_max=8000.0, preemphasis=0.97, mean=-4.2677393, std=2 * 4.5689974, max_length=1024,
            padding_value=4.2677393 / (2 * 4.5689974),
        )),
        kaldi_framing=True, periodic_window=False, **_KALDI_MEL_BANKS, log_epsilon=FLOAT32_EPS, clamp_log_epsilon=True,
    ),
    "m2d": FrontEnd(
        defaults=MappingProxyType(dict(
            sampling_rate=16000, num_mel_bins=80, n_fft=400, win_length=400, hop_length=160,
            f_min=50.0, f_max=8000.0, preemphasis=0.0, mean=-7.1, std=4.2, max_length=608, padding_value=0.0,
        )),
        # nnAudio/torchaudio's periodic window; hear21passt and Kaldi use the symmetric one.
        kaldi_framing=False, periodic_window=True,
        mel_scale="slaney", mel_norm="slaney", triangularize_in_mel_space=False,
        log_epsilon=FLOAT32_EPS, clamp_log_epsilon=False,
    ),
})
MIN_SAMPLING_RATE = 1000
# The highest rate accepted (DXD / 384 kHz PCM, the highest common audio rate): above it a rate is almost surely a
# mistake (samples passed as the rate), and resampling from it would only waste memory and time.
MAX_SAMPLING_RATE = 384000
# A top-level 2-D array with at most this many columns (and more rows) is one clip in the `(frames, channels)` layout
# of soundfile and most audio libraries, not a batch of clips that short (see `_is_channels_last_clip`).
MAX_CHANNELS_LAST = 16
# On CPU the batch is transformed a few clips at a time, about this many spectrogram bins per chunk (a few MiB): every
# temporary then stays in cache and below glibc's mmap threshold, so buffers are reused rather than page-faulted in
# afresh, which made one whole-batch pass several times slower than per-clip processing.
CPU_CHUNK_BINS = 2**20
# The mel filters are applied in blocks of this many consecutive filters, each to the FFT bins it spans only: a bin
# feeds at most two triangles, so a dense [bins, mels] product would mostly multiply zeros.
MEL_BLOCK_SIZE = 16
# A clip whose spectrogram has more bins than this (about 2.7 minutes for PaSST's front end) is featurised block by
# block in `__call__`, as `frame_blocks` does, rather than as one STFT: memory then grows with its spectrogram only.
STREAM_ABOVE_BINS = 8 * CPU_CHUNK_BINS
# `frame_blocks`' default block: 512 frames (about 5 s at a 10 ms hop). Its temporaries (resampled samples, STFT,
# power) stay a few MiB: a 3-minute PaSST stream peaks 8 MiB above its start with it, 54 MiB with 2,044-frame blocks
# (2**20 bins), in the same time (benchmarks/README.md).
STREAM_BLOCK_FRAMES = 512


class RespAudioFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns raw mono or stereo audio at any sampling rate into the normalised log-mel spectrogram one of the three
    encoder families was trained on, batched in torch.

    Args:
        frontend (`str`, *optional*, defaults to `"passt"`):
            `"passt"` (pre-emphasis, 1024-point STFT of 800-sample Hann windows, hop 320, Kaldi mel banks, `(log + 4.5)
            / 5`), `"ast"` (Kaldi fbank, 25 ms / 10 ms, normalised by the AudioSet mean and twice its std) or `"m2d"`
            (400-point STFT, hop 160, Slaney mel 50-8000 Hz, `(log - mean) / std`). Fields left unset take this
            front end's published value.
        sampling_rate (`int`): Rate (Hz) the spectrogram is computed at; other inputs are resampled to it.
        num_mel_bins (`int`): Mel bands.
        n_fft (`int`): FFT size.
        win_length (`int`): Analysis window length in samples.
        hop_length (`int`): Hop between frames in samples.
        f_min (`float`), f_max (`float`): Mel filterbank edges in Hz.
        preemphasis (`float`): Pre-emphasis coefficient (0 disables it).
        mean (`float`), std (`float`): Normalisation `(log_mel - mean) / std`.
        max_length (`int`): Frames of one encoder window (the model's `window_frames`); the target of
            `padding="max_length"`, under the name transformers' feature extractors give it.
        padding_value (`float`): Value of padded frames in the normalised spectrogram.
        reject_silent_audio (`bool`, *optional*, defaults to `True`):
            Raise on clips whose samples are all zero, which almost always means a failed decode.
        return_attention_mask (`bool`, *optional*, defaults to `True`):
            Return a frame-level mask (1 = real audio, 0 = padding).

    Inputs may be 1-D arrays (mono), 2-D arrays with one axis of size 1 or 2 inside a list (downmixed to mono by
    averaging channels; the shorter axis is the channel axis), float or integer PCM (n-bit integers are divided by
    2^(n-1), e.g. int16 by 32768; unsigned ones are first centred on 2^(n-1), e.g. uint8 on 128). A top level 2-D
    array is a batch of mono clips, as everywhere in transformers,
    except when it has at most 16 columns and more rows than columns: then it is one clip in the `(frames, channels)`
    layout `soundfile.read` returns, downmixed if stereo and refused with more than 2 channels. Clips shorter than one
    patch (16 frames)
    are zero-padded to one patch; clips longer than `max_length` are kept whole (the model encodes them in windows)
    unless `truncation=True` is asked for.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        frontend: str = "passt",
        sampling_rate: int | None = None,
        num_mel_bins: int | None = None,
        n_fft: int | None = None,
        win_length: int | None = None,
        hop_length: int | None = None,
        f_min: float | None = None,
        f_max: float | None = None,
        preemphasis: float | None = None,
        mean: float | None = None,
        std: float | None = None,
        max_length: int | None = None,
        padding_value: float | None = None,
        patch_size: int = 16,
        reject_silent_audio: bool = True,
        return_attention_mask: bool = True,
        **kwargs,
    ):
        if frontend not in FRONT_ENDS:
            raise ValueError(f"frontend must be one of {sorted(FRONT_ENDS)}, got {frontend!r}.")
        given = dict(
            sampling_rate=sampling_rate, num_mel_bins=num_mel_bins, n_fft=n_fft, win_length=win_length,
            hop_length=hop_length, f_min=f_min, f_max=f_max, preemphasis=preemphasis, mean=mean, std=std,
            max_length=max_length, padding_value=padding_value,
        )
        settings = {k: (FRONT_ENDS[frontend].defaults[k] if v is None else v) for k, v in given.items()}
        # preprocessor_config.json stores `feature_size`, which is always `num_mel_bins`: drop the saved copy so that
        # `from_pretrained` does not pass it twice to `SequenceFeatureExtractor.__init__`.
        feature_size = kwargs.pop("feature_size", settings["num_mel_bins"])
        if feature_size != settings["num_mel_bins"]:
            raise ValueError(
                f"feature_size ({feature_size}) must equal num_mel_bins ({settings['num_mel_bins']}); set num_mel_bins."
            )
        super().__init__(
            feature_size=settings["num_mel_bins"],
            sampling_rate=settings["sampling_rate"],
            padding_value=settings["padding_value"],
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.frontend = frontend
        self.num_mel_bins = settings["num_mel_bins"]
        self.n_fft = settings["n_fft"]
        self.win_length = settings["win_length"]
        self.hop_length = settings["hop_length"]
        self.f_min = float(settings["f_min"])
        self.f_max = float(settings["f_max"])
        self.preemphasis = float(settings["preemphasis"])
        self.mean = float(settings["mean"])
        self.std = float(settings["std"])
        self.max_length = settings["max_length"]
        self.patch_size = patch_size
        self.reject_silent_audio = reject_silent_audio
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) cannot exceed n_fft ({self.n_fft}).")
        # `mel_filters` and `window` are dropped by `FeatureExtractionMixin.to_dict`, so they never reach the JSON.
        self.mel_filters = self._build_mel_filters()
        self.window = self._build_window()

    @property
    def front_end(self) -> FrontEnd:
        """The record of `frontend` in `FRONT_ENDS` (looked up, not stored: `to_dict` saves the name only)."""
        return FRONT_ENDS[self.frontend]

    @classmethod
    def from_model_config(cls, config, **overrides) -> RespAudioFeatureExtractor:
        """The front end of a model of any family: the settings its configuration states
        (`config.feature_extractor_settings()`), then `overrides`."""
        return cls(**{**config.feature_extractor_settings(), **overrides})

    def _build_mel_filters(self) -> torch.Tensor:
        front_end = self.front_end
        with warnings.catch_warnings():
            # Kaldi's 128 bands over a 512-point FFT leave the lowest bands empty; AST was trained with them as is.
            warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
            filters = mel_filter_bank(
                num_frequency_bins=self.n_fft // 2 + 1,
                num_mel_filters=self.num_mel_bins,
                min_frequency=self.f_min,
                max_frequency=self.f_max,
                sampling_rate=self.sampling_rate,
                norm=front_end.mel_norm,
                mel_scale=front_end.mel_scale,
                triangularize_in_mel_space=front_end.triangularize_in_mel_space,
            )
        return torch.from_numpy(filters.astype(np.float32))  # [n_freq, n_mels]

    def _build_window(self) -> torch.Tensor:
        return torch.hann_window(self.win_length, periodic=self.front_end.periodic_window, dtype=torch.float32)

    # ------------------------------------------------------------------ input checks

    def _as_mono_tensors(self, raw_audio) -> list[torch.Tensor]:
        if isinstance(raw_audio, (np.ndarray, torch.Tensor)):
            if raw_audio.ndim == 1 or _is_channels_last_clip(raw_audio):
                clips = [raw_audio]
            elif raw_audio.ndim == 2:
                clips = list(raw_audio)
            else:
                raise ValueError(
                    f"Expected a 1-D clip, a 2-D batch of mono clips or a list of clips; got an array of shape "
                    f"{tuple(raw_audio.shape)}. Pass multichannel clips one by one in a list."
                )
        elif isinstance(raw_audio, (list, tuple)):
            if len(raw_audio) == 0:
                raise ValueError("Got an empty list of audio clips: pass at least one clip.")
            if isinstance(raw_audio[0], (int, float, np.number)):
                clips = [np.asarray(raw_audio, dtype=np.float32)]
            else:
                clips = list(raw_audio)
        else:
            raise TypeError(
                f"Audio must be a numpy array, a torch tensor or a list of them, not {type(raw_audio).__name__}."
            )
        return [self.validated_clip(clip, index) for index, clip in enumerate(clips)]

    def validated_clip(self, clip, index: int) -> torch.Tensor:
        if isinstance(clip, (list, tuple)):
            clip = np.asarray(clip)
        if isinstance(clip, np.ndarray):
            if not clip.flags.writeable:  # e.g. ffmpeg_read's buffer; torch.from_numpy warns on read-only memory
                clip = clip.copy()
            if clip.dtype.kind in "iu":
                clip = _integer_pcm_to_float(clip)
            elif clip.dtype.kind != "f":
                raise ValueError(f"Audio clip {index} has dtype {clip.dtype}; pass float or integer PCM samples.")
            tensor = torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32))
        elif isinstance(clip, torch.Tensor):
            tensor = clip.detach().cpu()
            if not tensor.is_floating_point():
                tensor = torch.from_numpy(_integer_pcm_to_float(tensor.numpy()))
            tensor = tensor.to(torch.float32)
        else:
            raise TypeError(f"Audio clip {index} is a {type(clip).__name__}; pass a numpy array or a torch tensor.")

        if tensor.ndim == 2:
            channel_axis = 0 if tensor.shape[0] <= tensor.shape[1] else 1
            channels = tensor.shape[channel_axis]
            if channels > 2:
                layout = "(channels, frames)" if channel_axis == 0 else "(frames, channels), as soundfile.read gives"
                raise ValueError(
                    f"Audio clip {index} has {channels} channels (shape {tuple(tensor.shape)}, read as {layout}); "
                    "only mono and stereo are supported. Downmix or select a channel first."
                )
            tensor = tensor.mean(dim=channel_axis)
        elif tensor.ndim != 1:
            raise ValueError(f"Audio clip {index} has shape {tuple(tensor.shape)}; expected 1-D mono or 2-D stereo.")
        if tensor.numel() == 0:
            raise ValueError(f"Audio clip {index} is empty (0 samples): check that the file decoded.")
        # One min/max pass checks both: NaN and inf propagate to the extremes, and only silence has both at zero.
        low, high = torch.aminmax(tensor)
        if not bool(torch.isfinite(low) & torch.isfinite(high)):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(
                f"Audio clip {index} contains {bad} NaN or infinite samples out of {tensor.numel()}; "
                "repair or drop the recording before feature extraction."
            )
        if self.reject_silent_audio and float(low) == 0.0 and float(high) == 0.0:
            raise ValueError(
                f"Audio clip {index} is silent (all {tensor.numel()} samples are zero), which usually means a failed "
                "decode. Check the file, or build the feature extractor with reject_silent_audio=False to allow it."
            )
        return tensor

    def _batched_log_mel(self, clips: list[torch.Tensor], lengths: torch.Tensor, sampling_rate: int, device):
        """Normalised log-mel frames of `clips` in one zero-padded batch, resampled to `self.sampling_rate`; `lengths`
        are their resampled lengths (at least one patch)."""
        batch = _pad_stack(clips, max(clip.numel() for clip in clips)).to(device)
        if sampling_rate != self.sampling_rate:
            batch = resample(batch, int(sampling_rate), self.sampling_rate)
        longest = int(lengths.max())
        batch = batch[:, :longest]
        if batch.shape[1] < longest:
            batch = torch.nn.functional.pad(batch, (0, longest - batch.shape[1]))
        return self.log_mel(batch, lengths.to(batch.device))

    def check_sampling_rate(self, sampling_rate) -> None:
        if sampling_rate is None:
            raise ValueError(
                "sampling_rate is required: pass the rate (Hz) of the audio, e.g. feature_extractor(audio, "
                f"sampling_rate=16000). Audio at another rate than {self.sampling_rate} Hz is resampled."
            )
        if not isinstance(sampling_rate, (int, np.integer)) or not MIN_SAMPLING_RATE <= sampling_rate <= MAX_SAMPLING_RATE:
            raise ValueError(
                f"sampling_rate={sampling_rate!r} is not a plausible audio rate; pass the integer rate in Hz "
                f"(from {MIN_SAMPLING_RATE} to {MAX_SAMPLING_RATE})."
            )

    # ------------------------------------------------------------------ spectrograms

    def _minimum_samples(self) -> int:
        """Fewest samples that give one patch (`patch_size` frames)."""
        return (self.patch_size - 1) * self.hop_length + self.front_end.first_frame_samples(self.win_length, self.preemphasis)

    def num_frames(self, num_samples: int) -> int:
        """Frames the front end yields for a clip of `num_samples` samples at `sampling_rate`."""
        return 1 + (num_samples - self.front_end.first_frame_samples(self.win_length, self.preemphasis)) // self.hop_length

    def log_mel(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """
        Normalised log-mel frames `[batch, frames, num_mel_bins]` of zero-padded `waveforms` `[batch, samples]` whose
        real lengths are `lengths`. Frames past a clip's own end are undefined; callers mask them.
        """
        batch, device = waveforms.shape[0], waveforms.device
        num_frames = self.num_frames(waveforms.shape[1])
        output = torch.empty(batch, num_frames, self.num_mel_bins, dtype=torch.float32, device=device)
        rows = batch if device.type != "cpu" else max(1, CPU_CHUNK_BINS // (num_frames * (self.n_fft // 2 + 1)))
        blocks = _mel_filter_blocks(self.mel_filters.to(device), MEL_BLOCK_SIZE)
        window = self.window.to(device)
        kaldi_framing = self.front_end.kaldi_framing
        # Kaldi frames go into the first win_length columns; the zero tail, kept across chunks, is the FFT padding.
        frame_buffer = (
            torch.zeros(min(rows, batch), num_frames, self.n_fft, dtype=torch.float32, device=device)
            if kaldi_framing
            else None
        )
        for start in range(0, batch, rows):
            stop = min(start + rows, batch)
            if kaldi_framing:
                power = self._kaldi_power(waveforms[start:stop], frame_buffer[: stop - start], window)
            else:
                power = self._stft_power(waveforms[start:stop], lengths[start:stop], window)
            mel = output[start:stop].view(-1, self.num_mel_bins)
            self._normalised_log_mel(power.reshape(-1, power.shape[-1]), blocks, out=mel)
        return output

    def _normalised_log_mel(self, power: torch.Tensor, blocks, out: torch.Tensor) -> torch.Tensor:
        """`out` `[frames, num_mel_bins]` = the normalised log-mel of power spectra `[frames, bins]`."""
        _apply_mel_filter_blocks(power, blocks, out=out)
        front_end = self.front_end
        if front_end.clamp_log_epsilon:
            out.clamp_min_(front_end.log_epsilon)
        else:
            out.add_(front_end.log_epsilon)
        return out.log_().sub_(self.mean).div_(self.std)

    def _kaldi_power(self, waveforms: torch.Tensor, frame_buffer: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """Power spectrum `[batch, frames, n_fft // 2 + 1]` of Kaldi's frames (mean removed, pre-emphasis, window)."""
        frames = waveforms.unfold(-1, self.win_length, self.hop_length)
        centred = frames - frames.mean(dim=-1, keepdim=True)
        body = frame_buffer[..., : self.win_length]
        # Kaldi pre-emphasises each frame on its own, the first sample against itself. The product is rounded before
        # the subtraction, as in Kaldi: a fused multiply-add differs visibly on tonal input.
        torch.mul(centred[..., :-1], self.preemphasis, out=body[..., 1:])
        torch.mul(centred[..., :1], self.preemphasis, out=body[..., :1])
        torch.sub(centred, body, out=body).mul_(window)
        return _power(torch.fft.rfft(frame_buffer))

    def _stft_power(self, waveforms: torch.Tensor, lengths: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """Power spectrum `[batch, frames, n_fft // 2 + 1]` of the centred STFT (PaSST and M2D)."""
        if self.preemphasis:
            waveforms = waveforms[:, 1:] - self.preemphasis * waveforms[:, :-1]
            lengths = lengths - 1
        return self._power_of_centred(_reflect_pad_each(waveforms, lengths, self.n_fft // 2), window)

    def _power_of_centred(self, centred: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """Power spectrum `[batch, frames, n_fft // 2 + 1]` of signals already padded by `n_fft // 2` at each end."""
        spec = torch.stft(
            centred, self.n_fft, hop_length=self.hop_length, win_length=self.win_length, window=window,
            center=False, return_complex=True,
        )
        return _power(spec.transpose(1, 2))

    def frame_blocks(self, audio, sampling_rate: int | None = None, block_frames: int | None = None):
        """
        The normalised log-mel frames of one clip, `[frames, num_mel_bins]` blocks of at most `block_frames` frames
        each, in order: joined, they equal `self([audio], sampling_rate=sampling_rate)["input_values"][0]` within
        float round-off, but only the samples around one block are resampled and transformed at a time, so a
        recording of hours needs memory for its waveform and one block, not for its whole spectrogram. Feed the blocks
        to [`RespAudioModel.pool_frame_stream`] to embed the recording window by window.

        Args:
            audio: one clip (1-D, or 2-D mono/stereo), checked like the clips of `__call__`; or the path of a file
                libsndfile reads (WAV, FLAC, OGG, ...), read block by block so that not even the waveform is held.
            sampling_rate (`int`): the clip's rate in Hz (a file's comes from its header); the clip is resampled to
                `self.sampling_rate` block by block.
            block_frames (`int`, *optional*): frames per block (default 512, at least one patch).
        """
        if isinstance(audio, (str, os.PathLike)):
            clip = _AudioFileSamples(audio, self.reject_silent_audio)
            if sampling_rate is not None and sampling_rate != clip.sampling_rate:
                raise ValueError(f"{audio} is at {clip.sampling_rate} Hz, not sampling_rate={sampling_rate}.")
            sampling_rate = clip.sampling_rate
        else:
            self.check_sampling_rate(sampling_rate)
            clip = self.validated_clip(audio, 0)
        if block_frames is None:
            block_frames = max(self.patch_size, STREAM_BLOCK_FRAMES)
        read, num_samples = self._resampled_reader(clip, int(sampling_rate))
        num_samples = max(num_samples, self._minimum_samples())  # as in __call__: at least one patch
        total = self.num_frames(num_samples)
        blocks = _mel_filter_blocks(self.mel_filters, MEL_BLOCK_SIZE)
        with torch.no_grad():
            for first in range(0, total, block_frames):
                yield self._frames_of_span(read, num_samples, first, min(first + block_frames, total), blocks)
        if isinstance(clip, _AudioFileSamples):
            clip.check_not_silent()

    def _resampled_reader(self, clip: torch.Tensor, sampling_rate: int):
        """`(read, length)` of `clip` resampled to `self.sampling_rate` span by span (see `resampling.resampled_reader`)."""
        return resampled_reader(clip, sampling_rate, self.sampling_rate)

    def _frames_of_span(self, read, num_samples: int, first: int, stop: int, blocks) -> torch.Tensor:
        """Normalised log-mel frames `[first, stop)` of a clip of `num_samples` samples read through `read`."""
        hop = self.hop_length
        if self.front_end.kaldi_framing:  # Kaldi frames lie inside the clip: frame t is samples [t * hop, t * hop + win)
            segment = read(first * hop, (stop - 1) * hop + self.win_length)
            return self.log_mel(segment[None], torch.tensor([segment.numel()]))[0]
        # Centred STFT: frame t sees the (pre-emphasised) signal at [t * hop - n_fft / 2, t * hop + n_fft / 2),
        # reflected at the clip's own ends as in `_reflect_pad_each`.
        pad = self.n_fft // 2
        shift = 1 if self.preemphasis else 0  # pre-emphasis output i needs inputs i and i + 1
        positions = torch.arange(first * hop - pad, (stop - 1) * hop + self.n_fft - pad)
        index = _reflect_index(positions, torch.tensor(num_samples - shift))
        low = int(index.min())
        samples = read(low, int(index.max()) + 1 + shift)
        if shift:
            samples = samples[1:] - self.preemphasis * samples[:-1]
        power = self._power_of_centred(samples[index - low][None], self.window)[0]
        return self._normalised_log_mel(power, blocks, out=torch.empty(stop - first, self.num_mel_bins))

    def __call__(
        self,
        raw_audio,
        sampling_rate: int | None = None,
        padding: bool | str = "longest",
        max_length: int | None = None,
        truncation: bool = False,
        return_tensors: str | None = None,
        return_attention_mask: bool | None = None,
        device: str | torch.device = "cpu",
        **kwargs,
    ) -> BatchFeature:
        """
        Featurise one clip or a batch.

        Args:
            raw_audio: a clip (1-D array/tensor, or `(frames, channels)` with at most 16 channels as soundfile reads
                it), a 2-D batch of mono clips, or a list of clips of any length.
            sampling_rate (`int`): rate of `raw_audio` in Hz. Required; clips at another rate than the model's are
                resampled with `torchaudio.functional.resample`.
            padding (`bool` or `str`): `"longest"`/`True` pads to the longest clip, `"max_length"` to `max_length`
                frames (default `self.max_length`), `False`/`"do_not_pad"` requires equal lengths.
            max_length (`int`): frame count for `padding="max_length"` and `truncation`.
            truncation (`bool`): cut clips longer than `max_length` frames. Off by default: nothing is cut silently.
            return_tensors (`str`): `"pt"` or `"np"`.
            device: where to compute the spectrograms (a CUDA device speeds up large batches).
        """
        self.check_sampling_rate(sampling_rate)
        clips = self._as_mono_tensors(raw_audio)
        # Shorter than one patch: zero-pad to one patch rather than fail deep inside the encoder.
        lengths = torch.tensor(
            [resampled_length(clip.numel(), int(sampling_rate), self.sampling_rate) for clip in clips]
        ).clamp_min(self._minimum_samples())
        num_frames = torch.tensor([self.num_frames(int(n)) for n in lengths])
        # Clips with a long spectrogram are featurised block by block (`frame_blocks`), so that memory holds their
        # waveform and spectrogram but no whole-clip STFT or resampling temporaries; the others in one batch.
        streamed = [i for i, n in enumerate(num_frames.tolist()) if n * (self.n_fft // 2 + 1) > STREAM_ABOVE_BINS]
        batched = [i for i in range(len(clips)) if i not in streamed]
        features = torch.zeros(len(clips), int(num_frames.max()), self.num_mel_bins, device=device)
        # no_grad rather than inference_mode: the features are returned to callers (who may train on them) and masked
        # in place below, neither of which inference tensors allow.
        with torch.no_grad():
            if batched:
                rows = torch.tensor(batched)
                batch_features = self._batched_log_mel([clips[i] for i in batched], lengths[rows], sampling_rate, device)
                features[rows, : batch_features.shape[1]] = batch_features
            for row in streamed:
                filled = 0
                for block in self.frame_blocks(clips[row], sampling_rate):
                    features[row, filled : filled + block.shape[0]] = block.to(device)
                    filled += block.shape[0]

        target_frames = int(num_frames.max())
        if padding == "max_length" or truncation:
            limit = max_length or self.max_length
            if truncation:
                num_frames = num_frames.clamp_max(limit)
            elif int(num_frames.max()) > limit:
                longest = int(num_frames.argmax())
                raise ValueError(
                    f"Clip {longest} has {int(num_frames.max())} frames, more than max_length={limit}; pass "
                    "truncation=True to cut it, or padding='longest' to keep it whole (the model windows long input)."
                )
            target_frames = limit if padding == "max_length" else int(num_frames.max())
        elif padding in (False, "do_not_pad") and int(num_frames.min()) != int(num_frames.max()):
            raise ValueError("Clips have different lengths; use padding='longest' (the default) to batch them.")

        if features.shape[1] > target_frames:
            features = features[:, :target_frames].contiguous()
        elif features.shape[1] < target_frames:
            pad = target_frames - features.shape[1]
            features = torch.nn.functional.pad(features, (0, 0, 0, pad))
        frame_index = torch.arange(target_frames, device=features.device)
        attention_mask = frame_index[None, :] < num_frames.to(features.device)[:, None]
        # `features` is this call's own tensor, so padding is masked in place rather than in a copy, and only from the
        # shortest clip's end on (no frame before it is padding).
        shortest = int(num_frames.min())
        padding_frames = ~attention_mask[:, shortest:, None]
        features[:, shortest:].masked_fill_(padding_frames, self.padding_value)
        features = features.cpu()

        output = {"input_values": features}
        if return_attention_mask if return_attention_mask is not None else self.return_attention_mask:
            output["attention_mask"] = attention_mask.to(torch.int32).cpu()
        if return_tensors in (None, "np"):
            output = {k: v.numpy() for k, v in output.items()}
        return BatchFeature(output, tensor_type=return_tensors)


def _is_channels_last_clip(audio) -> bool:
    """
    Whether a top-level 2-D array is one clip laid out `(frames, channels)`, as `soundfile.read` returns it, rather
    than a batch of mono clips: it has at most `MAX_CHANNELS_LAST` columns and more rows than columns. Read as a batch,
    such an array would be thousands of clips of a few samples each, which no recording is.
    """
    return audio.ndim == 2 and audio.shape[1] <= MAX_CHANNELS_LAST < audio.shape[0]


class _AudioFileSamples:
    """
    The mono float32 samples of an audio file, read range by range through libsndfile (`clip[start:stop]`), with the
    checks `RespAudioFeatureExtractor` makes on arrays: at most two channels (averaged), finite samples (checked as
    they are read) and, at the end, not all zero.
    """

    def __init__(self, path, reject_silent_audio: bool):
        try:
            import soundfile
        except ImportError as error:
            raise ImportError("Reading audio files block by block needs soundfile: pip install soundfile") from error
        self.path = os.fspath(path)
        self.file = soundfile.SoundFile(self.path)
        self.sampling_rate = int(self.file.samplerate)
        self.reject_silent_audio = reject_silent_audio
        self.heard = False  # any non-zero sample read so far
        if self.file.channels > 2:
            raise ValueError(
                f"{self.path} has {self.file.channels} channels; only mono and stereo are supported. Downmix or "
                "select a channel first."
            )
        if self.file.frames == 0:
            raise ValueError(f"{self.path} is empty (0 samples): check the file.")

    def numel(self) -> int:
        return int(self.file.frames)

    def __getitem__(self, span: slice) -> torch.Tensor:
        start, stop, _ = span.indices(self.numel())
        self.file.seek(start)
        samples = torch.from_numpy(self.file.read(max(0, stop - start), dtype="float32", always_2d=True)).mean(dim=1)
        if not bool(torch.isfinite(samples).all()):
            raise ValueError(
                f"{self.path} contains NaN or infinite samples near second {start / self.sampling_rate:.1f}; repair "
                "or drop the recording before feature extraction."
            )
        self.heard = self.heard or bool(samples.any())
        return samples

    def check_not_silent(self) -> None:
        if self.reject_silent_audio and not self.heard:
            raise ValueError(
                f"{self.path} is silent (all {self.numel()} samples are zero), which usually means a failed "
                "recording. Build the feature extractor with reject_silent_audio=False to allow it."
            )


def _integer_pcm_to_float(samples: np.ndarray) -> np.ndarray:
    """
    n-bit PCM as floats in [-1, 1): signed samples divided by 2^(n-1); unsigned ones (8-bit WAV) are centred on
    2^(n-1) first, then divided by the same 2^(n-1), so that one sound gives one float signal whichever way it is
    stored (as libsndfile and FFmpeg read PCM_U8).
    """
    info = np.iinfo(samples.dtype)
    half_range = float(2 ** (info.bits - 1))
    offset = 0.0 if info.min < 0 else half_range
    return ((samples.astype(np.float64) - offset) / half_range).astype(np.float32)


def _pad_stack(clips: list[torch.Tensor], length: int) -> torch.Tensor:
    batch = torch.empty(len(clips), length, dtype=torch.float32)
    for row, clip in enumerate(clips):
        batch[row, : clip.numel()] = clip
        batch[row, clip.numel() :] = 0.0
    return batch


def _power(spec: torch.Tensor) -> torch.Tensor:
    """`|spec|^2` without the square root of `abs` (several times slower on complex tensors)."""
    power = spec.real.square()
    return power.addcmul_(spec.imag, spec.imag)


def _mel_filter_blocks(filters: torch.Tensor, size: int) -> list[tuple[int, int, int, int, torch.Tensor]]:
    """
    Split `[bins, mels]` filters into blocks of `size` consecutive mel filters, each restricted to the contiguous range
    of FFT bins it uses: `(first_mel, last_mel, first_bin, last_bin, block)`.
    """
    blocks = []
    for first in range(0, filters.shape[1], size):
        last = min(first + size, filters.shape[1])
        used = filters[:, first:last].ne(0).any(dim=1).nonzero()[:, 0]
        low, high = (int(used[0]), int(used[-1]) + 1) if used.numel() else (0, 1)
        blocks.append((first, last, low, high, filters[low:high, first:last].contiguous()))
    return blocks


def _apply_mel_filter_blocks(power: torch.Tensor, blocks, out: torch.Tensor) -> torch.Tensor:
    """`out = power @ filters` for `power` `[rows, bins]`, one block of `_mel_filter_blocks` at a time."""
    for first, last, low, high, filters in blocks:
        torch.mm(power[:, low:high], filters, out=out[:, first:last])
    return out


def _reflect_pad_each(waveforms: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad every row at both ends of its own length, as `torch.stft(center=True)` does for one clip."""
    if int(lengths.min()) > pad:
        # Common case: reflect the whole batch at its width, then redo the right edge of the rows that are shorter.
        padded = torch.nn.functional.pad(waveforms[:, None], (pad, pad), mode="reflect")[:, 0]
        short = (lengths < waveforms.shape[1]).nonzero()[:, 0]
        if short.numel():
            offsets = torch.arange(1, pad + 1, device=waveforms.device)
            ends = lengths[short, None]
            padded[short[:, None], ends + pad - 1 + offsets] = waveforms[short[:, None], ends - 1 - offsets]
        return padded
    positions = torch.arange(-pad, waveforms.shape[1] + pad, device=waveforms.device)
    index = _reflect_index(positions[None, :], lengths[:, None])
    inside_or_reflected = positions[None, :] < (lengths[:, None] + pad)
    index = torch.where(inside_or_reflected, index, positions.clamp(0, waveforms.shape[1] - 1)[None, :])
    return torch.gather(waveforms, 1, index)


def _reflect_index(positions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """
    Sample index that position `p` of a signal of `lengths` samples reads under reflect padding (`-p` before the
    start, `2 * (length - 1) - p` past the end); a period of `2 * (length - 1)` keeps very short signals in bounds.
    """
    last = (lengths - 1).clamp_min(1)
    index = torch.remainder(positions.abs(), 2 * last)
    return torch.where(index > last, 2 * last - index, index)


__all__ = ["RespAudioFeatureExtractor", "FrontEnd", "FRONT_ENDS"]
