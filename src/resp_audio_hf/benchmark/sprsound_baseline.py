"""The SPRSound challenge organisers' baseline, reimplemented from their starter code (`scripts/train.py` and
`scripts/test.py` of SJTU-YONGFU-RESEARCH-GRP/SPRSound): 40 MFCCs averaged over each clip (a recording for Tasks
2-1/2-2, an event cut from its recording for Tasks 1-1/1-2) and scikit-learn's
`OneVsRestClassifier(SVC(kernel="poly", C=2, random_state=0))`.

What is the organisers' and what is ours:

* Features: their `librosa.feature.mfcc(sig, fs, n_mfcc=40)` on the samples as `scipy.io.wavfile` reads them
  (int16 values as floats), at the file's own rate (8 kHz), averaged over frames. Here torchaudio computes the same
  thing ([`mfcc_mean`]: librosa's defaults: 2048-point periodic Hann frames every 512 samples, the signal
  reflect-padded by 1024 at both ends as librosa before 0.10 pads it, 128 Slaney mel bands with Slaney
  normalisation, power in dB with `top_db=80`, orthonormal DCT-II); the files are decoded by the package's one
  route ([`~resp_audio_hf.data.audio.load_audio`]) and scaled back to int16 units. An event is
  `sig[int(start * fs / 1000):int(end * fs / 1000)]` as theirs.
* Classifier: theirs. They fit on the whole train part with `C=2`; here the training patients are the task's
  `train` split, `C` is chosen on the `validation` patients (by the challenge score, `C=2` among the
  candidates; the first best wins), and the chosen model, fitted on `train`, predicts `test_inter` and
  `test_intra`.

    python -m resp_audio_hf.benchmark.sprsound_baseline --data-root DIR --output-dir outputs/sprsound_baseline

writes `results.json` (the scores, both Poor Quality conventions for Tasks 2-1/2-2, the chosen `C`) and
`predictions/<task>_<split>.json` (`{item: class name}` in the organisers' output format).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: librosa.feature.mfcc's defaults, which the organisers' baseline uses.
N_MFCC = 40
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
TOP_DB = 80.0
#: int16 full scale: their `scipy.io.wavfile.read` gives 16-bit samples as integers, which they cast to float.
INT16_SCALE = 32768.0
#: Candidate SVM `C` values, the organisers' 2 among them.
C_GRID = (0.5, 1.0, 2.0, 4.0, 8.0)


def _mfcc_transform(sampling_rate: int):
    import torchaudio

    return torchaudio.transforms.MFCC(
        sample_rate=sampling_rate,
        n_mfcc=N_MFCC,
        dct_type=2,
        norm="ortho",
        log_mels=False,
        melkwargs={
            "n_fft": N_FFT,
            "hop_length": HOP_LENGTH,
            "n_mels": N_MELS,
            "mel_scale": "slaney",
            "norm": "slaney",
            "center": False,  # padded here, as numpy pads (reflect works for clips shorter than the padding)
            "power": 2.0,
        },
    )


_TRANSFORMS: dict = {}


def mfcc_mean(samples: np.ndarray, sampling_rate: int) -> np.ndarray:
    """The 40 MFCCs of `samples` (1-D, any scale) averaged over frames, as `librosa.feature.mfcc(y=samples,
    sr=sampling_rate, n_mfcc=40, pad_mode="reflect").mean(axis=1)` gives them."""
    import torch

    if sampling_rate not in _TRANSFORMS:
        _TRANSFORMS[sampling_rate] = _mfcc_transform(sampling_rate)
    transform = _TRANSFORMS[sampling_rate]
    transform.amplitude_to_DB.top_db = TOP_DB
    padded = np.pad(np.asarray(samples, dtype=np.float64), N_FFT // 2, mode="reflect")
    with torch.no_grad():
        coefficients = transform(torch.from_numpy(padded).float())
    return coefficients.mean(dim=-1).double().numpy()


def clip_features(table) -> np.ndarray:
    """`[n, 40]` MFCC means of a task table's rows (`audio`, `start_s`/`end_s`), each recording decoded once
    at its own rate; an event is cut as the organisers cut it."""
    from resp_audio_hf.data.audio import load_audio
    from resp_audio_hf.data.corpus_table import is_missing

    features = np.zeros((len(table), N_MFCC))
    paths, starts, ends = table["audio"].tolist(), table["start_s"].tolist(), table["end_s"].tolist()
    by_path: dict[str, list[int]] = {}
    for position, path in enumerate(paths):
        by_path.setdefault(path, []).append(position)
    for path, positions in by_path.items():
        signal, rate = load_audio(path)
        signal = signal.astype(np.float64) * INT16_SCALE
        for position in positions:
            start, end = starts[position], ends[position]
            if is_missing(start) and is_missing(end):
                clip = signal
            else:  # their sig[int(start_ms * fs / 1000):int(end_ms * fs / 1000)]
                clip = signal[int(round(start * 1000) * rate / 1000) : int(round(end * 1000) * rate / 1000)]
            features[position] = mfcc_mean(clip, rate)
    return features


def _classifier(c: float):
    from sklearn import svm
    from sklearn.multiclass import OneVsRestClassifier

    return OneVsRestClassifier(svm.SVC(kernel="poly", C=c, random_state=0))


def run_task(task_id: str, data_root, *, c_grid=C_GRID, verify_audio: bool = False, features=None) -> dict:
    """The baseline on one task: `C` chosen on `validation`, scores and predictions on each test split.

    Args:
        features: precomputed `[n, 40]` features of the task table's available rows (tests pass a subset).

    Returns:
        `{"task", "chosen_c", "validation_scores" {C: score}, "test": {split: {"scores", "scores_poor_quality_abnormal"
        (record tasks), "predictions" {file: class name}}}, "counts": {split: n}}`.
    """
    from resp_audio_hf.data.corpora.sprsound_challenge import challenge_task
    from resp_audio_hf.data.tasks import load_task

    task = challenge_task(task_id)
    table = load_task(task.task_id, data_root, verify_audio=verify_audio).available
    return fit_and_score(task, table, clip_features(table) if features is None else features, c_grid=c_grid)


def fit_and_score(task, table, features: np.ndarray, *, c_grid=C_GRID) -> dict:
    """[`run_task`] on a given table (`split`, `label`, `file`) and its features."""
    from resp_audio_hf.benchmark.metrics import sprsound_scores
    from resp_audio_hf.data.corpora.sprsound_challenge import submission_name

    split = table["split"].to_numpy()
    labels = table["label"].to_numpy().astype(np.int64)
    for needed in ("train", "validation"):
        if not (split == needed).any():
            raise ValueError(f"{task.task_id}: no {needed} rows; the baseline needs the SPRSound train part.")

    def score(y_true, y_pred, convention="excluded"):
        return sprsound_scores(
            y_true, y_pred, poor_quality_class=task.poor_quality_class, poor_quality=convention
        )

    train, validation = split == "train", split == "validation"
    validation_scores, models = {}, {}
    for c in c_grid:
        model = _classifier(c).fit(features[train], labels[train])
        validation_scores[c] = score(labels[validation], model.predict(features[validation]))["score"]
        models[c] = model
    chosen = max(c_grid, key=lambda c: (validation_scores[c], -c_grid.index(c)))
    result = {
        "task": task.task_id,
        "chosen_c": chosen,
        "validation_scores": {str(c): s for c, s in validation_scores.items()},
        "counts": {str(name): int((split == name).sum()) for name in dict.fromkeys(split)},
        "test": {},
    }
    for name in ("test_inter", "test_intra"):
        rows = split == name
        if not rows.any():
            continue
        predicted = models[chosen].predict(features[rows])
        entry = {
            "scores": score(labels[rows], predicted),
            "predictions": {
                f: submission_name(task.task_id, p) for f, p in zip(table.loc[rows, "file"], predicted)
            },
        }
        if task.poor_quality_class is not None:
            entry["scores_poor_quality_abnormal"] = score(labels[rows], predicted, "abnormal")
        result["test"][name] = entry
    return result


def main(argv=None) -> None:
    from resp_audio_hf.data.corpora.sprsound_challenge import CHALLENGE_TASKS
    from resp_audio_hf.data.file_io import atomic_write_json
    from resp_audio_hf.logging_setup import configure_logging

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="folder holding sprsound/ (or SPRSound/)")
    parser.add_argument("--output-dir", default="outputs/sprsound_baseline")
    parser.add_argument("--tasks", default=",".join(CHALLENGE_TASKS), help="comma-separated task ids")
    args = parser.parse_args(argv)
    configure_logging(logging.INFO)
    output = Path(args.output_dir)
    results = {}
    for task_id in args.tasks.split(","):
        started = time.perf_counter()
        result = run_task(task_id.strip(), args.data_root)
        result["seconds"] = round(time.perf_counter() - started, 1)
        for split, entry in result["test"].items():
            predictions = entry.pop("predictions")
            atomic_write_json(output / "predictions" / f"{result['task']}_{split}.json", predictions, sort_keys=True)
        results[result["task"]] = result
        logger.info("%s: %s", result["task"], json.dumps(result["test"]))
    atomic_write_json(output / "results.json", results, sort_keys=True)
    print(json.dumps({t: {s: e["scores"]["score"] for s, e in r["test"].items()} for t, r in results.items()}))


if __name__ == "__main__":
    main()
