"""EfficientAT mn04_as inference: resp_audio_hf (feature extractor + EfficientATForAudioClassification) vs EfficientAT's own code.

The reference is EfficientAT's own `AugmentMelSTFT` (eval mode) and `get_model(width_mult=0.4, head_type="mlp")` with
the original `mn04_as_mAP_432.pt`, imported from a checkout that carries them (`--efficientat-dir` or the
EFFICIENTAT_DIR environment variable, default /work/data/ext/efficientat; its code is not part of this repository, so
this benchmark runs only where such a checkout exists and never in CI). Ours is `pretrained/efficientat-mn04-as`
through `AutoFeatureExtractor` and `AutoModelForAudioClassification`. Both get the same 32 kHz float32 waveforms
(decoded and resampled once beforehand, so decoding is not timed) and return the 527 AudioSet logits, under
`torch.inference_mode`, in one process, interleaved (see `_common.py`). Two workloads:

* `per clip`: real recordings of different lengths one at a time, as EfficientAT's `inference.py` does (the three
  sample clips, SPRSound recordings and COVID-19 coughs from ../shared/data);
* `batch`: 10 s clips stacked into one batch (the reference takes a stacked tensor, ours the list of clips).

`max_abs_diff` is the largest logit difference over all clips.

    python benchmarks/bench_efficientat.py                  # 24 real clips, batch 16 x 10 s, 5 repeats
    python benchmarks/bench_efficientat.py --quick          # 6 clips, batch 4, 2 repeats
    python benchmarks/bench_efficientat.py --cough-top3     # also: "Cough" in the pipeline's top 3, all 1,324 coughs
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import (
    REPO,
    SHARED_DATA,
    finish,
    make_parser,
    median,
    median_ratio,
    setup_threads,
    spread,
    target_row,
    time_interleaved,
)

NAME = "efficientat"
MODEL_DIR = REPO / "pretrained" / "efficientat-mn04-as"
RATE = 32000
CHECKPOINT = Path("resources") / "mn04_as_mAP_432.pt"


def load_reference(efficientat_dir: Path):
    """EfficientAT's mel front end and mn04_as, from the checkout at `efficientat_dir`."""
    if not (efficientat_dir / CHECKPOINT).is_file():
        raise SystemExit(
            f"error: no EfficientAT checkout with {CHECKPOINT} at {efficientat_dir}; pass --efficientat-dir or set "
            "EFFICIENTAT_DIR (a checkout of fschmid56/EfficientAT or nikih94/swch-audio-classification)."
        )
    previous = Path.cwd()
    os.chdir(efficientat_dir)  # EfficientAT's helpers read metadata/class_labels_indices.csv relative to it
    try:
        sys.path.insert(0, str(efficientat_dir / "src"))
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from models.mn.model import get_model
            from models.preprocess import AugmentMelSTFT

            mel = AugmentMelSTFT(n_mels=128, sr=RATE, win_length=800, hopsize=320).eval()
        model = get_model(width_mult=0.4, head_type="mlp", strides=(2, 2, 2, 2))
        model.load_state_dict(torch.load(CHECKPOINT, map_location="cpu", weights_only=True), strict=True)
    finally:
        os.chdir(previous)
    return mel, model.eval()


def load_ours():
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    import resp_audio_hf  # noqa: F401  (registers the efficientat model type)

    return (
        AutoFeatureExtractor.from_pretrained(MODEL_DIR),
        AutoModelForAudioClassification.from_pretrained(MODEL_DIR).eval(),
    )


def real_clips(efficientat_dir: Path, count: int) -> list[np.ndarray]:
    """The sample clips, then SPRSound recordings and coughs alternately (sorted by name), decoded at 32 kHz by the
    package (both models are given the same clips)."""
    from resp_audio_hf.data.audio import load_audio

    samples = sorted((efficientat_dir / "sample_audio").glob("*.wav"))
    sprsound = sorted((SHARED_DATA / "sprsound" / "test_wav").glob("*.wav"))
    coughs = sorted((SHARED_DATA / "covid19-cough" / "raw").glob("*.mp3"))
    paths = samples + [path for pair in zip(sprsound, coughs) for path in pair]
    if len(paths) < count:
        raise SystemExit(f"error: found only {len(paths)} clips (sample clips and ../shared/data), need {count}.")
    return [load_audio(path, sampling_rate=RATE)[0] for path in paths[:count]]


def reference_logits(mel, model, waveforms: torch.Tensor) -> torch.Tensor:
    """EfficientAT's inference: `[batch, samples]` at 32 kHz -> logits `[batch, 527]`."""
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its mel module warns about torch.cuda.amp.autocast
        logits, _ = model(mel(waveforms).unsqueeze(1))
    return logits.reshape(waveforms.shape[0], -1)


