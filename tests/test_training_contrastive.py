"""The contrastive pre-training objective (OPERA-CT + frozen teacher), its data and the collapse monitors."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from _paths import MN04_DIR
from _training_helpers import launch, metrics
from safetensors.torch import load_file

from resp_audio_hf.training.contrastive_objective import (
    ContrastiveObjective,
    ContrastiveObjectiveConfig,
    contrastive_loss,
    random_frame_mask,
)
from resp_audio_hf.training.monitors import (
    MonitorSelection,
    between_clip_variance_share,
    effective_rank,
    grouped_probe_auroc,
)

# ---------------------------------------------------------------------------------------------- monitors


def test_effective_rank_matches_known_spectra():
    # Centred rows +-e_i for i < 3: three equal singular values, so the effective rank is exactly 3.
    eye = np.eye(3, 8)
    assert effective_rank(np.concatenate([eye, -eye])) == pytest.approx(3.0)
    # Singular values 3 and 1: exp(-(0.75 ln 0.75 + 0.25 ln 0.25)).
    two = np.array([[3.0, 0], [-3.0, 0], [0, 1.0], [0, -1.0]]) / np.sqrt(2)
    assert effective_rank(two) == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))
    assert effective_rank(np.ones((5, 4))) == 0.0  # identical rows: nothing left after centring
    with pytest.raises(ValueError, match="NaN"):
        effective_rank(np.array([[np.nan, 1.0], [0.0, 1.0]]))


def test_a_collapsed_encoder_scores_rank_about_one_and_a_healthy_one_far_more():
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((300, 64))
    healthy = torch.nn.Linear(64, 32)
    direction = rng.standard_normal(32)

    def collapsed(x):  # everything mapped onto one direction, whatever the input
        return np.tanh(x[:, :1]) * direction + 1e-6 * rng.standard_normal((len(x), 32))

    with torch.no_grad():
        healthy_embeddings = healthy(torch.tensor(inputs, dtype=torch.float32)).numpy()
    assert effective_rank(collapsed(inputs)) == pytest.approx(1.0, abs=0.01)
    assert effective_rank(healthy_embeddings) > 25


def test_between_clip_variance_share():
    rng = np.random.default_rng(1)
    clips = rng.standard_normal((50, 8))
    assert between_clip_variance_share(clips, clips) == pytest.approx(1.0)  # crops of a clip agree exactly
    noise = rng.standard_normal((50, 8))
    # Every clip the same, only the crops differ: no variance between clips.
    same = np.repeat(noise[:1], 50, axis=0)
    assert between_clip_variance_share(same + noise, same - noise) == pytest.approx(0.0, abs=1e-12)
    # Hand-worked: two clips, one feature, crops (0, 2) and (4, 6): clip means 1 and 5 (variance 4), all values
    # 0, 2, 4, 6 (variance 5) -> 4 / 5.
    assert between_clip_variance_share(np.array([[0.0], [4.0]]), np.array([[2.0], [6.0]])) == pytest.approx(0.8)
    assert between_clip_variance_share(np.zeros((3, 2)), np.zeros((3, 2))) == 0.0


def test_grouped_probe_auroc_separates_signal_from_noise():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(40), 5)
    labels = (np.arange(200) % 2).astype(np.int64)
    noise = rng.standard_normal((200, 10))
    informative = noise.copy()
    informative[:, 0] += 3.0 * labels
    assert grouped_probe_auroc(informative, labels, groups, folds=5, seed=0) > 0.95
    assert abs(grouped_probe_auroc(noise, labels, groups, folds=5, seed=0) - 0.5) < 0.12


def test_monitor_selection_keeps_the_best_and_counts_patience():
    selection = MonitorSelection("mean_auroc", patience=2)
    assert selection.update(0, {"mean_auroc": 0.7})
    assert not selection.update(10, {"mean_auroc": 0.6}) and not selection.exhausted
    restored = MonitorSelection("mean_auroc", patience=2)
    restored.load_state_dict(selection.state_dict())
    assert not restored.update(20, {"mean_auroc": 0.7}) and restored.exhausted and restored.best_step == 0
    with pytest.raises(KeyError, match="select_on"):
        restored.update(30, {"S1_auroc": 0.5})


# ---------------------------------------------------------------------------------------------- objective


def test_random_frame_mask_follows_operas_run_probabilities():
    generator = torch.Generator().manual_seed(0)
    masks = torch.stack([random_frame_mask(400, 0.1, 0.2, generator) for _ in range(50)]).float()
    # Stationary share of a two-state chain: p_start / (1 - p_continue + p_start) = 0.1 / 0.9.
    assert masks.mean().item() == pytest.approx(0.1 / 0.9, abs=0.01)
    assert not random_frame_mask(100, 0.0, 0.5, generator).any()


@pytest.fixture(scope="module")
def mn04_real_features(shared_data):
    """Log-mel features of 8 real 2 s SPRSound crops, and the shipped AudioSet mn04 encoder."""
    from transformers import AutoFeatureExtractor, AutoModel

    import resp_audio_hf  # noqa: F401
    from resp_audio_hf.data.audio import load_audio

    feature_extractor = AutoFeatureExtractor.from_pretrained(MN04_DIR)
    files = sorted((shared_data / "sprsound" / "test_wav").glob("*.wav"))[:8]
    crops = [load_audio(path, 32000)[0][: 2 * 32000] for path in files]
    features = feature_extractor(crops, sampling_rate=32000, return_tensors="pt")["input_values"]
    return features, AutoModel.from_pretrained(MN04_DIR)


def no_augmentation(**overrides) -> ContrastiveObjectiveConfig:
    return ContrastiveObjectiveConfig(
        mask_start_probability=0.0, mask_continue_probability=0.0, gain_range=(1.0, 1.0), **overrides
    )


def test_contrastive_loss_is_lower_on_identical_views_than_on_shuffled_views(mn04_real_features):
    features, encoder = mn04_real_features
    objective = ContrastiveObjective(encoder, no_augmentation()).eval()
    with torch.no_grad():
        objective.head.bilinear.weight.copy_(torch.eye(512))  # similarity = inner product of the projections
        same = objective(torch.cat([features, features]))
        shuffled = objective(torch.cat([features, features[torch.roll(torch.arange(8), 1)]]))
    assert same.accuracy.item() == 1.0
    assert same.contrastive_loss < shuffled.contrastive_loss - 0.5
    # The loss is cross-entropy against the diagonal, as OPERA's: check it on a hand-made matrix.
    loss, accuracy = contrastive_loss(torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    expected = -(np.log(np.exp(2) / (np.exp(2) + 1)) + np.log(0.5)) / 2
    assert loss.item() == pytest.approx(expected) and accuracy.item() == 0.5


def test_teacher_term_is_zero_when_student_equals_teacher(mn04_real_features):
    features, encoder = mn04_real_features
    student = copy.deepcopy(encoder)
    config = no_augmentation(teacher_weight=1.0, freeze_batch_norm_statistics=True)
    objective = ContrastiveObjective(student, config, teacher=copy.deepcopy(encoder)).train()
    views = torch.cat([features[:4], features[4:]])
    output = objective(views, generator=torch.Generator().manual_seed(0))
    assert output.teacher_loss.item() == pytest.approx(0.0, abs=1e-6)
    assert output.loss.item() == pytest.approx(output.contrastive_loss.item(), abs=1e-6)
    # The teacher is frozen and outside the module tree (never trained or checkpointed).
    assert not any(name.startswith("_teacher") for name, _ in objective.named_parameters())
    with torch.no_grad():
        student.stem.convolution.weight.mul_(-1.0)
    assert objective(views).teacher_loss.item() > 0.05
    # BatchNorm in training mode moves the embedding, which is why further pre-training freezes its statistics.
    unfrozen = ContrastiveObjective(copy.deepcopy(encoder), no_augmentation(teacher_weight=1.0), copy.deepcopy(encoder))
    assert unfrozen.train()(views).teacher_loss.item() > 0.05


def test_teacher_weight_needs_a_teacher():
    with pytest.raises(ValueError, match="teacher"):
        ContrastiveObjective(torch.nn.Linear(2, 2), ContrastiveObjectiveConfig(teacher_weight=1.0))
    with pytest.raises(ValueError, match="teacher_weight"):
        ContrastiveObjectiveConfig(teacher_weight=-1.0)


# ---------------------------------------------------------------------------------------------- data and runs


def test_single_source_batches_never_mix_corpora_and_split_between_processes():
    from resp_audio_hf.training.data import MixturePlan
    from resp_audio_hf.training.view_pairs import SingleSourceBatchSampler

    plan = MixturePlan([30, 11], [1.0, 2.0], [None, None], seed=3)
    samplers = [SingleSourceBatchSampler(plan, batch_size=4, num_replicas=2, rank=rank) for rank in (0, 1)]
    assert len(samplers[0]) == 30 // 8 + 22 // 8
    batches = [list(sampler) for sampler in samplers]
    for first, second in zip(*batches):
        assert len({corpus for corpus, _, _ in first + second}) == 1, "one corpus per global batch"
        assert not {(c, r, s) for c, r, s in first} & {(c, r, s) for c, r, s in second}
    assert {batch[0][0] for batch in batches[0]} == {0, 1}
    samplers[0].set_epoch(1)
    assert list(samplers[0]) != batches[0]


def contrastive_run_config(shared_data: Path, output_dir: Path) -> dict:
    return {
        "method": "contrastive",
        "model": {"init_from": str(MN04_DIR), "preset": None},
        "contrastive": {"teacher_weight": 1.0, "projection_size": 32},
        "data": {
            "batch_size": 3,
            "corpora": [
                {"name": "sprsound", "path": str(shared_data / "sprsound" / "test_wav"), "limit": 9,
                 "crop_seconds": 1.0},
                {"name": "coughs", "path": str(shared_data / "covid19-cough" / "raw"), "limit": 6,
                 "crop_seconds": 0.5},
            ],
        },
        "optimizer": {"lr": 1e-3, "warmup_steps": 1},
        "train": {"output_dir": str(output_dir), "max_steps": 4, "save_every_steps": 2, "keep_last": 2,
                  "log_every_steps": 1},
    }


def test_killed_contrastive_run_resumes_exactly(shared_data, tmp_path):
    reference_dir, resumed_dir = tmp_path / "reference", tmp_path / "resumed"
    reference = launch(contrastive_run_config(shared_data, reference_dir), tmp_path, "reference", processes=1)
    assert reference.returncode == 0, reference.stderr[-4000:]
    records = metrics(reference_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all({"contrastive_loss", "teacher_loss", "accuracy"} <= set(r) for r in records)

    config = contrastive_run_config(shared_data, resumed_dir)
    killed = launch(config, tmp_path, "killed", "--stop-after-steps", "3", processes=1)
    assert killed.returncode != 0
    resumed = launch(config, tmp_path, "resumed", "--resume", "auto", processes=1)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert [r["loss"] for r in metrics(resumed_dir)] == [r["loss"] for r in records]
    expected, actual = load_file(reference_dir / "model" / "model.safetensors"), load_file(
        resumed_dir / "model" / "model.safetensors"
    )
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)

    from transformers import AutoModel

    trained = AutoModel.from_pretrained(reference_dir / "model")
    assert type(trained).__name__ == "EfficientATModel"
    start = AutoModel.from_pretrained(MN04_DIR)
    assert not torch.equal(trained.stem.convolution.weight, start.stem.convolution.weight)


def test_same_subject_positives_pair_two_recordings_of_one_subject(shared_data):
    from resp_audio_hf.training.data import ClipDecoder
    from resp_audio_hf.training.view_pairs import PairCropDataset, subject_partners

    assert subject_partners(["a", "b", "a", "c", "a"]) == [[2, 4], [], [0, 4], [], [0, 2]]
    files = sorted((shared_data / "sprsound" / "test_wav").glob("*.wav"))
    by_patient = {}
    for path in files:
        by_patient.setdefault(path.name.split("_")[0], []).append(path)
    patient, recordings = next((p, r[:2]) for p, r in by_patient.items() if len(r) >= 2)
    lone = next(r[0] for r in by_patient.values() if len(r) == 1)
    rows = [{"path": str(p), "bytes": None} for p in [*recordings, lone]]
    corpus = [{"audio": row} for row in rows]
    decoder = ClipDecoder(8000, 8000)
    dataset = PairCropDataset([corpus], ["sprsound"], [decoder], [subject_partners([patient, patient, "lone"])])
    from resp_audio_hf.data.audio import load_audio

    first, second = dataset[(0, 0, 7)]
    audio = [load_audio(path, 8000)[0] for path in [*recordings, lone]]

    def inside(crop, waveform):
        windows = np.lib.stride_tricks.sliding_window_view(waveform, len(crop))
        return bool(np.isclose(windows, crop, atol=1e-6).all(axis=1).any())

    assert inside(first, audio[0]) and inside(second, audio[1]), "the second view comes from the other recording"
    first, second = dataset[(0, 2, 7)]
    assert inside(first, audio[2]) and inside(second, audio[2]), "a subject with one recording pairs two of its crops"


def test_head_warmup_trains_the_head_alone_then_the_encoder(mn04_real_features):
    features, encoder = mn04_real_features
    objective = ContrastiveObjective(copy.deepcopy(encoder), no_augmentation(head_warmup_steps=1)).train()
    optimizer = torch.optim.SGD(objective.parameters(), lr=0.1)
    views = torch.cat([features[:4], features[4:]])
    start = {name: value.clone() for name, value in objective.state_dict().items()}

    def step(index):
        objective.set_step(index)
        optimizer.zero_grad()
        objective(views).loss.backward()
        optimizer.step()
        return {name: value.clone() for name, value in objective.state_dict().items()}

    after_warmup = step(0)
    assert objective.encoder_trains_at(1) and not objective.encoder_trains_at(0)
    assert all(torch.equal(after_warmup[n], start[n]) for n in start if n.startswith("encoder."))
    assert not torch.equal(after_warmup["head.projection.weight"], start["head.projection.weight"])
    after_joint = step(1)
    assert not torch.equal(after_joint["encoder.stem.convolution.weight"], start["encoder.stem.convolution.weight"])
