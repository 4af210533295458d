"""
Audio decoding through torchcodec (FFmpeg): WAV, FLAC, MP3, OGG/Opus and WebM all go one way.

[`load_audio`] is the one route from a file to model input: FFmpeg decodes and resamples to the model's rate, and the
channels are averaged. `bench`, `embed`, the demo, the audio-classification pipeline (its own copy of the same call,
for remote code), `RespAudioCollator` (files, undecoded and decoded `datasets` Audio values), the pre-training crops
and their decoded cache all take it, so one file gives one set of features everywhere. Audio already in memory goes
the feature extractor's way instead (torchaudio's resampler, the same channel mean).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..cut_wav import whole_frames_of_cut_wav

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".webm", ".m4a", ".opus")
# Names the decode route in the keys of caches of decoded audio and of embeddings, so that a cache written through
# another route (before 2026-11-30: FFmpeg's (L + R) / sqrt(2) downmix) is never read as this one's.
DECODE_ROUTE = "torchcodec: FFmpeg resampling per channel, channel mean"


logger = logging.getLogger(__name__)


class AudioDecodeError(RuntimeError):
    """A file could not be decoded into a finite, non-empty mono signal.

    Attributes:
        path: the file.
        reason: what is wrong with it, without the path (for per-file reports).
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = os.fspath(path), reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AudioProbe:
    """Header-level facts about one file (no full decode)."""

    path: str
    ok: bool
    reason: str = ""
    sample_rate: int | None = None
    num_channels: int | None = None
    duration_s: float | None = None


def _short_error(error: Exception) -> str:
    """FFmpeg/torchcodec messages start with C++ source locations; keep the human-readable tail."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if ".cpp:" in text:
        text = text.split(".cpp:", 1)[1].split(", ", 1)[-1]
    return text[:200]


def decode_failure(name: str, error: Exception, where: str = "") -> AudioDecodeError:
    """The [`AudioDecodeError`] naming `name` that a failure to decode it becomes: an `AudioDecodeError` keeps its
    reason, anything torchcodec or FFmpeg raised is "not decodable: <its readable part>"; `where` (`" (in ...)"`)
    follows the reason's first words. The one wording of [`load_audio`] and the training crops' decoder."""
    if isinstance(error, AudioDecodeError):
        return AudioDecodeError(error.path, error.reason + where)
    return AudioDecodeError(name, f"not decodable{where}: {_short_error(error)}")


def is_utf8_path(path: str) -> bool:
    """Whether `path` is valid UTF-8: a file name in another encoding (say `tos_\xf1and\xfa.wav` in Latin-1) reaches
    Python with surrogate escapes, which torchcodec and libsndfile cannot take as a file name."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_path(path: str) -> str:
    """`path` as UTF-8 text for reports and output files: the bytes of a name in another encoding appear as `\\xNN`."""
    return path if is_utf8_path(path) else os.fsencode(path).decode("utf-8", errors="backslashreplace")


def _decoder(source, sampling_rate=None):
    from torchcodec.decoders import AudioDecoder

    if isinstance(source, str) and not is_utf8_path(source):
        source = open(source, "rb")  # noqa: SIM115  (the decoder reads it; it closes when the decoder is collected)
    return AudioDecoder(source, sample_rate=sampling_rate)


def _probe_with_soundfile(path: str) -> AudioProbe | None:
    """Header check through libsndfile (~0.1 ms instead of ~10 ms for an FFmpeg open).

    Returns `None` when soundfile is not installed or cannot parse the format (WebM, some MP3s),
    in which case the caller falls back to torchcodec.
    """
    try:
        import soundfile
    except ImportError:
        return None
    try:
        if is_utf8_path(path):
            info = soundfile.info(path)
        else:  # libsndfile takes the name as UTF-8 text; a file object avoids the name
            with open(path, "rb") as handle:
                info = soundfile.info(handle)
    except (
        RuntimeError,
        ValueError,
        TypeError,
        OSError,
    ):  # unsupported container or damaged header: let FFmpeg decide
        return None
    if info.frames <= 0:
        return AudioProbe(path, False, "audio stream has zero duration", info.samplerate, info.channels, 0.0)
    return AudioProbe(path, True, "", info.samplerate, info.channels, info.frames / info.samplerate)


