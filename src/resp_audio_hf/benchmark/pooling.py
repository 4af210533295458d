"""Poolings derived from frequency-preserving embeddings, and the frequency rows that carry a recording's signal.

A frequency-preserving embedding is the time-average of each frequency row of the last feature map, the rows
concatenated: `[F' * C]` (`RespAudioModel` and `EfficientATModel` with `pooling="freq_preserving"`). Both
models' `mean` pooling is the average of those rows (every row has the same unpadded time steps), so one extraction
gives every pooling of the comparison:

* `freq_preserving` - the embedding as it is;
* `mean` - the average of its `F'` rows (equal, up to float round-off, to what the model computes with
  `pooling="mean"`);
* `band_limited` - frequency-preserving pooling over the rows that carry signal only: SPRSound is 8 kHz audio, so
  nothing lies above 4 kHz, while PaSST's and EfficientAT's front ends span 0-15 kHz and M2D's 50 Hz-8 kHz. A row
  is kept when at least half of the mel bands it stands for have their centre frequency below the limit.
"""

from __future__ import annotations

import numpy as np

DERIVED_POOLINGS = ("freq_preserving", "mean", "band_limited")


def mel_band_centres(feature_extractor) -> np.ndarray:
    """Centre frequency (Hz) of each mel band: the FFT bin where its filter peaks."""
    filters = np.asarray(feature_extractor.mel_filters, dtype=np.float64)  # [fft bins, mel bands]
    return filters.argmax(axis=0) * feature_extractor.sampling_rate / feature_extractor.n_fft


def signal_rows(config, feature_extractor, max_frequency_hz: float) -> list[int]:
    """Frequency rows at least half of whose mel bands are centred below `max_frequency_hz` (e.g. 4,000 Hz, the
    Nyquist frequency of 8 kHz recordings)."""
    centres = mel_band_centres(feature_extractor)
    rows = [
        row
        for row, span in enumerate(config.frequency_row_spans())
        if np.mean(centres[[band for band in span if band < len(centres)]] < max_frequency_hz) >= 0.5
    ]
    if not rows:
        raise ValueError(f"No frequency row of the front end lies mostly below {max_frequency_hz:g} Hz.")
    return rows


def row_frequency_ranges(config, feature_extractor) -> list[tuple[float, float]]:
    """`(lowest, highest)` band centre (Hz) of each frequency row, for reports."""
    centres = mel_band_centres(feature_extractor)
    return [
        (float(centres[span.start]), float(centres[min(span.stop, len(centres)) - 1]))
        for span in config.frequency_row_spans()
    ]


def derive_pooling(embeddings: np.ndarray, num_rows: int, pooling: str, rows: list[int] | None = None) -> np.ndarray:
    """`pooling` of frequency-preserving `embeddings` `[n, num_rows * C]` (rows concatenated in order).

    Args:
        embeddings: frequency-preserving embeddings.
        num_rows: frequency rows `F'` in each embedding.
        pooling: one of `DERIVED_POOLINGS`.
        rows: the rows `band_limited` keeps (see `signal_rows`).
    """
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[1] % num_rows:
        raise ValueError(f"embeddings of shape {embeddings.shape} are not {num_rows} concatenated frequency rows")
    grid = embeddings.reshape(embeddings.shape[0], num_rows, -1)
    if pooling == "freq_preserving":
        return embeddings
    if pooling == "mean":
        return grid.mean(axis=1, dtype=np.float64).astype(embeddings.dtype)
    if pooling == "band_limited":
        if not rows or any(not 0 <= row < num_rows for row in rows):
            raise ValueError(f"band_limited needs rows among 0..{num_rows - 1}, got {rows}")
        return grid[:, list(rows)].reshape(embeddings.shape[0], -1)
    raise ValueError(f"Unknown pooling {pooling!r}; choose from {', '.join(DERIVED_POOLINGS)}.")


__all__ = [
    "DERIVED_POOLINGS",
    "derive_pooling",
    "mel_band_centres",
    "row_frequency_ranges",
    "signal_rows",
]
