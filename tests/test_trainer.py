"""Fine-tuning through transformers' `Trainer` on real SPRSound recordings, and the variable-length collator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _audio_helpers import (
    SPRSOUND_BINARY_LABELS,
    covid19_cough_file,
    decode_channel_mean,
    load_audio,
    sprsound_binary_subset,
    sprsound_records,
)
from transformers import (
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    Trainer,
    TrainingArguments,
    set_seed,
)

from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioForAudioClassification
from resp_audio_hf.collation import RespAudioCollator
from resp_audio_hf.data.audio import AudioDecodeError

FAMILY = "tiny-m2d"
PER_CLASS = 24  # 48 recordings: 32 to train on, 16 to evaluate
NUM_TRAIN = 32
# The collator crops every recording to its first 2 s (counted in `num_cropped`): a from-scratch tiny encoder needs
# 100-200 optimiser steps (epochs 13-25 here) before it fits these clips, and one 2 s window per clip keeps them cheap.
MAX_SECONDS = 2.0
EPOCHS = 30


pytestmark = pytest.mark.usefixtures("hub_offline")


@pytest.fixture(scope="module")
def feature_extractor():
    return RespAudioFeatureExtractor.from_model_config(RespAudioConfig.from_preset(FAMILY))


def features_alone(feature_extractor, audio, rate):
    return feature_extractor(audio, sampling_rate=rate, return_tensors="pt")


# --------------------------------------------------------------------------- the collator


def test_collator_matches_feature_extractor_on_each_clip(feature_extractor):
    """Clips of different lengths and rates in one batch: each row is what the feature extractor gives it alone."""
    sprsound, sprsound_rate = load_audio(sprsound_records()[0][0])
    cough, cough_rate = load_audio(covid19_cough_file(native_rate=48000))
    short, _ = load_audio(sprsound_records()[1][0], sampling_rate=16000)
    short = short[: 16000 * 2]
    examples = [
        {"audio": {"array": sprsound, "sampling_rate": sprsound_rate}, "label": 1},
        {"audio": {"raw": cough, "sampling_rate": cough_rate}, "label": 0},
        {"audio": torch.from_numpy(short), "sampling_rate": 16000, "label": 1},  # bare tensor, rate per example
    ]
    batch = RespAudioCollator(feature_extractor)(examples)
    assert set(batch) == {"input_values", "attention_mask", "labels"}
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [1, 0, 1]
    lengths = []
    for row, (audio, rate) in enumerate(((sprsound, sprsound_rate), (cough, cough_rate), (short, 16000))):
        alone = features_alone(feature_extractor, audio, rate)
        frames = alone["input_values"].shape[1]
        lengths.append(frames)
        torch.testing.assert_close(batch["input_values"][row, :frames], alone["input_values"][0], atol=1e-4, rtol=1e-4)
        assert batch["attention_mask"][row].sum() == frames and bool(batch["attention_mask"][row, :frames].all())
        torch.testing.assert_close(
            batch["input_values"][row, frames:],
            torch.full_like(batch["input_values"][row, frames:], feature_extractor.padding_value),
        )
    assert batch["input_values"].shape[1] == max(lengths) and len(set(lengths)) == 3


def test_collator_crops_explicitly_and_counts(feature_extractor):
    audio, rate = load_audio(sprsound_records()[0][0])
    assert len(audio) > 2 * rate
    collator = RespAudioCollator(feature_extractor, sampling_rate=rate, max_seconds=2.0)
    short = audio[: rate]  # 1 s: left alone
    batch = collator([{"audio": audio, "label": 0}, {"audio": short, "label": 1}])
    expected = feature_extractor([audio[: 2 * rate], short], sampling_rate=rate, return_tensors="pt")
    torch.testing.assert_close(batch["input_values"], expected["input_values"])
    torch.testing.assert_close(batch["attention_mask"], expected["attention_mask"])
    assert collator.num_cropped == 1
    assert collator.cropped_seconds == pytest.approx(len(audio) / rate - 2.0)
    # Without max_seconds nothing is cropped.
    whole = RespAudioCollator(feature_extractor, sampling_rate=rate)([{"audio": audio}])
    assert whole["input_values"].shape[1] == features_alone(feature_extractor, audio, rate)["input_values"].shape[1]
    assert "labels" not in whole


def test_collator_decodes_datasets_audio_column(feature_extractor):
    import datasets

    paths = [str(path) for path, _ in sprsound_records()[:2]]
    dataset = datasets.Dataset.from_dict({"audio": paths, "label": [0, 1]}).cast_column("audio", datasets.Audio())
    batch = RespAudioCollator(feature_extractor)([dataset[0], dataset[1]])
    # Decoded as files are (FFmpeg at the model's rate), not at the column's 8 kHz and then resampled by torchaudio.
    rate = feature_extractor.sampling_rate
    clips = [decode_channel_mean(path, rate)[0] for path in paths]
    expected = feature_extractor(clips, sampling_rate=rate, return_tensors="pt")
    torch.testing.assert_close(batch["input_values"], expected["input_values"], rtol=0, atol=0)
    assert batch["labels"].tolist() == [0, 1]


def test_collator_float_targets_and_bad_input(feature_extractor):
    audio, rate = load_audio(sprsound_records()[0][0])
    collator = RespAudioCollator(feature_extractor, sampling_rate=rate)
    multi_hot = collator([{"audio": audio, "label": [1, 0, 1]}, {"audio": audio, "label": [0.0, 1.0, 0.0]}])
    assert multi_hot["labels"].dtype == torch.float32 and multi_hot["labels"].shape == (2, 3)

    with pytest.raises(ValueError, match="unknown sampling rate"):
        RespAudioCollator(feature_extractor)([{"audio": audio}])
    with pytest.raises(KeyError, match="remove_unused_columns=False"):
        collator([{"input": audio}])
    with pytest.raises(ValueError, match="have no 'label' field"):
        collator([{"audio": audio, "label": 0}, {"audio": audio}])
    with pytest.raises(ValueError, match="neither 'array'"):
        collator([{"audio": {"sampling_rate": rate}}])
    with pytest.raises(AudioDecodeError, match="x.wav: not decodable"):  # a file goes the files' way, named
        collator([{"audio": {"path": "x.wav", "bytes": None}}])
    with pytest.raises(ValueError, match="max_seconds"):
        RespAudioCollator(feature_extractor, max_seconds=0)


# --------------------------------------------------------------------------- Trainer


def accuracy_metrics(prediction) -> dict[str, float]:
    logits, labels = prediction.predictions, prediction.label_ids
    predicted = logits.argmax(-1)
    recalls = [float((predicted[labels == c] == c).mean()) for c in np.unique(labels)]
    probability_adventitious = torch.from_numpy(logits).softmax(-1)[:, 1].numpy()
    return {
        "accuracy": float((predicted == labels).mean()),
        "balanced_accuracy": float(np.mean(recalls)),
        # Mean probability given to the true class.
        "true_class_probability": float(
            np.where(labels == 1, probability_adventitious, 1 - probability_adventitious).mean()
        ),
    }


def make_trainer(model, feature_extractor, train_dataset, eval_dataset, output_dir, **overrides) -> Trainer:
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=16,
        num_train_epochs=EPOCHS,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        save_total_limit=2,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="loss",  # evaluation loss: continuous, so epochs are (almost surely) never tied
        greater_is_better=False,
        remove_unused_columns=False,  # the collator needs the audio column the model's forward does not name
        report_to="none",
        seed=0,
        data_seed=0,
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    return Trainer(
        model=model,
        args=TrainingArguments(**settings),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=RespAudioCollator(feature_extractor, max_seconds=MAX_SECONDS),
        processing_class=feature_extractor,
        compute_metrics=accuracy_metrics,
    )


@pytest.fixture(scope="module")
def sprsound_datasets():
    """Decoded once (the collator crops them each time): 32 training and 16 evaluation examples, balanced."""
    examples = []
    for path, label in sprsound_binary_subset(PER_CLASS, seed=0):
        audio, rate = load_audio(path)
        examples.append({"audio": {"array": audio, "sampling_rate": rate}, "label": label})
    return examples[:NUM_TRAIN], examples[NUM_TRAIN:]


@pytest.fixture(scope="module")
def trained(sprsound_datasets, feature_extractor, tmp_path_factory):
    train_dataset, eval_dataset = sprsound_datasets
    set_seed(0)
    config = RespAudioConfig.from_preset(FAMILY, id2label=SPRSOUND_BINARY_LABELS)
    trainer = make_trainer(
        RespAudioForAudioClassification(config),
        feature_extractor,
        train_dataset,
        eval_dataset,
        tmp_path_factory.mktemp("trainer") / "run",
    )
    trainer.train()
    training_log = list(trainer.state.log_history)
    final_metrics = trainer.evaluate()
    return trainer, training_log, final_metrics


def test_training_loss_goes_down(trained):
    _, training_log, _ = trained
    losses = [entry["loss"] for entry in training_log if "loss" in entry]  # one mean per epoch
    assert len(losses) == EPOCHS and all(np.isfinite(losses))
    # Falling from the first epoch alone could be the random head settling at chance (ln 2 for balanced classes);
    # the last epochs must also be clearly below chance, i.e. the model fits the recordings.
    assert losses[-1] < losses[0]
    assert np.mean(losses[-3:]) < math.log(2) - 0.1, losses


def test_collator_recorded_every_crop(trained, sprsound_datasets):
    trainer, _, _ = trained
    train_dataset, eval_dataset = sprsound_datasets

    def long_clips(dataset) -> int:
        audios = [example["audio"] for example in dataset]
        return sum(len(audio["array"]) > MAX_SECONDS * audio["sampling_rate"] for audio in audios)

    # Every epoch collates each training clip once and evaluates the evaluation set; evaluate() once more at the end.
    expected = EPOCHS * long_clips(train_dataset) + (EPOCHS + 1) * long_clips(eval_dataset)
    assert expected > 0
    assert trainer.data_collator.num_cropped == expected


def test_best_model_is_loaded_at_end_and_reloads_from_its_checkpoint(trained, sprsound_datasets, tmp_path):
    trainer, training_log, final_metrics = trained
    _, eval_dataset = sprsound_datasets
    evaluations = [entry for entry in training_log if "eval_loss" in entry]
    assert len(evaluations) == EPOCHS
    losses = [entry["eval_loss"] for entry in evaluations]
    best = evaluations[int(np.argmin(losses))]
    assert trainer.state.best_metric == pytest.approx(min(losses))
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")

    # load_best_model_at_end: the model left in the trainer is the best epoch's, not the last one's.
    for key in ("eval_loss", "eval_accuracy", "eval_balanced_accuracy", "eval_true_class_probability"):
        assert final_metrics[key] == pytest.approx(best[key], abs=1e-5), key

    # The checkpoint folder is a complete model: Auto classes rebuild it with its feature extractor.
    checkpoint = trainer.state.best_model_checkpoint
    model = AutoModelForAudioClassification.from_pretrained(checkpoint)
    feature_extractor = AutoFeatureExtractor.from_pretrained(checkpoint)
    assert type(model) is RespAudioForAudioClassification and type(feature_extractor) is RespAudioFeatureExtractor
    assert model.config.id2label == SPRSOUND_BINARY_LABELS
    reloaded = make_trainer(
        model, feature_extractor, None, eval_dataset, tmp_path / "eval", load_best_model_at_end=False
    )
    metrics = reloaded.evaluate()
    for key in ("eval_loss", "eval_accuracy", "eval_balanced_accuracy", "eval_true_class_probability"):
        assert metrics[key] == pytest.approx(best[key], abs=1e-5), key
