"""Loss terms of render-and-compare, one function each, batched over objects.

Every function returns one value per object, shape (B,), so the fitter can weight, sum and
report each term separately.
"""

from __future__ import annotations

import torch
from torch import Tensor


def silhouette_loss(silhouette: Tensor, mask: Tensor) -> Tensor:
    """One minus the soft IoU of rendered coverage and an observed mask (dimensionless).

    Args:
        silhouette: (B, S, S) rendered coverage in [0, 1]. mask: (B, S, S) target in [0, 1].
    Returns:
        (B,) in [0, 1]; 0 when they agree exactly.

    >>> m = torch.zeros(1, 4, 4); m[:, :2] = 1
    >>> silhouette_loss(m, m).item(), silhouette_loss(m, 1 - m).item()
    (0.0, 1.0)
    """
    intersection = (silhouette * mask).sum((-1, -2))
    union = (silhouette + mask - silhouette * mask).sum((-1, -2))
    return 1 - intersection / union.clamp(min=1e-6)


def depth_loss(depth: Tensor, silhouette: Tensor, target: Tensor, huber: float = 0.2) -> Tensor:
    """Robust depth error in metres over pixels where both renders have depth.

    Args:
        depth: (B, S, S) rendered depth. silhouette: (B, S, S) rendered coverage, weighting
            each pixel (so that depth is continuous where coverage ends).
        target: (B, S, S) observed depth in metres, 0 where unknown.
        huber: metres; errors beyond it count linearly.
    Returns:
        (B,) coverage-weighted mean Huber error in metres; 0 where nothing overlaps.

    >>> d = torch.full((1, 2, 2), 10.0)
    >>> round(depth_loss(d, torch.ones(1, 2, 2), d + 1.0, huber=0.2).item(), 6)
    0.9
    """
    weight = silhouette * (target > 0)
    # Divided by ``huber`` it is in metres: |e| - huber / 2 beyond ``huber``, e^2 / 2 huber below.
    error = torch.nn.functional.huber_loss(depth, target, reduction="none", delta=huber) / huber
    return (weight * error).sum((-1, -2)) / weight.sum((-1, -2)).clamp(min=1e-6)
