"""Data of the contrastive objective: two random crops of each recording, every batch drawn from one corpus.

As OPERA's `ColaMD` does, each batch comes from a single corpus, at that corpus's crop length (`crop_seconds`: OPERA
crops lung and breathing sounds to about 6.4 s and coughs to about 1.6 s). One source per batch also keeps the
in-batch task from being solved by telling a cough from a lung recording. The epoch is the same seeded `MixturePlan`
as M2D pre-training; its clips are grouped by corpus into global batches, whose order is shuffled (seeded by
`(seed, epoch)`), and process `r` of `W` takes the `r`-th slice of each. Crops draw from a generator seeded per clip,
so resumed runs see the same crops (exactness as in `data.py`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .audio_cache import DecodedCorpus
from .config import DataConfig
from .data import (
    ClipDecoder,
    MixtureBatchSampler,
    MixtureBatchStream,
    UnusableClip,
    crop_clip,
    crop_samples_for,
    load_corpus,
    load_mixture,
)


class PairCropDataset(torch.utils.data.Dataset):
    """
    `dataset[(corpus, row, crop_seed)]` -> two random crops: of that clip, or, where `partners[corpus]` lists other
    rows of the same subject, of that clip and of one of those (drawn with the same seeded generator); or an
    `UnusableClip`.
    """

    def __init__(
        self, corpora: list, names: list[str], decoders: list[ClipDecoder], partners: list[list[list[int]] | None]
    ):
        self.corpora, self.names, self.decoders, self.partners = corpora, names, decoders, partners

    def __len__(self) -> int:
        return sum(len(corpus) for corpus in self.corpora)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray] | UnusableClip:
        corpus, row, seed = key
        source, decoder, rng = self.corpora[corpus], self.decoders[corpus], np.random.default_rng(seed)
        partners = self.partners[corpus][row] if self.partners[corpus] is not None else []
        other = int(partners[rng.integers(len(partners))]) if partners else row
        if isinstance(source, DecodedCorpus):
            return tuple(
                crop_clip(source.clip(index), decoder.crop_samples, rng, decoder.short_clips) for index in (row, other)
            )
        where = f" (corpus {self.names[corpus]}, row {row})"
        first = decoder.crop_or_unusable(source[row]["audio"], rng, where)
        if isinstance(first, UnusableClip):
            return first
        second = decoder.crop_or_unusable(source[other]["audio"], rng, f" (corpus {self.names[corpus]}, row {other})")
        return second if isinstance(second, UnusableClip) else (first, second)


class SingleSourceBatchSampler(MixtureBatchSampler):
    """
    Batches of `(corpus, row, crop_seed)` for process `rank` of `num_replicas`, each global batch from one corpus.
    Per epoch: the plan's shuffled clips, grouped by corpus in that order, cut into global batches of
    `batch_size * num_replicas` (a corpus's incomplete last batch is dropped), the batches shuffled.
    """

    def too_little_data(self) -> str:
        return (
            f"No corpus fills one global batch of {self.batch_size} x {self.num_replicas} clips (per-corpus clips "
            f"per epoch: {self.plan.counts}): add data, raise `repeat`, or lower the batch size."
        )

    def __len__(self) -> int:
        return sum(count // (self.batch_size * self.num_replicas) for count in self.plan.counts)

    def global_batches(self, epoch: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Indices into the epoch's items of every global batch, in the epoch's batch order; the items and seeds."""
        items, seeds = self.plan.epoch(epoch)
        size = self.batch_size * self.num_replicas
        batches = []
        for corpus in range(len(self.plan.sizes)):
            positions = np.flatnonzero(items[:, 0] == corpus)
            batches.extend(positions[start : start + size] for start in range(0, len(positions) - size + 1, size))
        order = np.random.default_rng([self.plan.seed, epoch, 1]).permutation(len(batches))
        return [batches[i] for i in order], items, seeds

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        batches, items, seeds = self.global_batches(self.epoch)
        for positions in batches:
            mine = positions[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            yield [(int(items[p, 0]), int(items[p, 1]), int(seeds[p])) for p in mine]


class ViewPairCollator:
    """
    Pairs of equal-length crops -> `{"input_values": [2 x batch, frames, mel], "unusable_files": [(path, reason)]}`:
    the first crop of every clip, then the second. An `UnusableClip` is replaced by another usable pair of the batch.
    """

    def __init__(self, feature_extractor):
        self.feature_extractor = feature_extractor

    def __call__(self, items: list) -> dict:
        usable = [item for item in items if not isinstance(item, UnusableClip)]
        unusable = [(item.path, item.reason) for item in items if isinstance(item, UnusableClip)]
        if not usable:
            raise RuntimeError(f"Every clip of a batch was unusable: {unusable}.")
        pairs = [usable[i % len(usable)] if isinstance(item, UnusableClip) else item for i, item in enumerate(items)]
        waveforms = [pair[0] for pair in pairs] + [pair[1] for pair in pairs]
        features = self.feature_extractor(
            waveforms,
            sampling_rate=self.feature_extractor.sampling_rate,
            return_attention_mask=False,
            return_tensors="pt",
        )
        return {"input_values": features["input_values"], "unusable_files": unusable}


def subject_partners(subjects: list[str]) -> list[list[int]]:
    """For each row, the other rows of the same subject (empty for a subject with one row)."""
    rows_of: dict[str, list[int]] = {}
    for row, subject in enumerate(subjects):
        rows_of.setdefault(subject, []).append(row)
    return [[other for other in rows_of[subject] if other != row] for row, subject in enumerate(subjects)]


def mixture_paths(table) -> list[str]:
    """The file of every row of a loaded corpus table, in row order."""
    from .data import corpus_paths

    return corpus_paths("", table)


def rows_paths(corpus, files: list[str]) -> list[str]:
    """The file of every row of a corpus as cropped: the decoded cache's usable files, or the table's files."""
    return corpus.paths if isinstance(corpus, DecodedCorpus) else files


def build_view_pair_stream(
    config: DataConfig,
    feature_extractor,
    window_frames: int | None,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    gradient_accumulation_steps: int = 1,
) -> MixtureBatchStream:
    """The contrastive batch stream of process `rank` (map-style corpora; streams are not supported)."""
    if config.streaming:
        raise ValueError("The contrastive objective reads map-style corpora; data.streaming is not supported with it.")
    sampling_rate = feature_extractor.sampling_rate
    decoders = []
    for spec in config.corpora:
        if spec.crop_seconds is not None:
            crop_samples = int(round(spec.crop_seconds * sampling_rate))
        elif window_frames is not None:
            crop_samples = crop_samples_for(feature_extractor, window_frames)
        else:
            raise ValueError(f"Corpus {spec.label}: set crop_seconds (the model has no fixed window).")
        decoders.append(ClipDecoder(sampling_rate, crop_samples, config.short_clips))
    corpora = [
        load_corpus(spec, sampling_rate, keep_columns=(spec.subject_column,) if spec.positives == "same_subject" else ())
        for spec in config.corpora
    ]
    names = [spec.label for spec in config.corpora]
    subjects = [
        dict(zip(mixture_paths(corpus), map(str, corpus[spec.subject_column])))
        if spec.positives == "same_subject" else None
        for spec, corpus in zip(config.corpora, corpora)
    ]
    mixture = load_mixture(config, corpora, names, sampling_rate, seed)
    partners = [
        None if by_path is None else subject_partners([by_path[path] for path in rows_paths(corpus, files)])
        for by_path, corpus, files in zip(subjects, mixture.corpora, mixture.files.values())
    ]
    sampler = SingleSourceBatchSampler(mixture.plan, config.batch_size, world_size, rank)
    stream = MixtureBatchStream(
        PairCropDataset(mixture.corpora, names, decoders, partners),
        sampler,
        ViewPairCollator(feature_extractor),
        config.num_workers,
        gradient_accumulation_steps,
    )
    stream.files, stream.unusable_files = mixture.files, mixture.unusable
    return stream


__all__ = ["PairCropDataset", "SingleSourceBatchSampler", "ViewPairCollator", "build_view_pair_stream"]
