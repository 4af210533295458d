"""``resp-audio-hf demo``: the shipped EfficientAT ``mn04`` (AudioSet) on real coughs, offline, in about a minute.

Two things run on 96 real cough recordings bundled with the package (CC0, ``resp_audio_hf/demo_data/covid19-cough``,
24 from each combination of COVID-19 label and source; see the README there):

1. **AudioSet tagging.** ``EfficientATForAudioClassification`` from ``pretrained/efficientat-mn04-as`` labels every
   clip with AudioSet's 527 classes; the report gives the top labels and how often each respiratory class (Cough,
   Throat clearing, Breathing, Wheeze, Gasp, Sneeze, ...) is the top one.
2. **The benchmark path.** The same recordings as a small copy of the ``COVID-cough`` task (split stratified by label
   and source, seed 1337): embeddings through the on-disk cache, OPERA's linear probe over five seeds on standardised
   features, for ``mn04`` with frequency-preserving and with mean pooling, and the log-mel statistics and duration
   baselines. With about 20 test recordings this shows the path working, not a result: ``results/`` in the
   repository holds the real table.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

DEMO_DATA = Path(__file__).resolve().parents[1] / "demo_data"
RESPIRATORY_LABELS = ("Cough", "Throat clearing", "Breathing", "Wheeze", "Gasp", "Sneeze", "Sniff", "Speech")


def default_model_dir() -> Path:
    """The EfficientAT mn04 AudioSet tagger shipped inside the package (``resp_audio_hf/pretrained/efficientat-mn04-as``,
    which the repository's ``pretrained/efficientat-mn04-as`` links to), so the demo runs from a wheel too."""
    return Path(__file__).resolve().parents[1] / "pretrained" / "efficientat-mn04-as"


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo.

    Attributes:
        model: folder of the EfficientAT AudioSet tagger (``None``: the one shipped in the package).
        data_root: folder holding ``covid19-cough/`` (``None``: the recordings bundled with the package).
        top_k: AudioSet labels listed per clip.
        batch_size: embedding batch size.
    """

    model: str | None = None
    data_root: str | None = None
    top_k: int = 3
    batch_size: int = 16


def tag_recordings(model_dir: str | os.PathLike, paths: list[str], top_k: int = 3) -> dict:
    """AudioSet probabilities (sigmoid of the tagger's logits) of every clip: ``{"labels", "probabilities" [n, 527],
    "top" (per clip, the ``top_k`` ``(label, probability)`` pairs)}``."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    import resp_audio_hf  # noqa: F401  (registers the model types)

    from ..data.audio import load_audio

    model = AutoModelForAudioClassification.from_pretrained(model_dir).eval()
    feature_extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    probabilities = []
    with torch.inference_mode():
        for path in paths:
            audio, rate = load_audio(path, feature_extractor.sampling_rate)
            inputs = feature_extractor([audio], sampling_rate=rate, return_tensors="pt")
            probabilities.append(torch.sigmoid(model(**inputs).logits)[0].numpy())
    probabilities = np.stack(probabilities)
    top = [[(labels[i], float(row[i])) for i in np.argsort(-row)[:top_k]] for row in probabilities]
    return {"labels": labels, "probabilities": probabilities, "top": top}


def _probe_variants(task, model_dir: Path, cache_dir: Path, batch_size: int, progress: bool) -> dict:
    """Mean ± std test AUROC of each variant on standardised features (one extraction per encoder)."""
    from .embeddings import AudioEncoder
    from .nonlearned import nonlearned_encoder
    from .pooling import derive_pooling, frequency_row_spans
    from .runner import embed_task, score_task

    protocol = replace(task.spec.protocol, standardize_features=True)
    mn04 = AudioEncoder.from_pretrained(str(model_dir), pooling="freq_preserving")
    encoders = {
        "mn04": mn04,
        "log-mel-stats": nonlearned_encoder("log-mel-stats"),
        "duration": nonlearned_encoder("duration"),
    }
    embedded = {
        key: embed_task(encoder, task, cache_dir=cache_dir, batch_size=batch_size, protocol=protocol, progress=progress)
        for key, encoder in encoders.items()
    }
    common = set.intersection(*(set(e.table["file"]) for e in embedded.values()))
    table = embedded["mn04"].table
    table = table[table["file"].isin(common)].reset_index(drop=True)

    def aligned(key):
        frame = embedded[key].table.set_index("file")
        return embedded[key].features[frame.index.get_indexer(table["file"])]

    rows = len(frequency_row_spans(mn04.model.config))
    variants = {
        "mn04 AudioSet, freq_preserving": aligned("mn04"),
        "mn04 AudioSet, mean": derive_pooling(aligned("mn04"), rows, "mean"),
        "log-mel statistics": aligned("log-mel-stats"),
        "clip duration": aligned("duration"),
    }
    scores = {}
    for name, features in variants.items():
        result = score_task(
            task.spec, table, features, protocol, split_mode=task.split_mode, test_splits=task.test_splits
        )
        scores[name] = {
            "mean": result.mean,
            "std": result.std,
            "scores": result.scores,
            "embedding_dim": result.embedding_dim,
        }
    counts = {split: int(n) for split, n in table["split"].value_counts().items()}
    return {"variants": scores, "counts": counts, "protocol": asdict(protocol)}


def top_label_counts(top_labels: list[str]) -> dict[str, int]:
    """How often each label is a clip's top label, most frequent first; ties in label order, so that every run prints
    the same line (a set's order changes with the string hash seed)."""
    counts: dict[str, int] = {}
    for label in top_labels:
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _markdown(results: dict) -> str:
    tags = results["tagging"]
    lines = [
        f"AudioSet tagging of {tags['n_clips']} real coughs by `{results['model']}` (EfficientAT mn04, mAP 0.432):",
        "",
        "| respiratory label | top label of | mean probability |",
        "|---|---|---|",
    ]
    for label, row in tags["respiratory"].items():
        lines.append(f"| {label} | {row['top_of']} clips | {row['mean_probability']:.3f} |")
    lines += [
        "",
        "Most frequent top labels: " + ", ".join(f"{k} ({v})" for k, v in tags["top_label_counts"].items()),
        "",
    ]
    lines += ["Examples (top labels with their probabilities):", ""]
    shown = set()
    for clip in tags["clips"]:
        stratum = (clip["covid19"], clip["source"])
        if stratum not in shown:
            shown.add(stratum)
            top = ", ".join(f"{label} {p:.2f}" for label, p in clip["top"])
            covid = "COVID-19" if clip["covid19"] else "negative"
            lines.append(f"- `{clip['file']}` ({clip['source']}, {covid}): {top}")
    lines.append("")
    probe = results["probe"]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(probe["counts"].items()))
    lines += [
        f"COVID-19 detection on the same coughs ({counts}): OPERA's linear probe, 5 seeds, standardised features. "
        "About 20 test recordings: a demonstration of the path, not a result (see results/ in the repository).",
        "",
        "| features | test AUROC |",
        "|---|---|",
    ]
    lines += [f"| {name} | {v['mean']:.3f} ± {v['std']:.3f} |" for name, v in probe["variants"].items()]
    lines += ["", "Recordings: COVID-19 induced coughs, CC0 1.0 (resp_audio_hf/demo_data/covid19-cough/README.md)."]
    return "\n".join(lines) + "\n"


