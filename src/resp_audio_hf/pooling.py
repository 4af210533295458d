"""
The clip embeddings every model family offers as `pooler_output`, chosen by name (`config.pooling`). Shipped as remote
code beside each family's modeling file, so it needs only the standard library and torch.

Both families end in a grid of frequency rows: the ViT's patch tokens (`F'` rows of `T'` columns) and EfficientAT's
last feature map (`F'` rows of `C` channels). Each averages every row over the clip's valid time columns (its
`feature_time_mask`) and hands the row means here; the ViT also hands its prefix (CLS, distillation) tokens.
"""

from __future__ import annotations

import torch

# Every pooling a family may support; a family's record (`ModelType.poolings`) says which of them it has.
POOLINGS = ("freq_preserving", "mean", "cls")


def pool_embeddings(pooling: str, row_means: torch.Tensor, prefix_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """
    The clip embedding `pooling` names, `[batch, pooled_size]`, from the frequency rows averaged over the valid time
    columns, `[batch, F', dim]`, and the prefix tokens `[batch, P, dim]` of models that have them. The one place a
    pooling is chosen (every family's `forward` and `pool_frame_stream` end here):

    - `freq_preserving` (Niizumi et al., 2025): the frequency rows concatenated, `F' * dim`, so the embedding keeps
      where in frequency energy lies;
    - `mean`: the average of the rows, i.e. of all valid time steps of the feature grid (every row has the same);
    - `cls`: the average of the prefix tokens (PaSST's and AST's own).
    """
    if pooling == "freq_preserving":
        return row_means.reshape(row_means.shape[0], -1)
    if pooling == "mean":
        return row_means.mean(dim=1)
    if pooling == "cls":
        if prefix_tokens is None:
            raise ValueError("pooling='cls' needs prefix (CLS) tokens, which this model does not have.")
        return prefix_tokens.mean(dim=1)
    raise ValueError(f"Unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}.")


__all__ = ["POOLINGS", "pool_embeddings"]