def our_logits(feature_extractor, model, clips: list[np.ndarray]) -> torch.Tensor:
    with torch.inference_mode():
        inputs = feature_extractor(clips, sampling_rate=RATE, return_tensors="pt")
        return model(**inputs).logits


def cough_top3(limit: int | None) -> dict:
    """Fraction of the covid19-cough recordings for which the pipeline ranks "Cough" in its top 3."""
    from transformers import pipeline

    import resp_audio_hf  # noqa: F401

    paths = sorted((SHARED_DATA / "covid19-cough" / "raw").glob("*.mp3"))[:limit]
    if not paths:
        raise SystemExit(f"error: no coughs under {SHARED_DATA / 'covid19-cough' / 'raw'}.")
    classifier = pipeline("audio-classification", model=str(MODEL_DIR))
    hits, undecodable = 0, []
    for path in paths:
        try:
            predictions = classifier(str(path), top_k=3)
        except ValueError as error:  # FFmpeg yields no audio ("Malformed soundfile"): counted, named, not scored
            undecodable.append(f"{path.name}: {error}")
            continue
        hits += any(prediction["label"] == "Cough" for prediction in predictions)
    scored = len(paths) - len(undecodable)
    return {
        "coughs": len(paths),
        "scored": scored,
        "undecodable": undecodable,
        "cough_in_top3": hits,
        "fraction_of_scored": hits / scored,
        "fraction_of_all": hits / len(paths),
    }


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0], repeats=5)
    parser.add_argument(
        "--efficientat-dir",
        type=Path,
        default=Path(os.environ.get("EFFICIENTAT_DIR", "/work/data/ext/efficientat")),
        help="checkout with EfficientAT's src/models and resources/mn04_as_mAP_432.pt (env EFFICIENTAT_DIR)",
    )
    parser.add_argument("--clips", type=int, default=24, help="real clips of the per-clip workload")
    parser.add_argument("--batch", type=int, default=16, help="10 s clips of the batch workload")
    parser.add_argument("--cough-top3", action="store_true", help="also run the pipeline over every real cough")
    args = parser.parse_args()
    setup_threads(args.threads)
    count, batch, repeats = (6, 4, 2) if args.quick else (args.clips, args.batch, args.repeats)

    mel, reference = load_reference(args.efficientat_dir.resolve())
    feature_extractor, ours = load_ours()
    clips = real_clips(args.efficientat_dir.resolve(), count)
    ten_seconds = [np.resize(clip, 10 * RATE) for clip in (clips * batch)[:batch]]  # repeated to 10 s where shorter
    stacked = torch.from_numpy(np.stack(ten_seconds))

    workloads = {
        "per clip": (
            lambda: [reference_logits(mel, reference, torch.from_numpy(clip)[None]) for clip in clips],
            lambda: [our_logits(feature_extractor, ours, [clip]) for clip in clips],
            len(clips),
        ),
        "batch": (
            lambda: [reference_logits(mel, reference, stacked)],
            lambda: [our_logits(feature_extractor, ours, ten_seconds)],
            batch,
        ),
    }
    rows, targets = [], []
    for workload, (run_reference, run_ours, num_clips) in workloads.items():
        difference = max(float((a - b).abs().max()) for a, b in zip(run_reference(), run_ours()))
        timings = time_interleaved({"reference": run_reference, "ours": run_ours}, repeats)
        for key, name in (("reference", "EfficientAT's own code"), ("ours", "resp_audio_hf")):
            rows.append({
                "workload": workload,
                "implementation": name,
                "clips_per_s": num_clips / median(timings.wall[key]),
                "speedup": median_ratio(timings.wall["reference"], timings.wall[key]),
                "cpu_speedup": median_ratio(timings.cpu["reference"], timings.cpu[key]),
                "seconds": spread(timings.wall[key]),
                "max_abs_diff": 0.0 if key == "reference" else difference,
                "times": timings.wall[key],
                "cpu_times": timings.cpu[key],
            })
        targets.append(target_row(f"{workload}: >= 1x EfficientAT's clips/s", rows[-1]["speedup"], 1.0))
    settings = {
        "clips": count,
        "clip_seconds": [round(clip.size / RATE, 2) for clip in clips],
        "batch": batch,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "efficientat_dir": str(args.efficientat_dir),
    }
    if args.cough_top3:
        settings["cough_top3"] = cough_top3(limit=40 if args.quick else None)
        print(f"Cough in the pipeline's top 3: {settings['cough_top3']}")
    columns = ["workload", "implementation", "clips_per_s", "speedup", "cpu_speedup", "seconds", "max_abs_diff"]
    title = f"EfficientAT mn04_as inference on CPU, logits of {count} real clips and a batch of {batch} x 10 s"
    finish(NAME, args, settings, rows, title, columns, targets)


if __name__ == "__main__":
    main()
