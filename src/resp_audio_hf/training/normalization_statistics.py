"""Normalisation statistics of the training data.

M2D normalises its log-mel spectrograms with the mean and standard deviation of its own pre-training data: unless told
otherwise, its `SpectrogramDataset` draws 10,000 random crops, stacks them and takes the mean and the std of every
value (one scalar each, `std + float32 eps`). The package's M2D front end instead ships AudioSet's values (-7.1, 4.2),
which on respiratory recordings (8 kHz SPRSound, quiet lung sounds) leave the input far from zero mean and unit
variance. With `data.normalization_statistics: training`, pre-training measures the statistics the same way on its
own corpora before the first step, writes them into the feature extractor (its `mean` and `std`), and saves them with
the model and in `<output_dir>/normalization_statistics.json` (reused on resume when the sample is the same).

The command measures them without training, and can save the feature extractor with them:

    python -m resp_audio_hf.training.normalization_statistics --config training/configs/small_m2d_resp_aligned.yaml \
        [--save-to FOLDER] [section.key=value ...]
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

NORMALIZATION_STATISTICS = ("preset", "training")
STATISTICS_NAME = "normalization_statistics.json"
# M2D's std gets float32's machine epsilon added, so a constant input never divides by zero.
STD_EPSILON = float(torch.finfo(torch.float32).eps)


@dataclass
class LogMelStatistics:
    """
    Mean and std of un-normalised log-mel values.

    Attributes:
        mean: mean of every value (every frame and mel bin of every crop).
        std: their standard deviation (with Bessel's correction, as `torch.std`) plus `STD_EPSILON`.
        num_clips: crops measured.
        num_values: values measured.
    """

    mean: float
    std: float
    num_clips: int
    num_values: int


def raw_log_mel_extractor(feature_extractor):
    """A copy of `feature_extractor` that returns the log-mel before normalisation (`mean=0`, `std=1`)."""
    raw = copy.deepcopy(feature_extractor)
    raw.mean, raw.std = 0.0, 1.0
    raw.reject_silent_audio = False  # random crops may fall on silence
    return raw


def measure_log_mel_statistics(batches: Iterable[dict], num_clips: int) -> LogMelStatistics:
    """
    Mean and std of every value of the first `num_clips` crops of `batches` (dicts whose `input_values`,
    `[batch, frames, mel]`, are un-normalised log-mel). Each batch's count, mean and sum of squared deviations are
    combined in float64 (Chan et al.'s pairwise update), so the result does not depend on how the crops are batched.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be positive, got {num_clips}.")
    count, mean, squares, clips = 0, 0.0, 0.0, 0
    for batch in batches:
        values = batch["input_values"][: num_clips - clips].to(torch.float64)
        batch_count = values.numel()
        if batch_count == 0:
            continue
        batch_mean = float(values.mean())
        batch_squares = float(((values - batch_mean) ** 2).sum())
        total = count + batch_count
        delta = batch_mean - mean
        mean += delta * batch_count / total
        squares += batch_squares + delta**2 * count * batch_count / total
        count, clips = total, clips + values.shape[0]
        if clips >= num_clips:
            break
    if clips < num_clips:
        raise ValueError(f"The batches held {clips} crops; {num_clips} were asked for.")
    if count < 2:
        raise ValueError("At least two log-mel values are needed for a standard deviation.")
    std = math.sqrt(squares / (count - 1)) + STD_EPSILON
    return LogMelStatistics(mean=mean, std=std, num_clips=clips, num_values=count)


def apply_log_mel_statistics(feature_extractor, statistics: LogMelStatistics) -> None:
    """Make `feature_extractor` normalise with `statistics`: `(log_mel - mean) / std`."""
    feature_extractor.mean = float(statistics.mean)
    feature_extractor.std = float(statistics.std)


def training_log_mel_statistics(data_config, feature_extractor, num_frames: int, seed: int) -> LogMelStatistics:
    """
    Statistics of `data_config.normalization_clips` random `num_frames`-frame crops of the pre-training corpora,
    drawn as pre-training draws its crops (same mixture, cropping and short-clip handling; one process's view of the
    whole data, so every process measures the same values), through `feature_extractor`'s front end.
    """
    from .data import build_batch_stream

    stream = build_batch_stream(data_config, raw_log_mel_extractor(feature_extractor), num_frames, seed=seed)
    return measure_log_mel_statistics(stream, data_config.normalization_clips)


def sample_description(data_config, num_frames: int, seed: int, feature_extractor) -> dict:
    """What determines the measured statistics: reused from a saved file only when all of it is the same."""
    front_end = {k: v for k, v in feature_extractor.to_dict().items() if k not in ("mean", "std")}
    return {"data": asdict(data_config), "num_frames": num_frames, "seed": seed, "front_end": front_end}


def resolve_training_statistics(
    data_config, feature_extractor, num_frames: int, seed: int, output_dir: Path, write: bool
) -> LogMelStatistics:
    """
    The statistics of the run in `output_dir`: read from its `normalization_statistics.json` when that file describes
    the same sample (a resumed run, or a process that is not the main one), else measured (and written if `write`).
    """
    from ..data.file_io import atomic_write_json

    path = Path(output_dir) / STATISTICS_NAME
    description = json.loads(json.dumps(sample_description(data_config, num_frames, seed, feature_extractor)))
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("sample") == description:
            logger.info("Normalisation statistics from %s: %s", path, saved["statistics"])
            return LogMelStatistics(**saved["statistics"])
        logger.info("%s describes another sample; measuring the statistics again.", path)
    logger.info("Measuring the log-mel statistics of %d training crops.", data_config.normalization_clips)
    statistics = training_log_mel_statistics(data_config, feature_extractor, num_frames, seed)
    logger.info("Normalisation statistics of the training data: %s", statistics)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"statistics": asdict(statistics), "sample": description}, sort_keys=True)
    return statistics


def main(argv=None) -> None:
    from ..logging_setup import configure_logging
    from .config import PretrainConfig, load_config, training_argument_parser
    from .pretrain import build_encoder, build_feature_extractor

    parser = training_argument_parser(
        __doc__, PretrainConfig, resume_help="Ignored (accepted so that a run's command line can be reused).",
        override_example="data.normalization_clips=2000",
    )
    parser.add_argument("--save-to", default=None, help="Save the feature extractor, with these statistics, here.")
    args = parser.parse_args(argv)
    configure_logging(logging.INFO, timestamps=True)
    config = load_config(PretrainConfig, args.config, args.overrides)
    torch.manual_seed(config.train.seed)
    encoder = build_encoder(config)
    feature_extractor = build_feature_extractor(config, encoder)
    statistics = training_log_mel_statistics(config.data, feature_extractor, encoder.config.window_frames,
                                             config.train.seed)
    print(json.dumps(asdict(statistics)))
    if args.save_to:
        apply_log_mel_statistics(feature_extractor, statistics)
        feature_extractor.save_pretrained(args.save_to)


if __name__ == "__main__":
    main()