def _figure(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .report import save_figure

    tags = results["tagging"]["respiratory"]
    probe = results["probe"]["variants"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(tags)
    left.barh(names, [tags[n]["mean_probability"] for n in names], color="C3")
    left.invert_yaxis()
    left.set_xlabel("mean AudioSet probability over the coughs")
    left.set_title("mn04 (AudioSet) on real coughs", fontsize=10)
    variants = list(probe)
    # Bars from 0, not from chance: a bar starting at 0.5 hides a score of 0.506; the dashed line marks chance.
    right.barh(
        variants, [probe[v]["mean"] for v in variants], xerr=[probe[v]["std"] for v in variants], color="C0", capsize=3
    )
    right.invert_yaxis()
    right.axvline(0.5, color="grey", linestyle="--", linewidth=0.8)
    right.set_xlim(0.0, 1.0)
    right.set_xlabel("test AUROC (5 seeds; dashed: chance)")
    right.set_title("COVID-19 probe, ~20 test coughs\n(a demonstration)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


@contextmanager
def _quiet_transformers(quiet: bool):
    """Without progress output, transformers' weight-loading bars and its load report (the AudioSet head is not part
    of the embedding model) stay silent too."""
    from transformers.utils import logging as hf_logging

    if not quiet:
        yield
        return
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def run_demo(output_dir: str | os.PathLike, config: DemoConfig | None = None, progress: bool = False) -> dict:
    """Run the demo and write ``results.json`` / ``results.md`` / ``results.png`` into ``output_dir``."""
    from ..data._io import atomic_write_json, atomic_write_text
    from ..data.tasks import load_task

    config = config or DemoConfig()
    output_dir = Path(output_dir)
    model_dir = Path(config.model) if config.model else default_model_dir()
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"No EfficientAT model at {model_dir}: the demo uses the package's pretrained/efficientat-mn04-as "
            "(install the package editable from a clone: pip install -e .), or pass --model FOLDER."
        )
    task = load_task("COVID-cough", config.data_root or DEMO_DATA)
    table = task.available
    with _quiet_transformers(not progress):
        tagged = tag_recordings(model_dir, table["audio"].tolist(), config.top_k)
    labels = tagged["labels"]
    top_labels = [top[0][0] for top in tagged["top"]]
    respiratory = {
        label: {
            "top_of": int(sum(t == label for t in top_labels)),
            "mean_probability": float(tagged["probabilities"][:, labels.index(label)].mean()),
        }
        for label in RESPIRATORY_LABELS
    }
    counts = top_label_counts(top_labels)
    results = {
        "model": str(model_dir),
        "data": str(config.data_root or DEMO_DATA),
        "tagging": {
            "n_clips": len(table),
            "respiratory": respiratory,
            "top_label_counts": dict(list(counts.items())[:8]),
            "clips": [
                {"file": file, "covid19": int(label), "source": source, "top": top}
                for file, label, source, top in zip(table["file"], table["label"], table["source"], tagged["top"])
            ],
        },
    }
    with _quiet_transformers(not progress):
        results["probe"] = _probe_variants(task, model_dir, output_dir / "cache", config.batch_size, progress)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "results.json", results)
    atomic_write_text(output_dir / "results.md", _markdown(results))
    _figure(results, output_dir / "results.png")
    return results


__all__ = [
    "DEMO_DATA", "RESPIRATORY_LABELS", "DemoConfig", "default_model_dir", "run_demo", "tag_recordings", "top_label_counts",
]
