"""Holding BatchNorm's running statistics while the rest of a network trains.

EfficientAT's running statistics were estimated on AudioSet with large batches of 10-second clips. Training on small
respiratory batches moves them far: in train mode alone AudioSet mn04's embedding moves 0.75 (1 - cos) before any
step, and EfficientAT encodes each group of equal-length clips apart, so a batch of clips of different lengths
normalises each clip by its own statistics. Fine-tuning and further pre-training can keep them fixed instead; the
affine parameters still train.
"""

from __future__ import annotations

from torch import nn


def freeze_batch_norm_statistics(module: nn.Module) -> None:
    """Put every BatchNorm layer of `module` in evaluation mode (its running statistics stop moving)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def hold_batch_norm_statistics(model: nn.Module):
    """Keep `model`'s BatchNorm layers in evaluation mode whenever it runs in train mode, however often something
    (the `Trainer` calls `model.train()` every step) switches it back. Returns the hook's handle (`.remove()` undoes
    it)."""

    def hold(module: nn.Module, _inputs) -> None:
        if module.training:
            freeze_batch_norm_statistics(module)

    return model.register_forward_pre_hook(hold)


__all__ = ["freeze_batch_norm_statistics", "hold_batch_norm_statistics"]
