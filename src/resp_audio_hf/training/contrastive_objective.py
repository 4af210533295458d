"""OPERA-CT's contrastive objective (Zhang et al., NeurIPS 2024) with an optional frozen teacher, for any encoder.

Two random crops of one recording are a positive pair; the other recordings of the batch are its negatives. As in
OPERA's code (evelyn0414/OPERA, `src/model/models_cola.py`, `ColaMD`), each view's clip embedding goes through
dropout, a linear layer to 512, dropout, `tanh(LayerNorm(.))` and dropout; the first view is multiplied by a bias-free
square matrix (a bilinear similarity) and the logits `view_a @ view_b.T` are scored by cross-entropy against the
diagonal, with no temperature. OPERA augments the log-mel crops with random frame masking (`random_mask`: a frame
starts a masked run with probability 0.1 and continues it with 0.2, masked frames take the crop's mean) and a random
gain on the spectrogram (`random_multiply`: x 0.9 to 1.1); both are applied here, on the model's own features.

The teacher stands in for AudioSet audio, which this package cannot train on: a frozen copy of the encoder the run
starts from sees the same augmented crops, and the student's clip embedding (`pooler_output`) is pulled toward the
teacher's by `1 - cos`, weighted by `teacher_weight` (lambda). It plays the part of M2D-X's offline teacher: lambda = 0
is pure respiratory training; with the student equal to the teacher the term is exactly 0. The two views are encoded
in separate forward passes, as OPERA does, so BatchNorm statistics never mix a recording's two crops.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from .batch_norm import freeze_batch_norm_statistics

TEACHER_TARGETS = ("embedding",)


@dataclass
class ContrastiveObjectiveConfig:
    """
    Settings of the contrastive objective.

    Args:
        projection_size: width of the projection head's output (OPERA: 512).
        dropout: dropout of the projection head (OPERA: 0.1), applied as OPERA does (after the encoder, after the
            linear layer, after the tanh).
        mask_start_probability: probability that a frame starts a masked run (OPERA's `random_mask` `rate_start`).
        mask_continue_probability: probability that a masked run goes on to the next frame (`rate_seq`).
        gain_range: the log-mel crop is multiplied by a factor drawn uniformly from this range (`random_multiply`).
        teacher_weight: lambda, the weight of the teacher term; 0 trains on the respiratory audio alone.
        teacher_from: folder of the frozen teacher encoder; `None` uses `model.init_from` (the encoder the run starts
            from). Needed when `teacher_weight > 0`.
        teacher_target: what the student matches: `"embedding"` (`1 - cos` between the student's and the teacher's
            `pooler_output`, per clip).
        freeze_batch_norm_statistics: keep BatchNorm layers in evaluation mode (running statistics frozen; their
            scale and shift still train). Off, the statistics follow the respiratory batches.
        head_warmup_steps: optimizer steps that train the projection head alone, the encoder frozen, before both
            train together (linear probing before fine-tuning, Kumar et al. 2022): gradients through a random head
            would otherwise move a pre-trained encoder in directions the task has not chosen yet.
    """

    projection_size: int = 512
    dropout: float = 0.1
    mask_start_probability: float = 0.1
    mask_continue_probability: float = 0.2
    gain_range: tuple[float, float] = (0.9, 1.1)
    teacher_weight: float = 0.0
    teacher_from: str | None = None
    teacher_target: str = "embedding"
    freeze_batch_norm_statistics: bool = False
    head_warmup_steps: int = 0

    def __post_init__(self):
        if self.head_warmup_steps < 0:
            raise ValueError(f"contrastive.head_warmup_steps must be >= 0, got {self.head_warmup_steps}.")
        if self.teacher_weight < 0:
            raise ValueError(f"contrastive.teacher_weight must be >= 0, got {self.teacher_weight}.")
        if self.teacher_target not in TEACHER_TARGETS:
            raise ValueError(f"contrastive.teacher_target must be one of {TEACHER_TARGETS}, got {self.teacher_target!r}.")
        low, high = self.gain_range
        if not 0 < low <= high:
            raise ValueError(f"contrastive.gain_range must be 0 < low <= high, got {tuple(self.gain_range)}.")
        for name in ("dropout", "mask_start_probability", "mask_continue_probability"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"contrastive.{name} must lie in [0, 1), got {getattr(self, name)}.")


@dataclass
class ContrastiveOutput(ModelOutput):
    """
    Output of [`ContrastiveObjective`].

    Args:
        loss: `contrastive_loss + teacher_weight * teacher_loss`.
        contrastive_loss: cross-entropy of the bilinear similarities against the matching view.
        teacher_loss: mean `1 - cos` between student and teacher embeddings over both views (0 without a teacher).
        accuracy: share of clips whose most similar other view is their own.
    """

    loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    teacher_loss: torch.FloatTensor | None = None
    accuracy: torch.FloatTensor | None = None


def random_frame_masks(
    rows: int, frames: int, start_probability: float, continue_probability: float, generator
) -> torch.Tensor:
    """OPERA's `random_mask` as a boolean `[rows, frames]` mask: a run starts with one probability and goes on with
    another (one uniform draw per frame, compared with both, as OPERA's `random.random()` is)."""
    draws = torch.rand(rows, frames, generator=generator)
    masked = torch.zeros(rows, frames, dtype=torch.bool)
    previous = torch.zeros(rows, dtype=torch.bool)
    for index in range(frames):
        previous = (draws[:, index] < start_probability) | (previous & (draws[:, index] < continue_probability))
        masked[:, index] = previous
    return masked


def random_frame_mask(frames: int, start_probability: float, continue_probability: float, generator) -> torch.Tensor:
    """One clip's `[frames]` mask (see `random_frame_masks`)."""
    return random_frame_masks(1, frames, start_probability, continue_probability, generator)[0]


def augment_views(
    input_values: torch.Tensor, attention_mask: torch.Tensor | None, config: ContrastiveObjectiveConfig, generator
) -> torch.Tensor:
    """
    OPERA's augmentation of `[batch, frames, mel]` log-mel crops: masked frames take the mean of the crop's real
    frames, then the crop is multiplied by a random gain. Draws come from `generator` only (exact resume).
    """
    batch, frames, _ = input_values.shape
    valid = (
        torch.ones(batch, frames, dtype=torch.bool, device=input_values.device)
        if attention_mask is None
        else attention_mask.bool()
    )
    masked = random_frame_masks(
        batch, frames, config.mask_start_probability, config.mask_continue_probability, generator
    ).to(input_values.device) & valid
    low, high = config.gain_range
    gains = (low + (high - low) * torch.rand(batch, generator=generator)).to(input_values.device, input_values.dtype)
    weights = valid.to(input_values.dtype)[:, :, None]
    means = (input_values * weights).sum(dim=(1, 2)) / (weights.sum(dim=(1, 2)) * input_values.shape[2]).clamp_min(1)
    augmented = torch.where(masked[:, :, None], means[:, None, None], input_values)
    return torch.where(valid[:, :, None], augmented * gains[:, None, None], input_values)


class ContrastiveHead(nn.Module):
    """OPERA-CT's projection head and bilinear similarity (`ColaMD`: `g`, `layer_norm`, `linear`, dropout `do`)."""

    def __init__(self, embedding_size: int, projection_size: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(embedding_size, projection_size)
        self.layer_norm = nn.LayerNorm(projection_size)
        self.bilinear = nn.Linear(projection_size, projection_size, bias=False)

    def project(self, embeddings: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(self.projection(self.dropout(embeddings)))
        return self.dropout(torch.tanh(self.layer_norm(hidden)))

    def similarities(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        """`[batch, batch]` logits: row i scores view a of clip i against view b of every clip."""
        return self.bilinear(self.project(view_a)) @ self.project(view_b).T


def contrastive_loss(similarities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of each row against its diagonal entry, and the share of rows whose maximum is the diagonal."""
    targets = torch.arange(similarities.shape[0], device=similarities.device)
    accuracy = (similarities.argmax(dim=1) == targets).float().mean()
    return F.cross_entropy(similarities, targets), accuracy


def embedding_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean `1 - cos` between matching rows: 0 when the student's embeddings point where the teacher's do."""
    return (1.0 - F.cosine_similarity(student, teacher.to(student.dtype), dim=-1)).mean()


def embedding_size_of(encoder: nn.Module) -> int:
    """Width of an encoder's `pooler_output` (`pooled_size` for EfficientAT, the pooled width for the ViT)."""
    config = encoder.config
    size = getattr(config, "pooled_size", None)
    if size is None:
        with torch.no_grad():
            was_training = encoder.training
            encoder.eval()
            frames = getattr(config, "window_frames", 100)
            probe = torch.zeros(1, frames, config.num_mel_bins)
            size = encoder(input_values=probe).pooler_output.shape[-1]
            encoder.train(was_training)
    return int(size)


class ContrastiveObjective(nn.Module):
    """
    The encoder being trained (`self.encoder`, any family of this package: EfficientAT or `RespAudioModel`), OPERA-CT's
    head, and an optional frozen teacher. `forward(input_values, attention_mask, generator)` takes the two views
    stacked: rows `[0, batch)` are the first crop of each recording and rows `[batch, 2 * batch)` the second.
    """

    def __init__(self, encoder: nn.Module, config: ContrastiveObjectiveConfig, teacher: nn.Module | None = None):
        super().__init__()
        if config.teacher_weight > 0 and teacher is None:
            raise ValueError("contrastive.teacher_weight > 0 needs a teacher encoder (contrastive.teacher_from).")
        self.encoder = encoder
        self.config = config
        self.head = ContrastiveHead(embedding_size_of(encoder), config.projection_size, config.dropout)
        # Kept outside the module tree: the teacher is neither trained, checkpointed nor moved by `prepare`.
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []
        self.encoder_frozen = False

    def encoder_trains_at(self, step: int) -> bool:
        """Whether optimizer step `step` (0-based) updates the encoder (after the head's warm-up)."""
        return step >= self.config.head_warmup_steps

    def set_step(self, step: int) -> None:
        """Freeze the encoder during the head's warm-up: no gradients, and BatchNorm statistics held too."""
        frozen = not self.encoder_trains_at(step)
        if frozen != self.encoder_frozen:
            self.encoder_frozen = frozen
            self.train(self.training)

    @property
    def encoder_model(self) -> nn.Module:
        """The encoder to save after training (the name pre-training looks for, as on `M2DObjective`)."""
        return self.encoder

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and (self.config.freeze_batch_norm_statistics or self.encoder_frozen):
            freeze_batch_norm_statistics(self.encoder)
        return self

    def _embed(self, input_values, attention_mask):
        with torch.no_grad() if self.encoder_frozen else contextlib.nullcontext():
            return self.encoder(input_values=input_values, attention_mask=attention_mask).pooler_output

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ContrastiveOutput:
        if input_values.shape[0] % 2 or input_values.shape[0] < 4:
            raise ValueError(
                f"The contrastive objective takes two views of at least 2 clips stacked ([2 x batch, frames, mel]); "
                f"got {input_values.shape[0]} rows."
            )
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        views = augment_views(input_values, attention_mask, self.config, generator)
        half = views.shape[0] // 2
        masks = (None, None) if attention_mask is None else (attention_mask[:half], attention_mask[half:])
        embedding_a = self._embed(views[:half], masks[0])
        embedding_b = self._embed(views[half:], masks[1])
        loss_contrastive, accuracy = contrastive_loss(self.head.similarities(embedding_a, embedding_b))
        loss_teacher = loss_contrastive.new_zeros(())
        if self.teacher is not None and self.config.teacher_weight > 0:
            teacher = self.teacher.to(views.device)
            with torch.no_grad():
                target_a = teacher(input_values=views[:half], attention_mask=masks[0]).pooler_output
                target_b = teacher(input_values=views[half:], attention_mask=masks[1]).pooler_output
            loss_teacher = (embedding_distance(embedding_a, target_a) + embedding_distance(embedding_b, target_b)) / 2
        loss = loss_contrastive + self.config.teacher_weight * loss_teacher
        return ContrastiveOutput(
            loss=loss, contrastive_loss=loss_contrastive.detach(), teacher_loss=loss_teacher.detach(),
            accuracy=accuracy.detach(),
        )


__all__ = [
    "ContrastiveHead",
    "ContrastiveObjective",
    "ContrastiveObjectiveConfig",
    "ContrastiveOutput",
    "augment_views",
    "contrastive_loss",
    "embedding_distance",
    "random_frame_mask",
    "random_frame_masks",
]