def probe_audio(path: str | os.PathLike) -> AudioProbe:
    """Check that `path` exists, is non-empty and has a decodable audio stream of positive length."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return AudioProbe(path, False, "file not found")
    if os.path.isdir(path):
        return AudioProbe(path, False, "is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        return AudioProbe(path, False, "empty file (0 bytes)")
    quick = _probe_with_soundfile(path)
    if quick is not None:
        problem = format_problem(quick.sample_rate, quick.num_channels) if quick.ok else ""
        return AudioProbe(path, False, problem, quick.sample_rate, quick.num_channels, quick.duration_s) if problem else quick
    try:
        metadata = _decoder(path).metadata
    except (RuntimeError, ValueError, OSError) as error:  # torchcodec's errors for unreadable streams
        return AudioProbe(path, False, f"not decodable: {_short_error(error)}")
    duration = metadata.duration_seconds_from_header or metadata.duration_seconds
    if duration is not None and duration <= 0:
        return AudioProbe(
            path, False, "audio stream has zero duration", metadata.sample_rate, metadata.num_channels, duration
        )
    problem = format_problem(metadata.sample_rate, metadata.num_channels)
    return AudioProbe(path, not problem, problem, metadata.sample_rate, metadata.num_channels, duration)


def source_name(source) -> str:
    """What errors about `source` name: the file's path, or how many bytes were given."""
    if isinstance(source, Mapping):
        return source.get("path") or source_name(source.get("bytes") or b"")
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    encoded = getattr(source, "_hf_encoded", None)
    if encoded is not None:
        return source_name(encoded)
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def audio_file_source(value):
    """
    The file an audio value names, as [`open_audio`] opens it: a path, or the bytes of a file. A torchcodec decoder
    that a `datasets` `Audio` column made is read as the `{"path", "bytes"}` it was made from (its `_hf_encoded`),
    and of such a dict (`Audio(decode=False)`) the bytes win over the path. `None` when `value` holds samples instead
    (an array, a `{"array", "sampling_rate"}` dict) or is a dict naming no file. The one place that tells a file from
    samples (the collator asks it too).
    """
    encoded = getattr(value, "_hf_encoded", None)  # set by datasets.Audio.decode_example on the decoders it makes
    if encoded is not None:
        value = encoded
    if isinstance(value, Mapping):
        if "array" in value or "raw" in value:
            return None
        return value["bytes"] if value.get("bytes") is not None else value.get("path")
    if isinstance(value, bytearray):
        return bytes(value)
    return value if isinstance(value, (str, os.PathLike, bytes)) else None


def open_audio(source, sampling_rate: int | None = None):
    """
    A torchcodec `AudioDecoder` over `source` that resamples to `sampling_rate` (FFmpeg's libswresample, each channel
    on its own) and keeps the file's channels, for [`decoded_mono`] to average. This is the one way a file becomes
    audio here (`bench`, `embed`, the demo, the pipeline, `RespAudioCollator`, pre-training crops and their cache).

    `source` is a path, the bytes of a file, a `datasets` `Audio` value stored undecoded (`{"path", "bytes"}`,
    `Audio(decode=False)`), or a torchcodec decoder that a `datasets` `Audio` column made: that one is opened again
    on its stored file or bytes, so that the column's own rate and channel settings do not matter. Paths with a URL
    scheme (`hf://`, `https://`, as in streamed Hub datasets) are opened through `datasets`' `xopen`.
    """
    file = audio_file_source(source)
    if file is None and isinstance(source, Mapping):
        raise ValueError(f"An audio value to decode needs a 'path' or 'bytes' (not samples); got keys {sorted(source)}.")
    if file is not None:
        source = file  # anything else (a file object) goes to torchcodec as it is
    if isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        if "://" in source:
            from datasets.utils.file_utils import xopen

            source = xopen(source, "rb")
    return _decoder(source, sampling_rate)


