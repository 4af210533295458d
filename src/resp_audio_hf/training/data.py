"""Pre-training data: corpora as `datasets` tables, mixed by repeat counts or weights, random crops, log-mel batches.

Two sources, one interface (`BatchStream`: iterate batches, `state_dict()` / `load_state_dict()` of the position):

- `MixtureBatchStream` (map-style, the default): every corpus is a memory-mapped `datasets.Dataset`, so sets larger
  than memory need no streaming. An epoch is a seeded shuffle of `(corpus, row, crop seed)` triples with each corpus
  listed `repeat` times (or drawn by weight); global batches are cut from it and process `r` of `W` takes the `r`-th
  slice of each, so processes never overlap. Resuming skips whole batches in the batch sampler (Accelerate's
  `skip_first_batches`), without decoding them.
- `StreamingBatchStream`: `datasets.IterableDataset` streams (Hub datasets not downloaded), interleaved by weight,
  shuffled in a buffer and split per process with `split_dataset_by_node`. Each process's stream runs on across
  epochs, so every process always has a next batch. Resuming re-reads rows up to the saved position without
  decoding their audio.

Unusable files (undecodable, empty, non-finite) never stop a run: a clip that fails to decode is replaced in its batch
by another clip of the same batch, and the batch names the file and the reason under `"unusable_files"` (pretrain.py
counts them in metrics.jsonl and lists them in `unusable_files.json`). With `data.cache_dir`, local corpora are
decoded once (`audio_cache.py`) and unusable files are left out of the corpus from the start.

Random crops draw from a generator seeded per clip (from the data seed, the epoch and the clip's position), never from
the global RNG, so a resumed run sees exactly the crops an uninterrupted one would, whatever the worker count.
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.audio import AudioDecodeError, decode_failure, decoded_mono, open_audio, source_name
from ..data.file_io import read_table_rows
from .audio_cache import DecodedCorpus, decoded_corpus
from .config import CorpusConfig, DataConfig

logger = logging.getLogger(__name__)

# Clips longer than this are range-decoded around the crop instead of decoded whole.
RANGE_DECODE_ABOVE_S = 60.0
_FILTER = re.compile(r"^\s*(?P<column>[^\s<>=!]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>.+?)\s*$")
_OPERATORS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


# ---------------------------------------------------------------------------------------------- corpora


@dataclass(frozen=True)
class RowFilter:
    """`column op value`, e.g. `cough_detected > 0.95`; rows whose value is missing never match."""

    column: str
    op: str
    value: Any

    @classmethod
    def parse(cls, text: str) -> RowFilter:
        import yaml

        match = _FILTER.match(text)
        if match is None:
            raise ValueError(
                f"Filter {text!r} is not of the form '<column> <op> <value>' with op in {sorted(_OPERATORS)}, "
                "e.g. 'cough_detected > 0.95'."
            )
        return cls(match["column"], match["op"], yaml.safe_load(match["value"]))

    def __call__(self, value) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        try:
            return bool(_OPERATORS[self.op](value, self.value))
        except TypeError as error:
            raise ValueError(
                f"Filter '{self.column} {self.op} {self.value!r}' cannot compare the value {value!r}: {error}"
            ) from None


def _audio_folder_table(spec: CorpusConfig):
    """A folder of audio files (recursively), joined with an optional metadata table."""
    import datasets

    from resp_audio_hf.data.audio import AUDIO_EXTENSIONS

    root = Path(spec.path)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"Corpus {spec.label}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}.")
    if spec.metadata is None:
        return datasets.Dataset.from_dict({spec.audio_column: [str(p) for p in files]})

    metadata = Path(spec.metadata)
    metadata = metadata if metadata.is_absolute() or metadata.exists() else root / metadata
    by_key: dict[str, Path] = {}
    for path in files:
        for key in (path.relative_to(root).as_posix(), path.name, path.stem):
            by_key.setdefault(key, path)
    rows, unmatched = [], 0
    for row in read_table_rows(metadata):
        if spec.file_column not in row:
            raise ValueError(
                f"Corpus {spec.label}: metadata {metadata} has no column {spec.file_column!r}; set file_column to one "
                f"of {sorted(row)}."
            )
        path = by_key.get(str(row[spec.file_column]).strip())
        if path is None:
            unmatched += 1
            continue
        rows.append({**row, spec.audio_column: str(path)})
    if unmatched:
        logger.warning("Corpus %s: %d metadata rows name no audio file under %s.", spec.label, unmatched, root)
    if not rows:
        raise FileNotFoundError(f"Corpus {spec.label}: no row of {metadata} matches an audio file under {root}.")
    return datasets.Dataset.from_list(rows)


def _select_split(tables, spec: CorpusConfig):
    import datasets

    if not isinstance(tables, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return tables
    if spec.split is not None:
        if spec.split not in tables:
            raise ValueError(f"Corpus {spec.label} has no split {spec.split!r}; available: {sorted(tables)}.")
        return tables[spec.split]
    return datasets.concatenate_datasets([tables[name] for name in sorted(tables)])


def _load_table(spec: CorpusConfig, streaming: bool):
    import datasets

    if spec.corpus is not None:
        from resp_audio_hf.data import build_corpus_dataset

        # Files are decoded when first used; a bad one then raises with its path (probing millions up front is slow).
        tables, _ = build_corpus_dataset(spec.corpus, spec.root, data_root=spec.data_root, verify_audio=False)
        return _select_split(tables, spec)
    path = Path(spec.path)
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        return _select_split(datasets.load_from_disk(str(path)), spec)
    if path.is_dir() and spec.data_dir is None and spec.dataset_config is None:
        return _audio_folder_table(spec)
    tables = datasets.load_dataset(
        spec.path, name=spec.dataset_config, data_dir=spec.data_dir, split=spec.split, streaming=streaming
    )
    return _select_split(tables, spec)


def load_corpus(spec: CorpusConfig, sampling_rate: int, streaming: bool = False, keep_columns: tuple[str, ...] = ()):
    """
    The corpus as a `datasets.Dataset` (or `IterableDataset` when `streaming`) with its audio column (and
    `keep_columns`), stored undecoded (`Audio(decode=False)`): clips are decoded, downmixed and resampled to
    `sampling_rate` when cropped.
    """
    import datasets

    table = _load_table(spec, streaming)
    columns = table.column_names
    if columns is not None and spec.audio_column not in columns:
        raise ValueError(f"Corpus {spec.label} has no column {spec.audio_column!r}; its columns are {columns}.")
    for text in spec.filters:
        row_filter = RowFilter.parse(text)
        if columns is not None and row_filter.column not in columns:
            raise ValueError(f"Corpus {spec.label}: filter {text!r} names a missing column; columns are {columns}.")
        table = table.filter(
            lambda values, f=row_filter: [f(v) for v in values], input_columns=row_filter.column, batched=True
        )
    if spec.exclude_subjects:
        if columns is not None and spec.subject_column not in columns:
            raise ValueError(
                f"Corpus {spec.label}: exclude_subjects needs a {spec.subject_column!r} column; columns are {columns}."
            )
        excluded = {str(subject) for subject in spec.exclude_subjects}
        before = len(table) if isinstance(table, datasets.Dataset) else None
        table = table.filter(
            lambda values: [str(v) not in excluded for v in values], input_columns=spec.subject_column, batched=True
        )
        if before is not None:
            logger.info(
                "Corpus %s: %d rows of %d excluded subjects left out.", spec.label, before - len(table), len(excluded)
            )
    if spec.limit is not None:
        table = (
            table.take(spec.limit)
            if isinstance(table, datasets.IterableDataset)
            else table.select(range(min(spec.limit, len(table))))
        )
    missing = [name for name in keep_columns if columns is not None and name not in columns]
    if missing:
        raise ValueError(f"Corpus {spec.label} has no column {missing}; its columns are {columns}.")
    table = table.select_columns([spec.audio_column, *keep_columns])
    if spec.audio_column != "audio":
        table = table.rename_column(spec.audio_column, "audio")
    table = table.cast_column("audio", datasets.Audio(sampling_rate=sampling_rate, decode=False))
    if isinstance(table, datasets.Dataset) and len(table) == 0:
        raise ValueError(f"Corpus {spec.label} is empty after its filters {spec.filters}.")
    if streaming and isinstance(table, datasets.Dataset):
        table = table.to_iterable_dataset(num_shards=min(len(table), 64))
    return table


# ---------------------------------------------------------------------------------------------- clips and crops


@dataclass(frozen=True)
class UnusableClip:
    """Stands in for a clip whose file could not be used; the collator replaces it and reports it."""

    path: str
    reason: str


class ClipDecoder:
    """
    Decodes one stored clip (`{"path", "bytes"}`) to mono float32 at `sampling_rate`, cropped to `crop_samples`.
    Clips are decoded as `bench` decodes files (`resp_audio_hf.data.audio.load_audio`), so a crop is a window of the
    samples the benchmark sees; only clips longer than `RANGE_DECODE_ABOVE_S` are decoded around the crop alone.
    """

    def __init__(self, sampling_rate: int, crop_samples: int, short_clips: str = "repeat"):
        self.sampling_rate = sampling_rate
        self.crop_samples = crop_samples
        self.short_clips = short_clips

    def __call__(self, stored: dict, rng: np.random.Generator, where: str = "") -> np.ndarray:
        name = source_name(stored)
        try:
            decoder = open_audio(stored, self.sampling_rate)
            duration = decoder.metadata.duration_seconds
            crop_seconds = self.crop_samples / self.sampling_rate
            if duration is not None and duration > max(RANGE_DECODE_ABOVE_S, 2 * crop_seconds):
                start = float(rng.uniform(0.0, duration - crop_seconds))
                waveform = decoded_mono(decoder, name, start, start + crop_seconds + 0.1)[: self.crop_samples]
            else:
                waveform = decoded_mono(decoder, name)
            # Whole clips are cropped here; a range decode that fell short of the header's duration is tiled.
            waveform = crop_clip(waveform, self.crop_samples, rng, self.short_clips)
        except Exception as error:  # torchcodec raises RuntimeError/ValueError subclasses for bad streams
            raise decode_failure(name, error, where) from error
        return np.ascontiguousarray(waveform, dtype=np.float32)

    def crop_or_unusable(self, stored: dict, rng: np.random.Generator, where: str = "") -> np.ndarray | UnusableClip:
        """`self(...)`, or an `UnusableClip` naming the file and the reason when it cannot be decoded."""
        try:
            return self(stored, rng, where)
        except AudioDecodeError as error:
            return UnusableClip(error.path, error.reason)


def crop_clip(
    waveform: np.ndarray, crop_samples: int, rng: np.random.Generator, short_clips: str = "repeat"
) -> np.ndarray:
    """A random `crop_samples` window; shorter clips are tiled (`"repeat"`, M2D's `repeat_short`) or zero-padded."""
    length = waveform.shape[0]
    if length == 0:
        raise ValueError("Cannot crop an empty clip (0 samples).")
    if length >= crop_samples:
        start = int(rng.integers(0, length - crop_samples + 1))
        return waveform[start : start + crop_samples]
    if short_clips == "repeat":
        return np.tile(waveform, math.ceil(crop_samples / length))[:crop_samples]
    return np.pad(waveform, (0, crop_samples - length))


def crop_samples_for(feature_extractor, num_frames: int) -> int:
    """Fewest samples from which `feature_extractor` makes `num_frames` frames."""
    samples = max(1, (num_frames - 1) * feature_extractor.hop_length)
    while feature_extractor.num_frames(samples) < num_frames:
        samples += 1
    return samples


class LogMelCollator:
    """
    Equal-length crops -> `{"input_values": [batch, num_frames, num_mel_bins], "unusable_files": [(path, reason)]}`
    through the model's front end. An `UnusableClip` is replaced by a usable crop of the same batch (the batch keeps
    its size, so every process keeps running the same steps) and reported in `unusable_files`.
    """

    def __init__(self, feature_extractor, num_frames: int):
        self.feature_extractor = feature_extractor
        self.num_frames = num_frames

    def __call__(self, items: list[np.ndarray | UnusableClip]) -> dict:
        usable = [item for item in items if not isinstance(item, UnusableClip)]
        unusable = [(item.path, item.reason) for item in items if isinstance(item, UnusableClip)]
        if not usable:
            raise RuntimeError(
                f"Every clip of a batch was unusable: {unusable}. Check the corpora (or use data.cache_dir, which "
                "leaves unusable files out up front)."
            )
        waveforms = [
            usable[i % len(usable)] if isinstance(item, UnusableClip) else item for i, item in enumerate(items)
        ]
        features = self.feature_extractor(
            waveforms,
            sampling_rate=self.feature_extractor.sampling_rate,
            padding="max_length",
            max_length=self.num_frames,
            truncation=True,
            return_attention_mask=False,
            return_tensors="pt",
        )
        return {"input_values": features["input_values"], "unusable_files": unusable}


# ---------------------------------------------------------------------------------------------- map-style mixture


class MixturePlan:
    """
    The clips of each epoch: corpus `i` contributes `round(repeat_i * size_i)` rows, or, when weights are given,
    `epoch_size * weight_i / sum(weights)` rows. A corpus listed more often than its size is walked in fresh
    permutations (whole copies first, then a random subset), and the epoch is shuffled as a whole. Everything is a
    pure function of `(seed, epoch)`.
    """

    def __init__(
        self,
        sizes: list[int],
        repeats: list[float],
        weights: list[float | None],
        seed: int,
        epoch_size: int | None = None,
    ):
        if any(size < 1 for size in sizes):
            raise ValueError(f"Every corpus needs at least one clip; sizes are {sizes}.")
        self.sizes, self.seed = list(sizes), seed
        given = [w is not None for w in weights]
        if any(given) and not all(given):
            raise ValueError("Mix corpora either all by `weight` or all by `repeat`; some corpora lack a weight.")
        if all(given):
            total = epoch_size or sum(sizes)
            shares = np.asarray(weights, dtype=np.float64) / float(sum(weights)) * total
            counts = np.floor(shares).astype(np.int64)
            # Largest remainders get the clips rounding left over, so the epoch has exactly `total` clips.
            counts[np.argsort(-(shares - counts), kind="stable")[: total - int(counts.sum())]] += 1
            self.counts = [int(c) for c in counts]
        else:
            self.counts = [max(1, round(r * s)) for r, s in zip(repeats, sizes)]

    def __len__(self) -> int:
        return sum(self.counts)

    def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """`(items [N, 2] of (corpus, row), crop seeds [N])` for one epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        parts = []
        for corpus, (size, count) in enumerate(zip(self.sizes, self.counts)):
            rows = [rng.permutation(size) for _ in range(count // size)] + [rng.permutation(size)[: count % size]]
            rows = np.concatenate(rows)
            parts.append(np.stack([np.full_like(rows, corpus), rows], axis=1))
        items = np.concatenate(parts)[rng.permutation(len(self))]
        return items, rng.integers(0, 2**63 - 1, size=len(self), dtype=np.int64)


class MixtureBatchSampler(torch.utils.data.Sampler):
    """
    Batches of `(corpus, row, crop_seed)` for process `rank` of `num_replicas`: global batch `g` is clips
    `[g * B * W, (g + 1) * B * W)` of the epoch and this process takes its `rank`-th slice of `B`. Incomplete global
    batches are dropped, so every process runs the same number of steps.
    """

    def __init__(self, plan: MixturePlan, batch_size: int, num_replicas: int = 1, rank: int = 0):
        self.plan, self.batch_size, self.num_replicas, self.rank = plan, batch_size, num_replicas, rank
        self.epoch = 0
        if len(self) == 0:
            raise ValueError(self.too_little_data())

    def too_little_data(self) -> str:
        """The error when an epoch fills no global batch."""
        return (
            f"An epoch has {len(self.plan)} clips, fewer than one global batch ({self.batch_size} x "
            f"{self.num_replicas} processes): add data, raise `repeat`, or lower the batch size."
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.plan) // (self.batch_size * self.num_replicas)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        items, seeds = self.plan.epoch(self.epoch)
        for batch in range(len(self)):
            start = (batch * self.num_replicas + self.rank) * self.batch_size
            yield [
                (int(c), int(r), int(s))
                for (c, r), s in zip(items[start : start + self.batch_size], seeds[start : start + self.batch_size])
            ]


class CropDataset(torch.utils.data.Dataset):
    """
    `dataset[(corpus, row, crop_seed)]` -> a random crop of that clip (float32 waveform), or an `UnusableClip`.
    A corpus is a `datasets.Dataset` of stored audio (decoded here) or a `DecodedCorpus` (decoded once, cached).
    """

    def __init__(self, corpora: list, names: list[str], decoder: ClipDecoder):
        self.corpora, self.names, self.decoder = corpora, names, decoder

    def __len__(self) -> int:
        return sum(len(corpus) for corpus in self.corpora)

    def __getitem__(self, key: tuple[int, int, int]) -> np.ndarray | UnusableClip:
        corpus, row, seed = key
        source, rng = self.corpora[corpus], np.random.default_rng(seed)
        if isinstance(source, DecodedCorpus):
            return crop_clip(source.clip(row), self.decoder.crop_samples, rng, self.decoder.short_clips)
        stored = source[row]["audio"]
        return self.decoder.crop_or_unusable(stored, rng, where=f" (corpus {self.names[corpus]}, row {row})")


class BatchStream:
    """
    Endless micro-batches `{"input_values": [batch, frames, mel]}` for one process. `state_dict()` is the position
    after the last batch handed out; `load_state_dict()` before iterating continues from there.

    Attributes:
        batches_per_epoch: micro-batches per epoch and process (`None` for streams, whose length is unknown).
        files: the audio files listed for each corpus, unusable ones included (`None` for streams).
        unusable_files: `{path: reason}` of the files left out before training (by the decoding cache); files found
            unusable during training are reported by the batches instead.
    """

    batches_per_epoch: int | None = None
    files: dict[str, list[str]] | None = None
    unusable_files: dict[str, str]
    # Names the kind of position in checkpoints, and the attributes that hold it.
    kind: str
    position_fields: tuple[str, ...]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def layout(self) -> dict:
        """What must be the same for a saved position to mean the same data order (corpus sizes, process count)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"kind": self.kind, **{name: getattr(self, name) for name in self.position_fields}, **self.layout()}

    def load_state_dict(self, state: dict) -> None:
        expected = {"kind": self.kind, **self.layout()}
        saved = {key: state.get(key) for key in expected}
        if saved != expected:
            raise ValueError(
                f"The checkpoint's data position was saved for {saved}, but this run has {expected}: resuming would "
                "not continue the same data order. Resume with the original data configuration and process count."
            )
        for name in self.position_fields:
            setattr(self, name, int(state[name]))


