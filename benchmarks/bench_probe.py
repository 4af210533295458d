"""OPERA linear probe on cached embeddings: `train_linear_probes` (all seeds stacked) vs a per-sample training loop.

Both train OPERA's probe (5 seeds, 64 epochs, batch 64, Adam 1e-4, L2 1e-5 on the summed squared weights, gradient
clipping at 1.0, learning rate x0.97 per epoch, the best-validation epoch's weights tested) on the same embeddings,
saved to and memory-mapped from an `.npy` cache as a benchmark run would. The baseline is the straightforward loop
of OPERA's Lightning module: one seed after another, a `DataLoader` that fetches and collates the samples one by one,
autograd, `torch.optim.Adam`, `clip_grad_norm_`, `ExponentialLR`. It draws its initial weights and its shuffling
from the same seeded generator as `train_linear_probes` does, so the two should reach the same AUROC.

A third timing, `products_s`, is the data movement and arithmetic that every step of every seed needs, done our
fastest way: gathering the mini-batches and the forward and backward matrix products, all seeds stacked, and nothing
else (no softmax, clipping, optimiser or validation). `baseline / products` bounds the speed-up of this design; where
it is near or under the 10x target, what is left of the per-sample loop's time is mostly the same work ours does.

The embeddings are synthetic (Gaussian classes around random centres, overlapping enough for an AUROC well below 1)
with the sizes of real tasks: a 768-d CLS-pooled embedding and PaSST's 9216-d frequency-preserving one.

    python benchmarks/bench_probe.py            # two tasks, 3 repeats
    python benchmarks/bench_probe.py --quick    # one small task, 16 epochs, 1 repeat
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from _common import finish, make_parser, median, median_ratio, setup_threads, spread, target_row, time_interleaved

NAME = "probe"


@dataclass(frozen=True)
class SyntheticTask:
    """Shape of one probing task: recordings per split, embedding width, classes, class separation."""

    name: str
    train: int
    validation: int
    test: int
    dim: int
    classes: int
    separation: float = 2.5


# Recordings per split, the same for both tasks (the quick task has its own, smaller ones).
SPLIT_SIZES = dict(train=480, validation=120, test=200)
TASKS = [
    SyntheticTask("binary, 768-d (CLS-pooled)", dim=768, classes=2, **SPLIT_SIZES),
    SyntheticTask("4-class, 9216-d (PaSST freq-preserving)", dim=9216, classes=4, separation=5.0, **SPLIT_SIZES),
]
QUICK_TASK = SyntheticTask("binary, 768-d (quick)", train=192, validation=64, test=96, dim=768, classes=2)


def make_embeddings(task: SyntheticTask, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`[n, dim]` float32 embeddings and class ids: unit-variance noise around class centres `separation` apart."""
    rng = np.random.default_rng(seed)
    n = task.train + task.validation + task.test
    labels = np.arange(n) % task.classes
    rng.shuffle(labels)
    # Centres about `separation` apart, unit noise in every dimension: only part of the signal is learnt from a few
    # hundred recordings, as with real embeddings.
    centres = rng.standard_normal((task.classes, task.dim)) * task.separation / np.sqrt(2 * task.dim)
    features = rng.standard_normal((n, task.dim)) + centres[labels]
    # Embeddings are not centred in practice: a common offset, as pooled transformer features have.
    features += rng.standard_normal(task.dim) * 0.5
    return features.astype(np.float32), labels.astype(np.int64)


def make_runs(task: SyntheticTask, seeds) -> list:
    from resp_audio_hf.benchmark import ProbeRun

    train = np.arange(task.train)
    validation = np.arange(task.train, task.train + task.validation)
    test = np.arange(task.train + task.validation, task.train + task.validation + task.test)
    return [ProbeRun(train, validation, test, seed, f"seed {seed}") for seed in seeds]


def per_sample_loop(features: np.ndarray, labels: np.ndarray, runs: list, protocol, classes: int) -> list[float]:
    """OPERA's probe the straightforward way: one seed at a time, samples fetched one by one. Test AUROC per seed."""
    from torch.utils.data import DataLoader, TensorDataset

    from resp_audio_hf.benchmark import auroc_ovr_macro

    scores = []
    for run in runs:
        generator = torch.Generator().manual_seed(int(run.seed))
        head = torch.nn.Linear(features.shape[1], classes)
        with torch.no_grad():
            head.weight.copy_(torch.randn(classes, features.shape[1], generator=generator) * 0.01)
            head.bias.zero_()
        x = torch.from_numpy(np.array(features))  # a writable copy of the memory-mapped cache
        y = torch.from_numpy(labels)
        train = DataLoader(
            TensorDataset(x[run.train], y[run.train]), batch_size=protocol.batch_size, shuffle=True, generator=generator
        )
        validation = DataLoader(TensorDataset(x[run.validation], y[run.validation]), batch_size=protocol.batch_size)
        test = DataLoader(TensorDataset(x[run.test], y[run.test]), batch_size=protocol.batch_size)
        optimizer = torch.optim.Adam(head.parameters(), lr=protocol.learning_rate)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=protocol.lr_decay)
        best_score, best_state = -np.inf, copy.deepcopy(head.state_dict())
        for _ in range(protocol.epochs):
            head.train()
            for inputs, targets in train:
                loss = torch.nn.functional.cross_entropy(head(inputs), targets)
                loss = loss + protocol.l2_strength * sum(p.pow(2).sum() for p in head.parameters())
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(head.parameters(), protocol.grad_clip)
                optimizer.step()
            schedule.step()
            score = _evaluate(head, validation, auroc_ovr_macro)
            if score > best_score:
                best_score, best_state = score, copy.deepcopy(head.state_dict())
        head.load_state_dict(best_state)
        scores.append(_evaluate(head, test, auroc_ovr_macro))
    return scores