def decoded_mono(decoder, name: str, start_s: float | None = None, end_s: float | None = None) -> np.ndarray:
    """
    The samples of an [`open_audio`] decoder (all of them, or those played from `start_s` to `end_s` seconds) as one
    float32 channel: the mean of the file's channels, as the feature extractor downmixes a stereo array. Not FFmpeg's
    own downmix, which gives (L + R) / sqrt(2): a dual-mono file would then be 3 dB louder than its mono original.
    Raises `AudioDecodeError` naming `name` when the signal is empty or not finite.
    """
    if start_s is None and end_s is None:
        samples = decoder.get_all_samples()
    else:
        samples = decoder.get_samples_played_in_range(
            start_seconds=float(start_s or 0.0), stop_seconds=None if end_s is None else float(end_s)
        )
    data = samples.data
    if data.ndim == 2:
        data = data.mean(dim=0) if data.shape[0] > 1 else data[0]
    array = data.numpy().astype(np.float32, copy=False)
    if array.size == 0:
        segment = "" if start_s is None and end_s is None else f" (segment {start_s}-{end_s} s)"
        raise AudioDecodeError(name, f"decoded to an empty signal{segment}")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise AudioDecodeError(name, f"decoded to {bad} non-finite samples (NaN/inf)")
    return array


def load_audio(
    source,
    sampling_rate: int | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode `source` (see [`open_audio`]) to a mono float32 array, resampled to `sampling_rate` when given.

    `start_s`/`end_s` select a segment (for event-level tasks). Raises `AudioDecodeError` naming the file when
    decoding fails or yields an empty or non-finite signal, so a bad file is never turned into a silent zero
    embedding.
    """
    name = source_name(source)
    try:
        decoder = open_audio(source, sampling_rate)
        problem = format_problem(decoder.metadata.sample_rate, decoder.metadata.num_channels)
        if problem:
            raise AudioDecodeError(name, problem)
        array = decoded_mono(decoder, name, start_s, end_s)
    except AudioDecodeError:
        raise
    except (RuntimeError, ValueError, OSError) as error:
        whole_frames = _whole_frames_of_cut_wav(source)
        if whole_frames is None:
            raise decode_failure(name, error) from error
        # FFmpeg refuses the partial last frame of a WAV cut mid-sample, and with it the whole recording; libsndfile and
        # FFmpeg's command line keep every whole frame. Decode those, the same way, and say so.
        data, dropped = whole_frames
        logger.warning(
            "%s ends inside a sample frame (cut short while being written or copied?): decoded its whole frames and "
            "dropped the last %d byte(s).", name, dropped,
        )
        decoder = open_audio(data, sampling_rate)
        array = decoded_mono(decoder, name, start_s, end_s)
    return array, int(decoder.metadata.sample_rate if sampling_rate is None else sampling_rate)


def format_problem(sample_rate: int | None, num_channels: int | None) -> str:
    """Why a file of this rate and channel count is refused ("" when it is not): the limits the feature extractor
    puts on arrays (1 kHz to 384 kHz, mono or stereo), so that files and arrays are refused alike."""
    from ..feature_extraction_resp_audio import MAX_SAMPLING_RATE, MIN_SAMPLING_RATE

    if sample_rate is not None and not MIN_SAMPLING_RATE <= sample_rate <= MAX_SAMPLING_RATE:
        return (
            f"recorded at {sample_rate} Hz, outside the {MIN_SAMPLING_RATE} to {MAX_SAMPLING_RATE} Hz the feature "
            "extractor accepts"
        )
    if num_channels is not None and num_channels > 2:
        return f"has {num_channels} channels; only mono and stereo are supported (downmix or select a channel first)"
    return ""


def _whole_frames_of_cut_wav(source) -> tuple[bytes, int] | None:
    """`cut_wav.whole_frames_of_cut_wav` of the file at `source` (a local path); `None` for any other source."""
    if not isinstance(source, (str, os.PathLike)) or "://" in os.fspath(source):
        return None
    try:
        with open(source, "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    return whole_frames_of_cut_wav(data)