class MixtureBatchStream(BatchStream):
    """Map-style corpora: `batches_per_epoch` batches per epoch (a multiple of the accumulation steps)."""

    kind, position_fields = "mixture", ("epoch", "batch_in_epoch")

    def __init__(
        self,
        dataset: CropDataset,
        sampler: MixtureBatchSampler,
        collate: Callable,
        num_workers: int,
        gradient_accumulation_steps: int = 1,
    ):
        self.dataset, self.sampler, self.collate, self.num_workers = dataset, sampler, collate, num_workers
        # Batches left over at the end of an epoch that do not fill an optimizer step are skipped.
        self.batches_per_epoch = len(sampler) // gradient_accumulation_steps * gradient_accumulation_steps
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"An epoch holds {len(sampler)} batches per process, fewer than gradient_accumulation_steps="
                f"{gradient_accumulation_steps}; add data or lower the batch size or the accumulation."
            )
        self.epoch, self.batch_in_epoch = 0, 0
        self.corpus_sizes = [len(c) for c in dataset.corpora]
        self.unusable_files = {}

    def layout(self) -> dict:
        return {"corpus_sizes": self.corpus_sizes}

    def _loader(self, epoch: int, skip: int):
        from accelerate import skip_first_batches

        self.sampler.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            # A private generator keeps the loader from drawing on the global RNG that Accelerate checkpoints.
            generator=torch.Generator(),
        )
        return skip_first_batches(loader, skip) if skip else loader

    def __iter__(self):
        while True:
            loader = self._loader(self.epoch, self.batch_in_epoch)
            for batch in itertools.islice(loader, self.batches_per_epoch - self.batch_in_epoch):
                self.batch_in_epoch += 1
                yield batch
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0


