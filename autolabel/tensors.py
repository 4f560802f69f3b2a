"""Small batched index helpers shared by the renderer and the fitter."""

from __future__ import annotations

import torch
from torch import Tensor


def compact(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per row, the indices of the True entries first, cut to the largest count of the batch.

    Args:
        mask: (B, N) bool.
    Returns:
        index: (B, K) long, each row a prefix of a permutation of 0..N-1 that lists the row's
        True entries first (in order); K = max(1, largest row count).
        kept: (B, K) bool, True where ``index`` points at a True entry.

    >>> compact(torch.tensor([[False, True, True], [True, False, False]]))
    (tensor([[1, 2],
            [0, 1]]), tensor([[ True,  True],
            [ True, False]]))
    """
    count = max(int(mask.sum(-1).max()), 1)
    index = torch.argsort(mask.to(torch.uint8), dim=1, descending=True, stable=True)[:, :count]
    return index, mask.gather(1, index)


def gather_rows(values: Tensor, index: Tensor) -> Tensor:
    """Entries ``values[b, index[b, k]]``: (B, K, ...) from values (B, N, ...), index (B, K)."""
    expanded = index.view(*index.shape, *([1] * (values.dim() - 2)))
    return values.gather(1, expanded.expand(*index.shape, *values.shape[2:]))


def scatter_rows(values: Tensor, index: Tensor, updates: Tensor, mask: Tensor) -> Tensor:
    """A copy of values (B, N, ...) with ``updates[b, k]`` written at ``index[b, k]`` where
    ``mask[b, k]`` (B, K) is True; ``index`` must not repeat within a row."""
    current = gather_rows(values, index)
    keep = mask.view(*mask.shape, *([1] * (updates.dim() - 2)))
    merged = torch.where(keep, updates, current)
    expanded = index.view(*index.shape, *([1] * (values.dim() - 2))).expand_as(merged)
    return values.scatter(1, expanded, merged)