def products_only(features: np.ndarray, runs: list, protocol, classes: int) -> None:
    """
    Every step's gather and forward and backward products, for all seeds at once in the stacked layout of
    `train_linear_probes` (its fastest way to do them), and nothing else: no softmax, clipping, optimiser or validation.
    """
    x = torch.from_numpy(np.array(features))
    weights = torch.zeros(len(runs), classes, x.shape[1])
    generators = [torch.Generator().manual_seed(int(run.seed)) for run in runs]
    train = torch.as_tensor(np.stack([run.train for run in runs]))
    batch_size = protocol.batch_size
    buffer = torch.empty(len(runs) * batch_size, x.shape[1])
    grad_logits = torch.zeros(len(runs), batch_size, classes)
    for _ in range(protocol.epochs):
        order = torch.gather(train, 1, torch.stack([torch.randperm(train.shape[1], generator=g) for g in generators]))
        for start in range(0, order.shape[1], batch_size):
            rows = order[:, start : start + batch_size]
            batch = buffer[: rows.numel()].view(*rows.shape, -1)
            torch.index_select(x, 0, rows.reshape(-1), out=batch.view(-1, x.shape[1]))
            torch.bmm(batch, weights.transpose(1, 2))
            torch.bmm(grad_logits[:, : rows.shape[1]].transpose(1, 2), batch)


def _evaluate(head, loader, auroc) -> float:
    head.eval()
    with torch.no_grad():
        probabilities, targets = zip(*[(torch.softmax(head(x), dim=-1), y) for x, y in loader])
    return float(auroc(torch.cat(targets).numpy(), torch.cat(probabilities).numpy()))


def bench_task(task: SyntheticTask, protocol, repeats: int, cache_dir: Path) -> dict:
    from resp_audio_hf.benchmark import train_linear_probes

    features, labels = make_embeddings(task)
    path = cache_dir / f"{task.dim}-{task.classes}.npy"
    np.save(path, features)
    cached = np.load(path, mmap_mode="r")  # what a benchmark run reads back from its embedding cache
    runs = make_runs(task, protocol.seeds)
    results = {}

    def ours():
        outcomes = train_linear_probes(cached, labels, runs, protocol, kind="classification", n_classes=task.classes)
        results["ours"] = [outcome.test_score for outcome in outcomes]

    def baseline():
        results["baseline"] = per_sample_loop(cached, labels, runs, protocol, task.classes)

    def products():
        products_only(cached, runs, protocol, task.classes)

    timings = time_interleaved({"baseline": baseline, "ours": ours, "products": products}, repeats, warmup=0)
    ours_scores, baseline_scores = np.array(results["ours"]), np.array(results["baseline"])
    wall = timings.wall
    return {
        "task": task.name,
        "n_train": task.train,
        "seeds": len(runs),
        "epochs": protocol.epochs,
        "baseline_s_per_task": median(wall["baseline"]),
        "ours_s_per_task": median(wall["ours"]),
        "speedup": median_ratio(wall["baseline"], wall["ours"]),
        "products_s": median(wall["products"]),
        "max_possible_speedup": median_ratio(wall["baseline"], wall["products"]),
        "cpu_speedup": median_ratio(timings.cpu["baseline"], timings.cpu["ours"]),
        "baseline_auroc": f"{baseline_scores.mean():.4f}+-{baseline_scores.std():.4f}",
        "ours_auroc": f"{ours_scores.mean():.4f}+-{ours_scores.std():.4f}",
        "max_auroc_diff": float(np.abs(ours_scores - baseline_scores).max()),
        "baseline_s": spread(wall["baseline"]),
        "ours_s": spread(wall["ours"]),
        "baseline_scores": baseline_scores.tolist(),
        "ours_scores": ours_scores.tolist(),
        "times_baseline": wall["baseline"],
        "times_ours": wall["ours"],
        "times_products": wall["products"],
    }


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0], repeats=3)
    args = parser.parse_args()
    setup_threads(args.threads)
    from resp_audio_hf.data.probe_protocols import ProbeProtocol

    protocol = ProbeProtocol()  # OPERA's defaults: 64 epochs, batch 64, 5 seeds
    tasks, repeats = TASKS, args.repeats
    if args.quick:
        protocol, tasks, repeats = replace(protocol, epochs=16), [QUICK_TASK], 1

    cache_dir = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    try:
        rows = [bench_task(task, protocol, repeats, cache_dir) for task in tasks]
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    targets = []
    for row in rows:
        speed = target_row(f"{row['task']}: >= 10x the per-sample loop", row["speedup"], 10.0)
        speed["measured"] += f" (gather and products alone: {row['max_possible_speedup']:.1f}x)"
        targets.append(speed)
        same = row["max_auroc_diff"] <= 0.01
        targets.append(
            {
                "target": f"{row['task']}: equal AUROC (|diff| <= 0.01 per seed)",
                "measured": f"{row['max_auroc_diff']:.4f}",
                "met": "yes" if same else "NO",
            }
        )
    columns = [
        "task",
        "n_train",
        "seeds",
        "epochs",
        "baseline_s_per_task",
        "ours_s_per_task",
        "speedup",
        "cpu_speedup",
        "products_s",
        "max_possible_speedup",
        "baseline_auroc",
        "ours_auroc",
        "max_auroc_diff",
    ]
    settings = {"protocol": asdict(protocol), "repeats": repeats, "tasks": [asdict(task) for task in tasks]}
    finish(
        NAME, args, settings, rows, f"OPERA linear probe on cached embeddings (median of {repeats})", columns, targets
    )


if __name__ == "__main__":
    main()
