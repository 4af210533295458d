"""`resp-audio-hf demo`: the shipped EfficientAT `mn04` (AudioSet) on real coughs, offline, in well under a minute.

Two things run on 96 real cough recordings bundled with the package (CC0, `resp_audio_hf/demo_data/covid19-cough`,
24 from each combination of COVID-19 label and source; see the README there):

1. **AudioSet tagging.** `EfficientATForAudioClassification` from `pretrained/efficientat-mn04-as` labels every
   clip with AudioSet's 527 classes; the report gives the top labels and how often each respiratory class (Cough,
   Throat clearing, Breathing, Wheeze, Gasp, Sneeze, ...) is the top one.
2. **A cough timeline.** Some of the coughs (`timeline_coughs`, drawn with `seed`), each trimmed to its active
   part, are inserted after random quiet gaps (a -60 dBFS noise floor) into one recording
   (`resp_audio_hf.assembly`), which is written out as `cough_timeline.wav` and tagged window by window as
   `resp-audio-hf tag` does (`resp_audio_hf.tagging`, its default settings): the cough count against the number
   inserted, each detected onset against the true one, the segments in `cough_timeline.csv` and the timeline drawn
   in `cough_timeline.png`. `results/cough_counting.md` in the repository measures the same counter over many
   such recordings.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..tagging import default_model_dir

DEMO_DATA = Path(__file__).resolve().parents[1] / "demo_data"
RESPIRATORY_LABELS = ("Cough", "Throat clearing", "Breathing", "Wheeze", "Gasp", "Sneeze", "Sniff", "Speech")
# Coughs whose active part is longer (long takes with several coughs or speech) are not used in the timeline, as in
# results/cough_counting.py.
TIMELINE_MAX_EVENT_SECONDS = 3.0


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo.

    Attributes:
        model: folder of the EfficientAT AudioSet tagger (`None`: the one shipped in the package).
        data_root: folder holding `covid19-cough/` (`None`: the recordings bundled with the package).
        top_k: AudioSet labels listed per clip.
        timeline_coughs: coughs inserted into the timeline recording.
        seed: draws the timeline's coughs, gaps and noise floor.
        onset_tolerance_s: a detected cough matches an inserted one whose onset is at most this far.
    """

    model: str | None = None
    data_root: str | None = None
    top_k: int = 3
    timeline_coughs: int = 10
    seed: int = 0
    onset_tolerance_s: float = 0.5


def tag_recordings(tagger, paths: list[str], top_k: int = 3) -> dict:
    """AudioSet probabilities of every clip, each scored whole: `{"labels", "probabilities" [n, 527], "top" (per
    clip, the `top_k` `(label, probability)` pairs)}`. `tagger`: a `resp_audio_hf.tagging.AudioTagger`."""
    from ..data.audio import load_audio

    probabilities = np.concatenate(
        [tagger.probabilities([load_audio(path, tagger.sampling_rate)[0]]) for path in paths]
    )
    labels = tagger.labels
    top = [[(labels[i], float(row[i])) for i in np.argsort(-row)[:top_k]] for row in probabilities]
    return {"labels": labels, "probabilities": probabilities, "top": top}


