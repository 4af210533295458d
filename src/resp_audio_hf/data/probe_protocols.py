"""Every task's linear-probe protocol: [`ProbeProtocol`] and the one table of them, `PROBE_PROTOCOLS`.

The values are those OPERA's `src/benchmark/linear_eval.py` and `scripts/eval_all.sh` actually run at the pinned
commit. Each task spec (`resp_audio_hf.data.corpora.<corpus>`) takes its protocol from this table, and
[`protocol_table`] renders it for the README. This module imports nothing beyond the standard library, so the
task registry in `resp_audio_hf.data` can use it without loading the benchmark's heavy dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeProtocol:
    """Linear-probe hyper-parameters of one task (OPERA defaults).

    Attributes:
        epochs: training epochs.
        batch_size: mini-batch size (`None` = full batch).
        learning_rate: Adam learning rate.
        l2_strength: weight of the summed squared head parameters added to the loss.
        lr_decay: learning-rate factor applied after every epoch.
        grad_clip: maximum global gradient norm per run.
        checkpoint_every: the best-validation checkpoint is only considered every this many epochs
            (OPERA's `ModelCheckpoint(every_n_epochs=...)`).
        early_stopping_patience: stop after this many validations without improvement (`None` = off).
        early_stopping_min_delta: improvement needed to reset the patience counter.
        seeds: random seeds; one probe per seed (classification) or per fold (cross-validation).
        inner_validation_fraction: for cross-validated tasks, fraction of each fold's training rows
            held out for checkpoint selection.
        inner_validation_seed: `random_state` of that draw.
        validation: how the checkpoint-selection rows are chosen, in words (hold-out tasks: drawn by the task's
            table builder; cross-validated tasks: from `inner_validation_fraction` and `inner_validation_seed`).
        standardize_features: z-score every feature with the mean and standard deviation of the run's *training*
            rows (validation and test rows are transformed with those, never used to compute them; a feature
            constant on the training rows is only centred). OPERA's probe does not standardise (`False`, the
            default); with `True` a network whose activations are tiny (a randomly initialised mn04 gives about
            1e-8) no longer scores chance just because Adam's steps of 1e-4 cannot move the probe on such inputs.
    """

    epochs: int = 64
    batch_size: int | None = 64
    learning_rate: float = 1e-4
    l2_strength: float = 1e-5
    lr_decay: float = 0.97
    grad_clip: float = 1.0
    checkpoint_every: int = 1
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    inner_validation_fraction: float | None = None
    inner_validation_seed: int = 42
    validation: str = ""
    standardize_features: bool = False


def _holdout(epochs: int, batch_size: int, validation: str, checkpoint_every: int = 1) -> ProbeProtocol:
    return ProbeProtocol(epochs=epochs, batch_size=batch_size, checkpoint_every=checkpoint_every, validation=validation)


def _leave_one_out(validation_fraction: float, **probe) -> ProbeProtocol:
    return ProbeProtocol(
        epochs=64,
        batch_size=64,
        l2_strength=1e-1,
        seeds=(0,),
        inner_validation_fraction=validation_fraction,
        inner_validation_seed=42,
        validation=f"{validation_fraction * 100:g} % of each fold's training rows, unstratified (seed 42)",
        **probe,
    )


_OPERA_SPLIT_VALIDATION = "OPERA's committed validation split"
_STRATIFIED_20 = "20 % of train, stratified (seed 1337)"

#: Every task's linear-probe protocol: the one table the task specs take their protocols from.
#:
#: OPERA values are those its `src/benchmark/linear_eval.py` (pinned commit) runs: the epochs, batch size, L2 and
#: checkpoint period each `linear_evaluation_*` call passes; Adam with the learning rate decayed by 0.97 per epoch;
#: gradient clipping at 1.0; 5 seeds for hold-out tasks, one (seed 0) for the leave-one-out regressions. The learning
#: rate is 1e-4 for every task: OPERA builds `LinearHead` / `LinearHeadR` without an `lr` argument, so their
#: default 1e-4 is what the optimiser gets, and the `lr=1e-1` passed to the MMlung evaluation (T13-T18) never
#: reaches it. SPRSound (S1/S2, the challenge's SPRSound-1-1 ... 2-2) and the ICBHI challenge's cycle task
#: (ICBHI-cycle) are not OPERA tasks; they use the OPERA defaults (ICBHI-cycle with T7's batch size).
PROBE_PROTOCOLS: dict[str, ProbeProtocol] = {
    "T1": _holdout(64, 64, _OPERA_SPLIT_VALIDATION),
    "T2": _holdout(64, 64, _OPERA_SPLIT_VALIDATION),
    "T3": _holdout(64, 64, "official COVID-19 Sounds task-1 validation split"),
    "T4": _holdout(64, 64, "official COVID-19 Sounds task-1 validation split"),
    "T5": _holdout(64, 64, _OPERA_SPLIT_VALIDATION),
    "T6": _holdout(64, 64, _OPERA_SPLIT_VALIDATION),
    "T7": _holdout(64, 32, _STRATIFIED_20),
    "ICBHI-cycle": _holdout(64, 32, "a fifth of the official training list's patients, unstratified (seed 1337)"),
    "T8": _holdout(64, 32, _STRATIFIED_20),
    "T9": _holdout(64, 32, _STRATIFIED_20),
    "T8-random": _holdout(64, 32, _STRATIFIED_20),
    "T9-random": _holdout(64, 32, _STRATIFIED_20),
    "T10": _holdout(50, 32, "10 % of train, stratified (seed 1337)", checkpoint_every=5),
    "T10-subject": _holdout(50, 32, "10 % of train, stratified (seed 1337)", checkpoint_every=5),
    "T11": _holdout(64, 32, _OPERA_SPLIT_VALIDATION),
    "T12": _holdout(32, 64, "20 % of all recordings, stratified (seed 42)", checkpoint_every=3),
    **{
        f"T{number}": _leave_one_out(
            0.11, checkpoint_every=3, early_stopping_patience=5, early_stopping_min_delta=0.001
        )
        for number in range(13, 19)
    },
    "T19": _leave_one_out(0.2),
    "S1": _holdout(64, 64, "a patient-grouped, stratified fifth of the training patients (seed 1337)"),
    "S2": _holdout(64, 64, "a patient-grouped, stratified fifth of the training patients (seed 1337)"),
    "COVID-cough": _holdout(64, 32, "20 % of all recordings, stratified by label and source (seed 1337)"),
    **{
        f"SPRSound-{task}": _holdout(
            64, 64, "a patient-grouped fifth of the training patients, stratified by record label (seed 1337)"
        )
        for task in ("1-1", "1-2", "2-1", "2-2")
    },
}


def _scientific(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-")


def protocol_table() -> str:
    """`PROBE_PROTOCOLS` as a markdown table (the README shows it)."""
    from ..data.tasks import TASKS  # the task registry imports this module, so it is looked up when rendering

    header = (
        "| task | metric | evaluation | epochs | batch | lr | L2 | checkpoint every | early stopping | seeds "
        "| validation |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for task_id, protocol in PROBE_PROTOCOLS.items():
        spec = TASKS[task_id]
        stopping = (
            f"patience {protocol.early_stopping_patience}, min delta {protocol.early_stopping_min_delta:g}"
            if protocol.early_stopping_patience is not None
            else "–"
        )
        seeds = ", ".join(str(seed) for seed in protocol.seeds)
        cells = [
            task_id,
            spec.metric.upper(),
            spec.evaluation,
            str(protocol.epochs),
            str(protocol.batch_size),
            _scientific(protocol.learning_rate),
            _scientific(protocol.l2_strength),
            str(protocol.checkpoint_every),
            stopping,
            seeds,
            protocol.validation,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
