"""The results table of resp_audio_hf: AudioSet, respiratory and AudioSet + respiratory pre-training of one network;
frequency-preserving vs mean pooling.

One command reproduces `results/results.json`, `results/results.md` and `results/results.png` (see
`results/README.md` for the exact command of the committed files):

    python results/make_results.py --data-root /work/data/ext --data-root ../shared/data --output-dir results \
        --as-resp-model /work/runs/mn04-as-resp/model --as-resp-noteacher-model /work/runs/mn04-as-resp-noteacher/model \
        --resp-only-model /work/runs/mn04-random-resp/model

Tasks: SPRSound S1 (record level) and S2 (event level) on the challenge's official protocol (inter- and
intra-patient test parts scored separately), and COVID-19 detection on the CC0 coughs. Each task's corpus is taken
from the first `--data-root` that holds it.

Models: EfficientAT `mn04` (AudioSet); the same network further pre-trained on respiratory audio from its AudioSet
weights (OPERA-CT contrastive objective with and without a frozen AudioSet teacher) and from a random start
(`training/configs/mn04_resp_contrastive.yaml`); `mn04` at that random start (seed 0: the very weights the
respiratory-only run started from); and the non-learned baselines log-mel statistics and clip duration. Each model is embedded once per task with frequency-preserving pooling, through the benchmark's
embedding cache; `mean` and `band_limited` are derived from those embeddings
(`resp_audio_hf.benchmark.pooling`). Every variant is scored with OPERA's linear probe over 5 seeds, on
standardised features (z-scored with the training rows' statistics) and, for some, on raw features as OPERA does.
Pairs of variants are compared on identical rows with a bootstrap over test patients
(`resp_audio_hf.benchmark.paired`).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from resp_audio_hf.benchmark.arguments import default_cache_dir  # noqa: E402
from resp_audio_hf.benchmark.nonlearned import nonlearned_encoder  # noqa: E402
from resp_audio_hf.benchmark.paired import paired_bootstrap  # noqa: E402
from resp_audio_hf.benchmark.pooling import (  # noqa: E402
    derive_pooling,
    row_frequency_ranges,
    signal_rows,
)
from resp_audio_hf.benchmark.runner import embed_task, score_task  # noqa: E402
from resp_audio_hf.data.corpora import CorpusNotFoundError, find_corpus_dir  # noqa: E402
from resp_audio_hf.data.file_io import (  # noqa: E402
    atomic_save_figure,  # noqa: E402
    atomic_write_json,
    atomic_write_text,
)
from resp_audio_hf.data.tasks import get_task_spec, load_task  # noqa: E402
from resp_audio_hf.extraction import AudioEncoder  # noqa: E402
from resp_audio_hf.training.monitors import effective_rank  # noqa: E402

logger = logging.getLogger("make_results")

TASKS = ("S1", "S2", "COVID-cough")
SIGNAL_LIMIT_HZ = 4000.0  # Nyquist frequency of SPRSound's (and the call-centre coughs') 8 kHz audio
N_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class ModelEntry:
    """One encoder of the table.

    Attributes:
        key: short id used in variant names.
        title: what it is, for the table.
        poolings: poolings scored (derived from its frequency-preserving embeddings); `("own",)` for baselines.
        raw: poolings also scored on raw (unstandardised) features.
    """

    key: str
    title: str
    poolings: tuple[str, ...]
    raw: tuple[str, ...]


MODELS = (
    ModelEntry(
        "mn04-as",
        "EfficientAT mn04, AudioSet",
        ("freq_preserving", "mean", "band_limited"),
        ("freq_preserving", "mean"),
    ),
    ModelEntry("mn04-init", "EfficientAT mn04, random start", ("freq_preserving",), ("freq_preserving",)),
    ModelEntry(
        "mn04-as-resp",
        "EfficientAT mn04, AudioSet → respiratory (contrastive + teacher)",
        ("freq_preserving", "mean"),
        ("freq_preserving",),
    ),
    ModelEntry(
        "mn04-as-resp-noteacher",
        "EfficientAT mn04, AudioSet → respiratory (contrastive, no teacher)",
        ("freq_preserving",),
        ("freq_preserving",),
    ),
    ModelEntry(
        "mn04-resp", "EfficientAT mn04, random → respiratory (contrastive)", ("freq_preserving",), ("freq_preserving",)
    ),
    ModelEntry("log-mel-stats", "log-mel statistics (no learning)", ("own",), ("own",)),
    ModelEntry("duration", "clip duration (no learning)", ("own",), ("own",)),
)

# (A, B, question): variants are "<model>/<pooling>/<std|raw>".
COMPARISONS = (
    ("mn04-as/freq_preserving/std", "mn04-as/mean/std", "freq_preserving vs mean: mn04 AudioSet"),
    ("mn04-as/freq_preserving/raw", "mn04-as/mean/raw", "freq_preserving vs mean: mn04 AudioSet, raw features (OPERA)"),
    ("mn04-as/band_limited/std", "mn04-as/freq_preserving/std", "band-limited vs all rows: mn04 AudioSet"),
    ("mn04-as/freq_preserving/std", "mn04-init/freq_preserving/std", "AudioSet pre-training vs random start (mn04)"),
    ("mn04-as-resp/freq_preserving/std", "mn04-as/freq_preserving/std", "AS+resp − AS (mn04, further pre-training)"),
    ("mn04-as-resp/freq_preserving/std", "mn04-resp/freq_preserving/std", "AS+resp − resp-only (mn04)"),
    ("mn04-as/freq_preserving/std", "mn04-resp/freq_preserving/std", "AS − resp-only (mn04)"),
    ("mn04-resp/freq_preserving/std", "mn04-init/freq_preserving/std", "resp-only − random start (mn04)"),
    (
        "mn04-as-resp/freq_preserving/std",
        "mn04-as-resp-noteacher/freq_preserving/std",
        "teacher − no teacher (mn04 AS+resp)",
    ),
    ("mn04-as/freq_preserving/std", "duration/own/std", "mn04 AudioSet vs duration alone"),
    ("mn04-as/freq_preserving/std", "log-mel-stats/own/std", "mn04 AudioSet vs log-mel statistics"),
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-root",
        action="append",
        type=Path,
        required=True,
        help="folder holding corpus folders (SPRSound/, covid19-cough/); repeat it, the first holding a corpus wins",
    )
    parser.add_argument("--output-dir", type=Path, default=REPO / "results")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help=f"embedding cache (default: {default_cache_dir()})"
    )
    parser.add_argument("--mn04", default=str(REPO / "pretrained" / "efficientat-mn04-as"))
    for option, what in FURTHER_PRETRAINED_OPTIONS.values():
        parser.add_argument(option, default=None, help=f"model folder: {what}")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--models", default=",".join(m.key for m in MODELS), help="subset of the model keys")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resamples", type=int, default=N_RESAMPLES)
    parser.add_argument(
        "--extract-only", action="store_true", help="fill the embedding cache for every task and model, then stop"
    )
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


# Respiratory pre-training runs of mn04 (`training/configs/mn04_resp_contrastive.yaml`): model key -> option, what.
FURTHER_PRETRAINED_OPTIONS = {
    "mn04-as-resp": ("--as-resp-model", "mn04 further pre-trained from AudioSet on respiratory audio (with teacher)"),
    "mn04-as-resp-noteacher": ("--as-resp-noteacher-model", "the same run without the teacher (lambda = 0)"),
    "mn04-resp": ("--resp-only-model", "mn04 pre-trained on respiratory audio from a random start"),
}


def build_encoder(key: str, args) -> AudioEncoder:
    if key in FURTHER_PRETRAINED_OPTIONS:
        option = FURTHER_PRETRAINED_OPTIONS[key][0]
        folder = getattr(args, option.removeprefix("--").replace("-", "_"))
        if not folder:
            raise ValueError(f"Model {key} needs its folder: pass {option}.")
        return AudioEncoder.from_pretrained(folder, pooling="freq_preserving")
    if key == "mn04-as":
        return AudioEncoder.from_pretrained(args.mn04, pooling="freq_preserving")
    if key == "mn04-init":
        import torch
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        config = AutoConfig.from_pretrained(args.mn04)
        config = type(config).from_dict({**config.to_dict(), "pooling": "freq_preserving"})
        torch.manual_seed(0)
        model = AutoModel.from_config(config)
        return AudioEncoder(
            model, AutoFeatureExtractor.from_pretrained(args.mn04), model_id="efficientat-mn04:random-seed0"
        )
    return nonlearned_encoder(key)


def frequency_rows(encoder: AudioEncoder) -> tuple[int | None, list[int] | None, list]:
    """(rows F', rows carrying signal below SIGNAL_LIMIT_HZ, band-centre range of every row) of a model."""
    config = getattr(encoder.model, "config", None)
    if getattr(config, "model_type", None) not in ("resp_audio", "efficientat"):
        return None, None, []
    from resp_audio_hf.benchmark.pooling import frequency_row_spans

    spans = frequency_row_spans(config)
    return (
        len(spans),
        signal_rows(config, encoder.feature_extractor, SIGNAL_LIMIT_HZ),
        row_frequency_ranges(config, encoder.feature_extractor),
    )


def find_task(task_id: str, roots: list[Path]):
    spec = get_task_spec(task_id)
    for root in roots:
        try:
            find_corpus_dir(spec.corpus, root)
        except CorpusNotFoundError:
            continue
        return load_task(task_id, root), root
    raise FileNotFoundError(f"{task_id}: no --data-root holds the {spec.corpus} corpus ({', '.join(map(str, roots))})")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def variant_name(model: str, pooling: str, standardized: bool) -> str:
    return f"{model}/{pooling}/{'std' if standardized else 'raw'}"


def probe_inputs(features: np.ndarray, train_rows: np.ndarray, standardized: bool) -> np.ndarray:
    """The training rows as the probe sees them: z-scored with their own statistics, or raw."""
    train = features[train_rows]
    if not standardized:
        return train
    return (train - train.mean(axis=0)) / np.clip(train.std(axis=0), 1e-8, None)


def run(args) -> dict:
    task_ids = [t.strip() for t in args.tasks.split(",") if t.strip()]
    model_keys = [m.strip() for m in args.models.split(",") if m.strip()]
    entries = {m.key: m for m in MODELS if m.key in model_keys}
    cache_dir = args.cache_dir or default_cache_dir()
    results = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "settings": {
            "cache_dir": str(cache_dir),
            "bootstrap": {"resamples": args.resamples, "seed": BOOTSTRAP_SEED, "unit": "test patient (subject_id)"},
            "signal_limit_hz": SIGNAL_LIMIT_HZ,
            "machine": {
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
        },
        "models": {},
        "tasks": {},
        "comparisons": [],
    }
    encoders = {}
    for key, entry in entries.items():
        encoder = build_encoder(key, args)
        rows, kept, ranges = frequency_rows(encoder)
        encoders[key] = (encoder, rows, kept)
        results["models"][key] = {
            "title": entry.title,
            "model_id": encoder.model_id,
            "fingerprint": encoder.fingerprint(),
            "sampling_rate": encoder.sampling_rate,
            "frequency_rows": rows,
            "band_limited_rows": kept,
            "row_band_centres_hz": [[round(low), round(high)] for low, high in ranges],
        }
    for task_id in task_ids:
        task, root = find_task(task_id, args.data_root)
        spec = task.spec
        logger.info("%s from %s: split mode %s, test splits %s", task_id, root, task.split_mode, task.test_splits)
        embedded, timing = {}, {}
        for key, (encoder, _, _) in encoders.items():
            started = time.perf_counter()
            embedded[key] = embed_task(
                encoder, task, cache_dir=cache_dir, batch_size=args.batch_size, progress=not args.quiet
            )
            timing[key] = {
                "seconds": round(time.perf_counter() - started, 1),
                "clips": len(embedded[key].table),
                "peak_rss_mb_so_far": round(peak_rss_mb()),
            }
        if args.extract_only:
            results["tasks"][task_id] = {"extraction": timing}
            continue
        # Every variant is scored on the rows every model could embed, so paired comparisons see identical splits.
        common = set.intersection(*(set(e.table["file"]) for e in embedded.values()))
        reference = next(iter(embedded.values())).table
        table = reference[reference["file"].isin(common)].reset_index(drop=True)
        task_result = {
            "name": spec.name,
            "data_root": str(root),
            "split_mode": task.split_mode,
            "split_description": spec.split_description,
            "test_splits": list(task.test_splits),
            "counts": {
                split: {
                    "rows": int(n),
                    "positive": int(table.loc[table["split"] == split, "label"].sum()),
                    "patients": int(table.loc[table["split"] == split, "subject_id"].nunique()),
                }
                for split, n in table["split"].value_counts().items()
            },
            "data_report": task.report.summary(),
            "skipped": {key: e.skipped for key, e in embedded.items() if e.skipped},
            "extraction": timing,
            "variants": {},
        }
        predictions = {}
        train_rows = (table["split"] == "train").to_numpy()
        for key, entry in entries.items():
            encoder, n_rows, kept = encoders[key]
            frame = embedded[key].table.set_index("file")
            order = frame.index.get_indexer(table["file"])
            base = embedded[key].features[order]
            for pooling in entry.poolings:
                features = base if pooling == "own" else derive_pooling(base, n_rows, pooling, kept)
                for standardized in (True, False):
                    if not standardized and pooling not in entry.raw:
                        continue
                    name = variant_name(key, pooling, standardized)
                    protocol = replace(spec.protocol, standardize_features=standardized)
                    started = time.perf_counter()
                    result, held_out = score_task(
                        spec,
                        table,
                        features,
                        protocol,
                        split_mode=task.split_mode,
                        test_splits=task.test_splits,
                        return_predictions=True,
                    )
                    predictions[name] = held_out
                    task_result["variants"][name] = {
                        "model": key,
                        "pooling": pooling,
                        "features": "standardised" if standardized else "raw",
                        "embedding_dim": int(features.shape[1]),
                        # Centred effective rank of the training rows' embeddings (as the pre-training monitor).
                        "effective_rank": round(effective_rank(probe_inputs(features, train_rows, standardized)), 2),
                        "test": {
                            split: {metric: asdict(summary) for metric, summary in metrics.items()}
                            for split, metrics in result.test_results.items()
                        },
                        "best_epochs": [run.best_epoch for run in result.runs],
                        "absent_classes": result.absent_classes,
                        "probe_seconds": round(time.perf_counter() - started, 1),
                    }
                    logger.info(
                        "%s %s: %s",
                        task_id,
                        name,
                        ", ".join(
                            f"{s} {v[spec.metric].mean:.3f}±{v[spec.metric].std:.3f}"
                            for s, v in result.test_results.items()
                        ),
                    )
        for a, b, question in COMPARISONS:
            if a not in predictions or b not in predictions:
                continue
            pa, pb = predictions[a], predictions[b]
            if not np.array_equal(pa.rows, pb.rows):
                raise AssertionError(f"{task_id}: {a} and {b} were tested on different rows")
            for split in task.test_splits:
                mask = pa.splits == split
                comparison = paired_bootstrap(
                    pa.labels[mask],
                    pa.predictions[:, mask],
                    pb.predictions[:, mask],
                    table["subject_id"].to_numpy()[pa.rows][mask],
                    n_resamples=args.resamples,
                    seed=BOOTSTRAP_SEED,
                )
                results["comparisons"].append(
                    {"task": task_id, "test_split": split, "a": a, "b": b, "question": question, **comparison.to_dict()}
                )
        results["tasks"][task_id] = task_result
    results["settings"]["peak_rss_mb"] = round(peak_rss_mb())
    return results


# ------------------------------------------------------------------------------------------------------- reports


def _columns(results: dict) -> list[tuple[str, str]]:
    return [(task_id, split) for task_id, task in results["tasks"].items() for split in task["test_splits"]]


def _column_title(task_id: str, split: str) -> str:
    return task_id if split == "test" else f"{task_id} {split.replace('test_', '')}"


def _variant_rows(results: dict) -> list[str]:
    names = []
    for task in results["tasks"].values():
        names.extend(n for n in task["variants"] if n not in names)
    return names


def _variant_title(results: dict, name: str) -> str:
    model, pooling, features = name.split("/")
    pooling = {"own": "–", "band_limited": "band-limited"}.get(pooling, pooling)
    return f"{results['models'][model]['title']} | {pooling} | {'standardised' if features == 'std' else 'raw'}"


def markdown(results: dict) -> str:
    columns = _columns(results)
    tasks = list(results["tasks"])
    header = ["model", "pooling", "features"] + [_column_title(*c) for c in columns] + [f"rank {t}" for t in tasks]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for name in _variant_rows(results):
        cells = []
        for task_id, split in columns:
            variant = results["tasks"][task_id]["variants"].get(name)
            metric = variant["test"][split]["auroc"] if variant else None
            cells.append(f"{metric['mean']:.3f} ± {metric['std']:.3f}" if metric else "–")
        for task_id in tasks:
            variant = results["tasks"][task_id]["variants"].get(name)
            rank = variant.get("effective_rank") if variant else None
            cells.append(f"{rank:.1f}" if rank is not None else "–")
        lines.append("| " + _variant_title(results, name) + " | " + " | ".join(cells) + " |")
    out = [
        "AUROC, mean ± std over 5 probe seeds (OPERA's linear probe); rank: centred effective rank of the training "
        "rows' embeddings as the probe sees them.",
        "",
        *lines,
        "",
    ]
    out += [
        "Paired differences (A − B, AUROC, mean over seeds) with 95 % bootstrap intervals over test patients "
        f"({results['settings']['bootstrap']['resamples']} resamples); **bold**: the interval excludes 0.",
        "",
    ]
    header = ["comparison (A − B)"] + [_column_title(*c) for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    questions = list(dict.fromkeys(c["question"] for c in results["comparisons"]))
    for question in questions:
        cells = []
        for task_id, split in columns:
            match = [
                c
                for c in results["comparisons"]
                if c["question"] == question and c["task"] == task_id and c["test_split"] == split
            ]
            if not match:
                cells.append("–")
                continue
            c = match[0]
            text = f"{c['difference']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
            cells.append(f"**{text}**" if c["excludes_zero"] else text)
        lines.append("| " + question + " | " + " | ".join(cells) + " |")
    out += [*lines, ""]
    notes = []
    for task_id, task in results["tasks"].items():
        counts = ", ".join(
            f"{s} {v['rows']} rows / {v['patients']} patients / {v['positive']} positive"
            for s, v in sorted(task["counts"].items())
        )
        notes.append(f"- {task_id} ({task['name']}; split mode {task['split_mode']}): {counts}.")
    for model in results["models"].values():
        if model["band_limited_rows"] is not None:
            ranges = "; ".join(f"row {i}: {lo}–{hi} Hz" for i, (lo, hi) in enumerate(model["row_band_centres_hz"]))
            notes.append(
                f"- {model['title']}: band-limited keeps rows {model['band_limited_rows']} of {model['frequency_rows']} ({ranges}; band centres)."
            )
    return "\n".join(out + notes) + "\n"


def bar_chart(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    columns = _columns(results)
    names = [n for n in _variant_rows(results) if n.endswith("/std")]
    fig, axes = plt.subplots(
        1, len(columns), figsize=(3.2 * len(columns), 0.32 * len(names) + 1.6), sharey=True, squeeze=False
    )
    y = np.arange(len(names))
    colours = {
        "mn04-as": "C3",
        "mn04-init": "C8",
        "mn04-as-resp": "C4",
        "mn04-as-resp-noteacher": "C6",
        "mn04-resp": "C5",
        "log-mel-stats": "C2",
        "duration": "C1",
    }
    for axis, (task_id, split) in zip(axes[0], columns):
        means, stds = [], []
        for name in names:
            variant = results["tasks"][task_id]["variants"].get(name)
            metric = variant["test"][split]["auroc"] if variant else {"mean": np.nan, "std": 0.0}
            means.append(metric["mean"])
            stds.append(metric["std"])
        axis.barh(
            y,
            np.array(means) - 0.5,
            left=0.5,
            xerr=stds,
            color=[colours.get(n.split("/")[0], "C9") for n in names],
            capsize=2,
        )
        axis.axvline(0.5, color="grey", linewidth=0.8, linestyle="--")
        axis.set_xlim(0.4, 1.0)
        axis.set_title(_column_title(task_id, split), fontsize=9)
        axis.grid(axis="x", alpha=0.3)
        axis.set_xlabel("AUROC")
    axes[0, 0].set_yticks(y, [n.rsplit("/", 1)[0].replace("/own", "") for n in names], fontsize=8)
    axes[0, 0].invert_yaxis()
    fig.suptitle("Linear probes on standardised features: mean ± std over 5 seeds", fontsize=10)
    fig.tight_layout()
    return atomic_save_figure(fig, path, dpi=110)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    results = run(args)
    results["settings"]["wall_seconds"] = round(time.perf_counter() - started, 1)
    if args.extract_only:
        print({task: result["extraction"] for task, result in results["tasks"].items()})
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output_dir / "results.json", results)
    atomic_write_text(args.output_dir / "results.md", markdown(results))
    bar_chart(results, args.output_dir / "results.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