def cough_timeline(tagger, table, output_dir: Path, config: DemoConfig) -> dict:
    """Assemble, write, tag and score the timeline recording (see the module docstring)."""
    import soundfile

    from ..assembly import active_span, assemble_coughs, match_onsets
    from ..data.audio import load_audio
    from ..data.file_io import atomic_path
    from ..tagging import TagConfig, draw_timeline, tag_recording, write_segments_csv

    rate = tagger.sampling_rate
    rng = np.random.default_rng(config.seed)
    clips, names = [], []
    for index in rng.permutation(len(table)):
        audio, _ = load_audio(table["audio"].iloc[index], rate)
        start, end = active_span(audio, rate)
        if (end - start) / rate <= TIMELINE_MAX_EVENT_SECONDS:
            clips.append(audio)
            names.append(str(table["file"].iloc[index]))
        if len(clips) == config.timeline_coughs:
            break
    assembly = assemble_coughs(clips, rate, rng, names=names)
    wav = output_dir / "cough_timeline.wav"
    with atomic_path(wav, suffix=".wav") as tmp:
        soundfile.write(tmp, assembly.audio, rate, subtype="FLOAT", format="WAV")
    tag_config = TagConfig()
    result = tag_recording(tagger, str(wav), tag_config)
    write_segments_csv(result, output_dir / "cough_timeline.csv")
    draw_timeline(result, output_dir / "cough_timeline.png", truth=assembly.events)
    matching = match_onsets([e[0] for e in assembly.events], [s.start_s for s in result.coughs],
                            config.onset_tolerance_s)
    return {
        "recording": wav.name,
        "duration_s": round(assembly.duration_s, 3),
        "tag_config": asdict(tag_config),
        "inserted": [{"file": n, "onset_s": round(a, 3), "offset_s": round(b, 3)}
                     for n, (a, b) in zip(assembly.sources, assembly.events)],
        "detected": [{"start_s": s.start_s, "end_s": s.end_s, "max_probability": round(s.max_probability, 4)}
                     for s in result.coughs],
        "true_count": len(assembly.events),
        "cough_count": result.cough_count,
        "onset_tolerance_s": config.onset_tolerance_s,
        "matched": matching.hits,
        "onset_errors_ms": [round(1000 * e, 1) for e in matching.onset_errors_s],
        "other_labels": sorted({s.label for s in result.segments} - {"Cough"}),
    }


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
    timeline = results["timeline"]
    config = timeline["tag_config"]
    errors = np.abs(timeline["onset_errors_ms"])
    lines += [
        "",
        f"Cough timeline: {timeline['true_count']} of these coughs inserted after quiet gaps into one "
        f"{timeline['duration_s']:.0f} s recording (`{timeline['recording']}`), tagged in windows of "
        f"{config['window_seconds']:g} s every {config['hop_seconds']:g} s (Cough at probability >= "
        f"{config['cough_threshold']:g}, merged across gaps <= {config['merge_gap_seconds']:g} s):",
        "",
        f"- coughs counted: **{timeline['cough_count']}** (inserted: {timeline['true_count']})",
        f"- matched to an inserted cough within {timeline['onset_tolerance_s']:g} s of its onset: "
        f"{timeline['matched']}" + (f", onset error median {np.median(errors):.0f} ms" if errors.size else ""),
        "",
        "| inserted onset (s) | detected segment (s) |",
        "|---|---|",
    ]
    detected = sorted(timeline["detected"], key=lambda d: d["start_s"])
    for event in timeline["inserted"]:
        near = [d for d in detected if abs(d["start_s"] - event["onset_s"]) <= timeline["onset_tolerance_s"]]
        found = ", ".join(f"{d['start_s']:.2f}-{d['end_s']:.2f}" for d in near) or "missed"
        lines.append(f"| {event['onset_s']:.2f} | {found} |")
    extra = [d for d in detected if all(abs(d["start_s"] - e["onset_s"]) > timeline["onset_tolerance_s"]
                                        for e in timeline["inserted"])]
    if extra:
        lines.append("| (none) | " + ", ".join(f"{d['start_s']:.2f}-{d['end_s']:.2f}" for d in extra) + " |")
    lines += ["", "Recordings: COVID-19 induced coughs, CC0 1.0 (resp_audio_hf/demo_data/covid19-cough/README.md)."]
    return "\n".join(lines) + "\n"


def _figure(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..data.file_io import atomic_save_figure

    tags = results["tagging"]["respiratory"]
    fig, axis = plt.subplots(figsize=(6, 3.4))
    names = list(tags)
    axis.barh(names, [tags[n]["mean_probability"] for n in names], color="C3")
    axis.invert_yaxis()
    axis.set_xlabel("mean AudioSet probability over the coughs")
    axis.set_title("mn04 (AudioSet) on real coughs", fontsize=10)
    fig.tight_layout()
    return atomic_save_figure(fig, path, dpi=110)


@contextmanager
def _quiet_transformers(quiet: bool):
    """Without progress output, transformers' weight-loading bars and its load report stay silent too."""
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


OUTPUT_FILES = ("results.json", "results.md", "results.png", "cough_timeline.wav", "cough_timeline.csv",
                "cough_timeline.png")


def run_demo(output_dir: str | os.PathLike, config: DemoConfig | None = None, progress: bool = False) -> dict:
    """Run the demo and write `OUTPUT_FILES` into `output_dir`."""
    from ..data.file_io import atomic_write_json, atomic_write_text
    from ..data.tasks import load_task
    from ..tagging import AudioTagger

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
        tagger = AudioTagger(model_dir)
    tagged = tag_recordings(tagger, table["audio"].tolist(), config.top_k)
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
    output_dir.mkdir(parents=True, exist_ok=True)
    results["timeline"] = cough_timeline(tagger, table, output_dir, config)
    atomic_write_json(output_dir / "results.json", results)
    atomic_write_text(output_dir / "results.md", _markdown(results))
    _figure(results, output_dir / "results.png")
    return results


__all__ = [
    "DEMO_DATA",
    "OUTPUT_FILES",
    "RESPIRATORY_LABELS",
    "DemoConfig",
    "cough_timeline",
    "default_model_dir",
    "run_demo",
    "tag_recordings",
    "top_label_counts",
]
