"""Class imbalance in fine-tuning: a class-weighted cross-entropy and a class-balanced training sampler.

SPRSound's classes are far from even (Normal events outnumber Stridor ones about 400 to 1), so a classifier trained
on the plain cross-entropy mostly predicts Normal, which the challenge's score, half sensitivity, punishes. Two
remedies, chosen by `FinetuneConfig.imbalance` and compared on the validation Score by `results/sprsound_challenge.py`:

* `"weighted_loss"`: the cross-entropy of each example weighted by its class's weight
  `n / (num_classes * n_class)` (scikit-learn's `class_weight="balanced"`), averaged as PyTorch averages a weighted
  cross-entropy (divided by the summed weights of the batch), so every class carries the same total weight in an epoch.
* `"balanced_sampler"`: each epoch draws `n` training examples with replacement, example `i` with probability
  proportional to `1 / n_class(i)`, so every class is drawn equally often on average; the loss stays plain.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

IMBALANCE_REMEDIES = ("none", "weighted_loss", "balanced_sampler")


def class_counts(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """`[num_classes]` number of examples of each class id."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"class ids must be in [0, {num_classes}); got range [{labels.min()}, {labels.max()}]")
    return np.bincount(labels, minlength=num_classes)


def balanced_class_weights(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """`n / (num_classes * n_c)` for each class `c` (scikit-learn's `compute_class_weight("balanced")`).

    Raises if a class has no training example: its weight would be infinite, and a classifier cannot learn it anyway.
    """
    counts = class_counts(labels, num_classes)
    if (counts == 0).any():
        raise ValueError(
            f"classes {np.flatnonzero(counts == 0).tolist()} have no training example; class weights need every class"
        )
    return counts.sum() / (num_classes * counts.astype(np.float64))


def balanced_example_weights(labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Sampling weight `1 / n_class(i)` of each example (normalised to sum to one): every class has total weight
    `1 / (number of classes present)`."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    counts = class_counts(labels, num_classes)
    weights = 1.0 / counts[labels].astype(np.float64)
    return weights / weights.sum()


def weighted_cross_entropy(class_weights: Sequence[float]):
    """A `Trainer(compute_loss_func=...)`: cross-entropy of the logits with `class_weights`, reduced as
    `torch.nn.functional.cross_entropy(..., weight=...)` reduces it (weighted mean over the batch)."""
    weights = torch.as_tensor(np.asarray(class_weights), dtype=torch.float32)

    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return torch.nn.functional.cross_entropy(
            logits.float(), labels.to(logits.device).long(), weight=weights.to(logits.device)
        )

    return compute_loss


class BalancedClassSampler(torch.utils.data.Sampler):
    """Draws `num_samples` indices per epoch (default: the dataset's size) with replacement, index `i` with
    probability [`balanced_example_weights`] `[i]`.

    The draw of each epoch is seeded by `(seed, epoch)` (the Trainer calls [`set_epoch`]), so a run resumed from
    a checkpoint sees the same examples in the same order as one that was never stopped.
    """

    def __init__(self, labels: Sequence[int], num_classes: int, seed: int = 0, num_samples: int | None = None):
        self.probabilities = balanced_example_weights(labels, num_classes)
        self.num_samples = len(self.probabilities) if num_samples is None else int(num_samples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        return rng.choice(len(self.probabilities), size=self.num_samples, replace=True, p=self.probabilities)

    def __iter__(self):
        return iter(self.indices(self.epoch).tolist())

    def __len__(self) -> int:
        return self.num_samples


__all__ = [
    "IMBALANCE_REMEDIES",
    "BalancedClassSampler",
    "balanced_class_weights",
    "balanced_example_weights",
    "class_counts",
    "weighted_cross_entropy",
]