# ---------------------------------------------------------------------------------------------- streaming


def _rows(stream, chunk: int = 64):
    """The stored audio of every row. `IterableDataset.iter` rather than `__iter__`: inside a DataLoader worker the
    latter hands each worker a different part of the stream, and here every worker must see all rows, in order."""
    for batch in stream.iter(batch_size=chunk):
        yield from batch["audio"]


class _StreamingCrops(torch.utils.data.IterableDataset):
    """One process's endless stream of collated batches; DataLoader workers take turns by batch, in order."""

    def __init__(self, owner: StreamingBatchStream, epoch: int, offset: int):
        self.owner, self.epoch, self.offset = owner, epoch, offset

    def __iter__(self):
        from datasets.distributed import split_dataset_by_node

        owner = self.owner
        worker = torch.utils.data.get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        epoch, offset, batch_index, pending = self.epoch, self.offset, 0, []
        while True:
            shard = split_dataset_by_node(owner.stream, rank=owner.rank, world_size=owner.world_size)
            shard.set_epoch(epoch)
            seen = 0
            for position, stored in enumerate(_rows(shard)):
                seen += 1
                if position < offset:
                    continue  # rows before the resume point are read but never decoded
                mine = batch_index % num_workers == worker_id
                rng = np.random.default_rng([owner.seed, owner.rank, epoch, position])
                pending.append(
                    owner.decoder.crop_or_unusable(stored, rng, where=f" (stream epoch {epoch}, row {position})")
                    if mine
                    else None
                )
                if len(pending) == owner.batch_size:
                    if mine:
                        yield {**owner.collate(pending), "stream_epoch": epoch, "stream_offset": position + 1}
                    pending, batch_index = [], batch_index + 1
            if seen == 0:
                raise RuntimeError(f"The data stream of process {owner.rank} is empty; check the corpora and filters.")
            epoch, offset = epoch + 1, 0


