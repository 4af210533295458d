"""
Windowed inference: one output per window of a recording, with its start and end time, for recordings of any length
in bounded memory.

Window `k` covers seconds `[k * hop, k * hop + window)` of the recording as the package decodes it (FFmpeg resamples
to the model's rate, channels averaged: `resp_audio_hf.data.audio`); the last window ends with the recording and may
be shorter. Each window is featurised and encoded alone, as a clip of its own (as transformers' ASR pipeline treats
its chunks). A PCM (WAV, AIFF) or FLAC file is decoded range by range (`chunk_seconds` at a time, with a margin on
both sides so that the resampler's edges fall outside what is kept), so an hour-long recording never sits in memory
whole, and the windows equal those cut from a whole-file decode. Compressed formats with frame padding (MP3, AAC,
Opus) are decoded whole first: FFmpeg's range decoding of them starts and ends at frame boundaries, not at the
seconds asked for, so their samples could not be placed exactly. An array in memory is cut into views.

Used by `resp-audio-hf embed --window-seconds W --hop-seconds H` ([`embed_windows`]) and by the audio-classification
pipeline called with `chunk_length_s` / `stride_length_s`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Seconds decoded at a time from a file, and the margin decoded on either side of each range and then dropped: FFmpeg's
# resampler starts afresh at every range, and its first and last few samples differ from a whole-file decode.
DECODE_CHUNK_SECONDS = 60.0
DECODE_MARGIN_SECONDS = 0.05


@dataclass
class AudioWindow:
    """One window of a recording: its position, its time span in seconds and its mono samples at the model's rate."""

    index: int
    start_s: float
    end_s: float
    audio: np.ndarray


def window_starts(num_samples: int, window: int, hop: int) -> range:
    """Start samples of the windows of a recording of `num_samples`: every `hop` samples, until one window reaches
    the end (at least one window; the last may be shorter)."""
    count = 1 if num_samples <= window else 1 + math.ceil((num_samples - window) / hop)
    return range(0, count * hop, hop)


def _check_seconds(window_seconds: float, hop_seconds: float) -> None:
    if not (window_seconds > 0 and 0 < hop_seconds):
        raise ValueError(f"Need window_seconds > 0 and hop_seconds > 0, got {window_seconds} and {hop_seconds}.")


def stream_windows(
    source,
    sampling_rate: int,
    window_seconds: float,
    hop_seconds: float,
    *,
    source_rate: int | None = None,
    chunk_seconds: float = DECODE_CHUNK_SECONDS,
) -> Iterator[AudioWindow]:
    """
    The windows of `source` at `sampling_rate`, in order (see the module docstring).

    Args:
        source: a file (path, bytes, or whatever `resp_audio_hf.data.audio.open_audio` opens), decoded range by
            range; or a mono array at `source_rate` (default `sampling_rate`), resampled whole first if its rate
            differs.
        sampling_rate: the model's rate; windows are cut at it.
        window_seconds, hop_seconds: window length and the step between window starts.
        chunk_seconds: seconds of a file decoded at a time (bounds memory).
    """
    _check_seconds(window_seconds, hop_seconds)
    window, hop = round(window_seconds * sampling_rate), round(hop_seconds * sampling_rate)
    if isinstance(source, np.ndarray) or hasattr(source, "__array__") and not isinstance(source, (str, bytes)):
        yield from _array_windows(np.asarray(source, dtype=np.float32), sampling_rate, source_rate, window, hop)
        return
    yield from _file_windows(source, sampling_rate, window, hop, max(chunk_seconds, window_seconds + hop_seconds))


def _array_windows(audio: np.ndarray, rate: int, source_rate: int | None, window: int, hop: int):
    if audio.ndim != 1:
        raise ValueError(f"Windowed inference takes one mono clip, got an array of shape {audio.shape}.")
    if source_rate is not None and source_rate != rate:
        import torch
        import torchaudio.functional as audio_functional

        audio = audio_functional.resample(torch.from_numpy(audio), int(source_rate), int(rate)).numpy()
    for index, start in enumerate(window_starts(audio.size, window, hop)):
        piece = audio[start : start + window]
        yield AudioWindow(index, start / rate, (start + piece.size) / rate, piece)


def _file_windows(source, rate: int, window: int, hop: int, chunk_seconds: float):
    from .data.audio import AudioDecodeError, decoded_mono, open_audio, source_name

    name = source_name(source)
    try:
        decoder = open_audio(source, rate)
    except (RuntimeError, ValueError, OSError) as error:
        raise AudioDecodeError(name, f"not decodable: {error}") from error
    codec = str(decoder.metadata.codec or "")
    if not (codec.startswith("pcm") or codec == "flac") or decoder.metadata.begin_stream_seconds:
        audio = decoded_mono(decoder, name)  # see the module docstring: placed exactly only when decoded whole
        yield from _array_windows(audio, rate, None, window, hop)
        return
    margin = round(DECODE_MARGIN_SECONDS * rate)
    chunk = round(chunk_seconds * rate)
    buffer = np.empty(0, dtype=np.float32)  # samples [buffer_start, buffer_start + buffer.size) of the recording
    buffer_start, decoded_to, finished = 0, 0, False
    index = 0
    while True:
        start = index * hop
        # Decode until the buffer holds this window (or the recording has ended).
        while not finished and buffer_start + buffer.size < start + window:
            first = max(0, decoded_to - margin)
            try:
                samples = decoded_mono(decoder, name, first / rate, (decoded_to + chunk + margin) / rate)
            except AudioDecodeError:
                if decoded_to == 0:
                    raise
                samples = np.empty(0, dtype=np.float32)  # a range past the end decodes to nothing
            kept = samples[decoded_to - first : decoded_to - first + chunk]
            buffer = np.concatenate([buffer, kept])
            decoded_to += kept.size
            finished = kept.size < chunk
        end = buffer_start + buffer.size
        if start >= end and index > 0:
            return
        piece = buffer[start - buffer_start : start - buffer_start + window].copy()
        yield AudioWindow(index, start / rate, (start + piece.size) / rate, piece)
        if finished and start + window >= end:
            return
        index += 1
        drop = (index * hop) - buffer_start  # samples before the next window's start are no longer needed
        if drop > 0:
            buffer, buffer_start = buffer[drop:], buffer_start + drop


def embed_windows(encoder, source, window_seconds: float, hop_seconds: float, *, batch_size: int = 8):
    """
    `(windows, embeddings)`: the [`AudioWindow`]s of `source` (their `audio` dropped once embedded) and their
    `[num_windows, dim]` float32 embeddings from `encoder` (an `AudioEncoder`, eager or ONNX Runtime), `batch_size`
    windows per forward pass.
    """
    windows, vectors, pending = [], [], []

    def flush():
        inputs = encoder.featurize([w.audio for w in pending])
        vectors.append(encoder.embed(inputs))
        for w in pending:
            w.audio = None
            windows.append(w)
        pending.clear()

    for window in stream_windows(source, encoder.sampling_rate, window_seconds, hop_seconds):
        pending.append(window)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return windows, np.concatenate(vectors).astype(np.float32, copy=False)


__all__ = ["AudioWindow", "embed_windows", "stream_windows", "window_starts"]
