"""The arguments of `resp-audio-hf bench`: one dataclass, parsed from the command line by transformers'
`HfArgumentParser`, passed to [`~resp_audio_hf.benchmark.runner.run_benchmark`] and recorded in
`results.json` (`"arguments"`), from which [`~resp_audio_hf.benchmark.results.load_results`] reads it back.

No annotation here is postponed (no `from __future__ import annotations`): `HfArgumentParser` builds each option
from its field's type. The values each option accepts are checked in `__post_init__`, which the command line
turns into a usage error (exit status 2) and which also checks what is read back from a file.
"""

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..data.file_io import cache_root


def default_cache_dir() -> Path:
    """Where `bench` caches embeddings when `--cache-dir` is not given."""
    return cache_root() / "embeddings"


def parse_seeds(text: str) -> tuple[int, ...]:
    """`"0,1,2"` -> `(0, 1, 2)`: the probe seeds as `--seeds` takes them."""
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--seeds takes comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    return seeds


# The fields that say where the encoder comes from; exactly one is given.
MODEL_SOURCES = ("model", "preset", "baseline")


def _option(help: str | None = None, default=None):
    """A field with `default` whose `help` is the option's text in `resp-audio-hf bench --help`."""
    return field(default=default, metadata={"help": help} if help else {})


@dataclass(kw_only=True)
class BenchmarkArguments:
    """What `resp-audio-hf bench` was asked to do; each field is the command-line option of the same name
    (`data_root` is `--data-root`).

    A program calling [`~resp_audio_hf.benchmark.runner.run_benchmark`] with an encoder it built names where
    that encoder came from in `model` or `preset`, as the command line would. Paths read back from
    `results.json` (where they are strings) become [`~pathlib.Path`] again.
    """

    model: str | None = _option(
        "local folder or Hub id of a transformers audio model (resp_audio or any AutoModel)"
    )
    preset: str | None = _option(
        "randomly initialised RespAudioConfig preset instead of a checkpoint (smoke tests)"
    )
    baseline: Literal["log-mel-stats", "duration"] | None = _option(
        "a non-learned baseline instead of a model: per-band log-mel statistics, or the clip duration alone"
    )
    tasks: str = _option(
        "comma-separated task ids (T1-T19, T8-random, T9-random, T10-subject, ICBHI-cycle, S1, S2, "
        "COVID-cough), 'opera' (T1-T19) or 'all' (default: every one of them except the variants)",
        default="all",
    )
    data_root: Path = field(
        metadata={"help": "folder holding the corpus folders (icbhi/, KAUH/, copd/, sprsound/, ...)"}
    )
    opera_dir: Path | None = _option(
        "local copy of the OPERA repository's split files (default: <data-root>/opera, then the cache, then download)"
    )
    output_dir: Path | None = _option("where results.json/.md/.png go (default: outputs/bench/<model>)")
    # `bench` fills in the default cache; a program that leaves it None extracts without a cache.
    cache_dir: Path | None = _option(f"embedding cache (default: {default_cache_dir()})")
    batch_size: int = _option(default=16)
    num_workers: int = _option("DataLoader worker processes for decoding/featurising", default=0)
    device: str = _option(default="cpu")
    pooling: str | None = _option(
        "replace the model's config.pooling: freq_preserving, mean or cls for resp_audio, freq_preserving or "
        "mean for efficientat (the pooling ablation; recorded in the results, and part of the embedding cache key)"
    )
    max_duration: float | None = _option(
        "keep only the first N seconds of each clip (off by default; recorded in the results)"
    )
    epochs: int | None = _option(
        "override the probe epochs of every task (quick checks; the OPERA protocol uses 64, KAUH 50)"
    )
    # Text as typed: the option takes "0,1,2" (HfArgumentParser would make a list option take "0 1 2");
    # `protocol_overrides` has them as integers.
    seeds: str | None = _option("override the probe seeds, e.g. 0,1,2 (OPERA: 0,1,2,3,4)")
    standardize_features: bool = _option(
        "z-score the embeddings with each probe's training rows' mean and std before the probe (OPERA's probe "
        "does not; recorded in the results)",
        default=False,
    )
    compare_opera: bool = _option(
        "show OPERA's published baselines and the mean reciprocal rank beside our scores", default=False
    )
    no_verify_audio: bool = _option("skip the decode check of every file before extraction", default=False)
    revision: str | None = _option("model revision on the Hub")
    trust_remote_code: bool = _option(default=False)
    quiet: bool = _option("no progress bars", default=False)

    def __post_init__(self):
        given = [f"--{name}" for name in MODEL_SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of --model, --preset, --baseline" + (f" (got {', '.join(given)})" if given else "")
            )
        for name in ("data_root", "opera_dir", "output_dir", "cache_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))
        if self.seeds is not None:
            parse_seeds(self.seeds)
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} takes a positive integer, got {value}")
        if self.max_duration is not None and not self.max_duration > 0:
            raise ValueError(f"--max-duration takes a positive number of seconds, got {self.max_duration}")

    @property
    def protocol_overrides(self) -> dict:
        """The probe protocol fields these arguments replace in every task (`epochs`, `seeds`,
        `standardize_features`); empty when none is given."""
        overrides = {"epochs": self.epochs, "seeds": parse_seeds(self.seeds) if self.seeds is not None else None}
        overrides = {key: value for key, value in overrides.items() if value is not None}
        if self.standardize_features:
            overrides["standardize_features"] = True
        return overrides

    @property
    def run_name(self) -> str:
        """The default output folder's name: the model, preset or baseline, and the pooling of an ablation (so an
        ablation does not overwrite the model's own results)."""
        name = self.model or (f"baseline-{self.baseline}" if self.baseline else f"preset-{self.preset}")
        return name + (f"-pooling-{self.pooling}" if self.pooling else "")

    def to_dict(self) -> dict:
        """JSON-ready: paths as strings."""
        return {key: os.fspath(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "BenchmarkArguments":
        """Read back [`to_dict`] (fields this version does not know are refused by the constructor)."""
        return cls(**values)