class StreamingBatchStream(BatchStream):
    """`datasets.IterableDataset` corpora mixed by weight; position = (epoch, rows consumed) of this process."""

    kind, position_fields = "stream", ("epoch", "offset")

    def __init__(
        self,
        stream,
        decoder: ClipDecoder,
        collate: Callable,
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        num_workers: int,
    ):
        self.stream, self.decoder, self.collate = stream, decoder, collate
        self.batch_size, self.rank, self.world_size, self.seed, self.num_workers = (
            batch_size,
            rank,
            world_size,
            seed,
            num_workers,
        )
        self.epoch, self.offset = 0, 0
        self.unusable_files = {}

    def layout(self) -> dict:
        return {"world_size": self.world_size}

    def __iter__(self):
        loader = torch.utils.data.DataLoader(
            _StreamingCrops(self, self.epoch, self.offset),
            batch_size=None,
            num_workers=self.num_workers,
            generator=torch.Generator(),
        )
        for batch in loader:
            self.epoch, self.offset = int(batch.pop("stream_epoch")), int(batch.pop("stream_offset"))
            yield batch


# ---------------------------------------------------------------------------------------------- assembly


def build_batch_stream(
    config: DataConfig,
    feature_extractor,
    num_frames: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    gradient_accumulation_steps: int = 1,
) -> BatchStream:
    """The batch stream of process `rank`: `num_frames`-frame log-mel crops of the mixed corpora."""
    sampling_rate = feature_extractor.sampling_rate
    decoder = ClipDecoder(sampling_rate, crop_samples_for(feature_extractor, num_frames), config.short_clips)
    collate = LogMelCollator(feature_extractor, num_frames)
    corpora = [load_corpus(spec, sampling_rate, streaming=config.streaming) for spec in config.corpora]
    names = [spec.label for spec in config.corpora]
    if config.streaming and config.cache_dir is not None:
        raise ValueError("data.cache_dir decodes local corpora once; it does not apply to streams (data.streaming).")
    if config.streaming:
        import datasets

        weights = [spec.weight if spec.weight is not None else 1.0 for spec in config.corpora]
        stream = corpora[0]
        if len(corpora) > 1:
            stream = datasets.interleave_datasets(
                corpora, probabilities=[w / sum(weights) for w in weights], seed=seed, stopping_strategy="all_exhausted"
            )
        stream = stream.shuffle(seed=seed, buffer_size=config.shuffle_buffer)
        return StreamingBatchStream(
            stream, decoder, collate, config.batch_size, rank, world_size, seed, config.num_workers
        )

    mixture = load_mixture(config, corpora, names, sampling_rate, seed)
    sampler = MixtureBatchSampler(mixture.plan, config.batch_size, world_size, rank)
    stream = MixtureBatchStream(
        CropDataset(mixture.corpora, names, decoder), sampler, collate, config.num_workers, gradient_accumulation_steps
    )
    stream.files, stream.unusable_files = mixture.files, mixture.unusable
    return stream


