"""`pipeline("audio-classification")` for RespAudio classifiers: the feature extractor's checks come first.

transformers' `AudioClassificationPipeline` decodes files and resamples arrays itself before it calls the feature
extractor, so bad input fails inside torchaudio or FFmpeg with messages that name neither the file nor the problem (an
empty or integer array at another rate, "Malformed soundfile"), and rates the feature extractor refuses (999 Hz) pass.
[`RespAudioClassificationPipeline`] hands arrays to the feature extractor at their own rate (it checks, then resamples
with the same `torchaudio.functional.resample`), and names the file or URL in every error about it. Files, bytes and
`datasets` Audio values are decoded by torchcodec (FFmpeg) at the model's rate and their channels averaged, exactly as
`resp-audio-hf bench`, `embed` and `RespAudioCollator` decode files (`resp_audio_hf.data.audio.load_audio`; this
module repeats its one call because remote code cannot import the package), so one file gets one set of features
whichever way it goes in; transformers' `ffmpeg_read` (the FFmpeg command line) is the fallback only where torchcodec
is not installed.

Importing `resp_audio_hf` makes it the `audio-classification` pipeline ([`register_pipeline`]); for models with another
feature extractor it behaves exactly as transformers' own. Saved classifiers also name it in `custom_pipelines`, so
that a process without this package builds it from the folder with `trust_remote_code=True`.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from transformers.pipelines.audio_classification import AudioClassificationPipeline, ffmpeg_read
from transformers.utils import logging

from .cut_wav import whole_frames_of_cut_wav
from .pipeline_entry import TASK

logger = logging.get_logger(__name__)


class RespAudioClassificationPipeline(AudioClassificationPipeline):
    """
    Audio classification with a RespAudio classifier. Inputs, as in transformers: a file path or URL (decoded by
    torchcodec/FFmpeg at the model's rate, channels averaged, as the benchmark decodes files), the bytes of a file, an
    array or tensor at the model's rate, a `{"array" | "raw": samples, "sampling_rate": rate}` dict at any rate, or a
    torchcodec `AudioDecoder` (a `datasets` Audio value is decoded from its file, as a path would be). One input is one clip: a 2-D array is read as channels (the shorter axis) and frames,
    and downmixed if stereo; pass a list of inputs to classify several clips.
    """

    # Windows classified per forward pass in chunked calls.
    chunk_batch_size = 16

    def __call__(self, inputs, **kwargs):
        """
        As transformers' `__call__`; with `chunk_length_s` (and `stride_length_s`, named and meant as in its ASR
        pipeline) each input is classified window by window instead: windows of `chunk_length_s` seconds whose
        starts are `chunk_length_s - left - right` seconds apart, where `stride_length_s` is the overlap `left =
        right` with each neighbour, or a `(left, right)` pair (default: `chunk_length_s / 6`, as ASR's). Each input
        then gives a list of `{"timestamp": (start_s, end_s), "labels": [{"score", "label"}, ...]}`, one per window,
        the last window ending with the recording. Files stream in bounded memory (`resp_audio_hf.windowed`, which
        this needs: chunked calls are not available through remote code alone).
        """
        if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
            raise ValueError("Got an empty list of inputs: pass a file, an array or a dict, or a list of at least one.")
        chunk_length_s = kwargs.pop("chunk_length_s", None)
        stride_length_s = kwargs.pop("stride_length_s", None)
        if chunk_length_s is None:
            if stride_length_s is not None:
                raise ValueError("stride_length_s applies to chunked calls only; give chunk_length_s too.")
            return super().__call__(inputs, **kwargs)
        hop_s = _chunk_hop_seconds(float(chunk_length_s), stride_length_s)
        single = not isinstance(inputs, list)
        results = [self._classify_windows(item, float(chunk_length_s), hop_s, kwargs) for item in
                   ([inputs] if single else inputs)]
        return results[0] if single else results

    def _classify_windows(self, source, chunk_length_s: float, hop_s: float, kwargs: dict) -> list[dict]:
        try:
            from resp_audio_hf.windowed import stream_windows
        except ImportError as error:
            raise ImportError("Chunked classification (chunk_length_s) needs the resp_audio_hf package.") from error
        rate = self.feature_extractor.sampling_rate
        source_rate = None
        if isinstance(source, os.PathLike):
            source = os.fspath(source)
        if isinstance(source, dict):
            source, source_rate = _array_and_rate(source)
        if not isinstance(source, (str, bytes, bytearray)):
            source = np.asarray(source, dtype=np.float32)
            if source.ndim == 2:  # channels and frames, in either order, as one clip: averaged
                source = source.mean(axis=int(np.argmin(source.shape)))
        results, pending = [], []

        def flush():
            clips = [{"raw": window.audio, "sampling_rate": rate} for window in pending]
            labels = super(RespAudioClassificationPipeline, self).__call__(clips, **kwargs)
            results.extend({"timestamp": (w.start_s, w.end_s), "labels": found} for w, found in zip(pending, labels))
            pending.clear()

        for window in stream_windows(source, rate, chunk_length_s, hop_s, source_rate=source_rate):
            pending.append(window)
            if len(pending) == self.chunk_batch_size:
                flush()
        if pending:
            flush()
        return results

    def preprocess(self, inputs):
        # By class name, so that a feature extractor loaded as remote code (another class object) counts too.
        if type(self.feature_extractor).__name__ != "RespAudioFeatureExtractor":
            return super().preprocess(inputs)
        source = None  # what the errors name: the file, URL or bytes the audio came from
        torchcodec = sys.modules.get("torchcodec")
        if torchcodec is not None and isinstance(inputs, torchcodec.decoders.AudioDecoder):
            # A `datasets` Audio value keeps its file (`_hf_encoded`): decode that as files are decoded, whatever rate
            # the column was cast to. A decoder made otherwise gives its samples, which go the way of arrays.
            encoded = getattr(inputs, "_hf_encoded", None) or {}
            if encoded.get("bytes") is not None:
                source, inputs = encoded.get("path"), encoded["bytes"]
            elif encoded.get("path") is not None and os.path.isfile(encoded["path"]):
                inputs = encoded["path"]
            else:
                samples = inputs.get_all_samples()
                inputs = {"array": samples.data, "sampling_rate": samples.sample_rate}
        if isinstance(inputs, os.PathLike):
            inputs = os.fspath(inputs)
        if isinstance(inputs, str):
            source, inputs = inputs, _read_source(inputs)
        if isinstance(inputs, (bytes, bytearray)):
            source = source or f"the {len(inputs)} bytes given"
            inputs = {"array": _decode(bytes(inputs), self.feature_extractor.sampling_rate, source)}
            inputs["sampling_rate"] = self.feature_extractor.sampling_rate
        if isinstance(inputs, dict):
            audio, sampling_rate = _array_and_rate(inputs)
        else:
            # A bare array is taken at the model's rate, as transformers documents.
            audio, sampling_rate = inputs, self.feature_extractor.sampling_rate
        if np.ndim(audio) == 2:
            audio = [audio]  # one input is one clip: its two axes are channels and frames, in either order
        try:
            processed = self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors="pt")
        except (ValueError, TypeError) as error:
            if source is None:
                raise
            raise type(error)(f"{source}: {error}") from error
        if self.dtype is not None:
            processed = processed.to(dtype=self.dtype)
        return processed


def _chunk_hop_seconds(chunk_length_s: float, stride_length_s) -> float:
    """Seconds between window starts: the chunk less its overlaps on both sides (ASR's `stride_length_s`)."""
    if not chunk_length_s > 0:
        raise ValueError(f"chunk_length_s must be a positive number of seconds, got {chunk_length_s}.")
    if stride_length_s is None:
        stride_length_s = chunk_length_s / 6
    left, right = stride_length_s if isinstance(stride_length_s, (list, tuple)) else (stride_length_s,) * 2
    hop = chunk_length_s - float(left) - float(right)
    if not (hop > 0 and left >= 0 and right >= 0):
        raise ValueError(
            f"stride_length_s={stride_length_s} leaves no step between chunks of {chunk_length_s} s: the overlaps on "
            "both sides must be non-negative and add up to less than chunk_length_s."
        )
    return hop


def _read_source(location: str) -> bytes:
    if location.startswith(("http://", "https://")):
        from huggingface_hub.utils import httpx

        try:
            response = httpx.get(location, follow_redirects=True)
        except httpx.HTTPError as error:  # refused, timed out, or cut off before its announced length
            raise ValueError(f"{location}: the download failed ({type(error).__name__}: {error}).") from error
        if response.status_code != 200:
            raise ValueError(f"{location}: the server answered HTTP {response.status_code}, not an audio file.")
        return response.content
    if not os.path.isfile(location):
        raise FileNotFoundError(f"No audio file at {location}.")
    with open(location, "rb") as handle:
        return handle.read()


def _decode(data: bytes, sampling_rate: int, source: str) -> np.ndarray:
    if not data:
        raise ValueError(f"{source}: the file is empty (0 bytes).")
    try:
        from torchcodec.decoders import AudioDecoder
    except ImportError:  # a process with transformers but without torchcodec (remote code elsewhere)
        AudioDecoder = None
    if AudioDecoder is not None:
        no_audio = (
            f"{source}: FFmpeg decoded no audio from it ({len(data)} bytes); it is truncated, corrupt or not an audio "
            "file"
        )
        try:
            # FFmpeg resamples each channel; the channels are then averaged: `load_audio`'s route, call for call.
            samples = AudioDecoder(data, sample_rate=sampling_rate).get_all_samples()
        except (RuntimeError, ValueError, OSError) as error:
            whole_frames = whole_frames_of_cut_wav(data)
            if whole_frames is None:
                raise ValueError(f"{no_audio} ({_readable_reason(error)}).") from error
            data, dropped = whole_frames
            logger.warning(
                "%s ends inside a sample frame (cut short while being written or copied?): decoded its whole frames "
                "and dropped the last %d byte(s).", source, dropped,
            )
            samples = AudioDecoder(data, sample_rate=sampling_rate).get_all_samples()
        if samples.data.numel() == 0:  # a file cut off after its header decodes to nothing
            raise ValueError(f"{no_audio}.")
        channels = samples.data
        return (channels.mean(dim=0) if channels.shape[0] > 1 else channels[0]).numpy()
    # FFmpeg's command line downmixes to (L + R) / sqrt(2) here: stereo files differ by 3 dB from the route above.
    try:
        return ffmpeg_read(data, sampling_rate)
    except ValueError as error:
        if "ffmpeg was not found" in str(error):
            raise ValueError(f"{source}: FFmpeg, which decodes audio files, is not installed.") from error
        raise ValueError(
            f"{source}: FFmpeg decoded no audio from it ({len(data)} bytes); it is truncated, corrupt or not an audio "
            "file."
        ) from error


def _readable_reason(error: Exception) -> str:
    """torchcodec's message without the C++ source location it starts with (`decode_av_frame, /.../x.cpp:12, ...`)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if ".cpp:" in text:
        text = text.split(".cpp:", 1)[1].split(", ", 1)[-1]
    return text[:200]


def _array_and_rate(inputs: dict):
    if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
        raise ValueError(
            'A dict input needs the samples under "array" (as in datasets) or "raw" and their rate under '
            f'"sampling_rate"; got the keys {sorted(inputs)}.'
        )
    audio = inputs["raw"] if "raw" in inputs else inputs["array"]
    return audio, inputs["sampling_rate"]


def register_pipeline() -> None:
    """
    Make [`RespAudioClassificationPipeline`] the class `pipeline("audio-classification", ...)` builds, keeping the
    task's models and defaults. Its task entry is replaced rather than registered anew with
    `PIPELINE_REGISTRY.register_pipeline`, which would warn on every import and mark the class as a custom pipeline
    that `Pipeline.save_pretrained` then writes into every saved model's config.
    """
    from transformers.pipelines import PIPELINE_REGISTRY

    task = PIPELINE_REGISTRY.supported_tasks[TASK]
    PIPELINE_REGISTRY.supported_tasks[TASK] = {**task, "impl": RespAudioClassificationPipeline}


__all__ = ["RespAudioClassificationPipeline", "register_pipeline"]
