"""Analytic shape sources with the same interface as the learned prior.

A *shape source* is any callable ``sdf(latent, xyz) -> distances`` with ``latent: (B, D)``
(one code per shape) or ``(B, N, D)`` (one per point, which gives per-point derivatives with
respect to the code), ``xyz: (B, N, 3)`` points in the canonical object frame (x forward,
y left, z up; a shape's tight box is about the cube [-0.5, 0.5]^3) and the result ``(B, N)``
signed distances, negative inside. The learned prior (``autolabel.prior``) is one; these
closed-form shapes are others, used by tests and as known answers for the renderer.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class ShapeSource(Protocol):
    """Signed distance function of a latent-controlled family of shapes."""

    def __call__(self, latent: Tensor, xyz: Tensor) -> Tensor:
        """latent: (B, D) or (B, N, D), xyz: (B, N, 3) -> (B, N) signed distances (negative
        inside)."""
        ...


def per_point(latent: Tensor) -> Tensor:
    """A code per shape (B, D) as (B, 1, D), broadcasting over points; (B, N, D) unchanged."""
    return latent.unsqueeze(1) if latent.dim() == 2 else latent


def sphere_sdf(latent: Tensor, xyz: Tensor) -> Tensor:
    """Sphere at the origin whose radius is ``latent[:, 0]``.

    Args:
        latent: (B, 1) radius, or (B, N, 1) per point. xyz: (B, N, 3).
    Returns:
        (B, N) exact signed distances.

    >>> sphere_sdf(torch.tensor([[0.5]]), torch.tensor([[[0.0, 0.0, 1.0]]]))
    tensor([[0.5000]])
    """
    return xyz.norm(dim=-1) - per_point(latent)[..., 0]


def rounded_box_sdf(latent: Tensor, xyz: Tensor) -> Tensor:
    """Axis-aligned box with rounded edges, centred at the origin.

    Args:
        latent: (B, 4) as (half length x, half width y, half height z, rounding radius), or
            (B, N, 4) per point; the rounding is inside the half extents, so the tight box
            stays 2 * half extents.
        xyz: (B, N, 3).
    Returns:
        (B, N) exact signed distances.

    >>> rounded_box_sdf(torch.tensor([[0.5, 0.5, 0.5, 0.1]]), torch.tensor([[[0.0, 0, 0.7]]]))
    tensor([[0.2000]])
    """
    latent = per_point(latent)
    half = latent[..., :3]
    rounding = latent[..., 3]
    q = xyz.abs() - (half - rounding.unsqueeze(-1))
    outside = q.clamp(min=0).norm(dim=-1)
    inside = q.amax(dim=-1).clamp(max=0)
    return outside + inside - rounding