@dataclass
class Mixture:
    """Map-style corpora ready to crop (decoded once when `data.cache_dir` is set) and the plan of their epochs."""

    corpora: list
    plan: MixturePlan
    files: dict[str, list[str]]
    unusable: dict[str, str]


def load_mixture(config: DataConfig, corpora: list, names: list[str], sampling_rate: int, seed: int) -> Mixture:
    """The listed files of each corpus, their decoding cache (with the unusable files left out) and the epoch plan."""
    files = {name: corpus_paths(name, corpus) for name, corpus in zip(names, corpora)}
    unusable: dict[str, str] = {}
    if config.cache_dir is not None:
        embedded = [name for name in names if None in files[name]]
        if embedded:
            raise ValueError(f"data.cache_dir decodes files; corpora {embedded} hold audio as embedded bytes.")
        corpora = [
            decoded_corpus(files[name], sampling_rate, config.cache_dir, name, config.num_workers) for name in names
        ]
        for corpus in corpora:
            unusable.update(corpus.unusable)
    for name, corpus in zip(names, corpora):
        logger.info("Corpus %s: %d clips.", name, len(corpus))
    plan = MixturePlan(
        [len(c) for c in corpora],
        [spec.repeat for spec in config.corpora],
        [spec.weight for spec in config.corpora],
        seed,
        config.epoch_size,
    )
    return Mixture(corpora, plan, files, unusable)


def corpus_paths(name: str, table) -> list[str | None]:
    """The file of every row of a map-style corpus, in row order (`None` for audio stored as bytes), read from the
    Arrow column without touching any embedded bytes."""
    import pyarrow.compute

    return pyarrow.compute.struct_field(table.with_format("arrow")["audio"], "path").to_pylist()
