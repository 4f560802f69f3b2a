"""Loss terms of render-and-compare, one function each, batched over objects.

Every function returns one value per object, shape (B,), so the fitter can weight, sum and
report each term separately.
"""

from __future__ import annotations

import torch
from torch import Tensor


def silhouette_loss(silhouette: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
    """One minus the soft IoU of rendered coverage and an observed mask (dimensionless).

    Args:
        silhouette: (B, S, S) rendered coverage in [0, 1]. mask: (B, S, S) target in [0, 1].
        weight: (B, S, S) in [0, 1], how much each pixel counts (0 where the mask cannot
            tell, e.g. behind a nearer object); None counts every pixel.
    Returns:
        (B,) in [0, 1]; 0 when they agree exactly.

    >>> m = torch.zeros(1, 4, 4); m[:, :2] = 1
    >>> silhouette_loss(m, m).item(), silhouette_loss(m, 1 - m).item()
    (0.0, 1.0)
    >>> silhouette_loss(torch.ones(1, 4, 4), m, weight=m).item()
    0.0
    """
    weight = torch.ones_like(mask) if weight is None else weight
    intersection = (weight * silhouette * mask).sum((-1, -2))
    union = (weight * (silhouette + mask - silhouette * mask)).sum((-1, -2))
    return 1 - intersection / union.clamp(min=1e-6)


def widen_mask(mask: Tensor, halo: float) -> Tensor:
    """A binary mask with the ring of pixels around it at ``halo`` coverage: the target that a
    splatted silhouette, whose soft edge reaches past the true outline, should match.

    Args:
        mask: (B, S, S) in {0, 1}. halo: in [0, 1], the coverage of the ring.
    Returns:
        (B, S, S) in [0, 1].

    >>> widen_mask(torch.tensor([[[0.0, 0, 0, 0], [0, 1, 0, 0]]]), 0.75).tolist()
    [[[0.75, 0.75, 0.75, 0.0], [0.75, 1.0, 0.75, 0.0]]]
    """
    grown = torch.nn.functional.max_pool2d(mask.unsqueeze(1), 3, stride=1, padding=1)[:, 0]
    return mask + halo * (grown - mask)


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


def point_sdf_loss(distance: Tensor, valid: Tensor, huber: float = 0.1,
                   inside_weight: float = 1.0) -> Tensor:
    """Robust mean |SDF| of observed surface points (LiDAR or depth), in metres.

    Observed points lie on the object's surface, so their signed distance to the fitted shape
    should be zero. The Huber penalty keeps stray background points from dominating.

    Args:
        distance: (B, M) signed distances of the points to the fitted surface, metres.
        valid: (B, M) bool, False for padding.
        huber: metres; distances beyond it count linearly.
        inside_weight: weight of points inside the shape (negative distance): LiDAR passes
            through car windows and returns from the cabin, points a shape must not shrink
            onto.
    Returns:
        (B,) mean penalty in metres; 0 for objects without points.

    >>> round(point_sdf_loss(torch.tensor([[0.0, 0.5]]), torch.tensor([[True, True]])).item(), 6)
    0.225
    """
    error = torch.nn.functional.huber_loss(distance, torch.zeros_like(distance),
                                           reduction="none", delta=huber) / huber
    weight = valid.to(distance.dtype)
    side = torch.where(distance < 0, inside_weight, 1.0)
    return (error * side * weight).sum(-1) / weight.sum(-1).clamp(min=1)


def free_space_loss(depth: Tensor, silhouette: Tensor, observed: Tensor,
                    margin: float = 0.1, cap: float = 0.5) -> Tensor:
    """Penalty for rendered surface in front of points the sensor saw through it, metres.

    A sensor ray that reached depth ``observed`` passed through free space up to there, so
    rendered surface on that ray closer than ``observed - margin`` contradicts it.

    Args:
        depth: (B, S, S) rendered depth. silhouette: (B, S, S) rendered coverage.
        observed: (B, S, S) depth of the sensor's nearest return per window pixel, 0 if none.
        margin: metres of tolerance for sensor noise.
        cap: metres; a violation counts at most this much, so that background far behind a
            soft silhouette edge (or seen past it from the LiDAR's slightly different
            viewpoint) does not outweigh everything else.
    Returns:
        (B,) mean violation in metres over the window pixels with a return.

    >>> round(free_space_loss(torch.full((1, 1, 2), 5.0), torch.ones(1, 1, 2),
    ...                       torch.tensor([[[5.3, 5.0]]])).item(), 6)
    0.1
    """
    seen = observed > 0
    violation = (observed - depth - margin).clamp(0, cap) * silhouette * seen
    return violation.sum((-1, -2)) / seen.sum((-1, -2)).clamp(min=1)


def box_loss(extent: Tensor, box2d: Tensor, free_edges: Tensor, huber: float = 0.05) -> Tensor:
    """Disagreement of the shape's projected extent with the detected 2D box (dimensionless).

    Args:
        extent: (B, 4) projected extent of the shape (x1, y1, x2, y2), pixels.
        box2d: (B, 4) detection box, pixels.
        free_edges: (B, 4) bool, True for edges that do not constrain the shape (the box is
            cut there by the image border).
        huber: in units of the box's longer side.
    Returns:
        (B,) mean Huber error of the constrained edges in units of the box's longer side.

    >>> round(box_loss(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[0.0, 0, 10, 12]]),
    ...                torch.zeros(1, 4, dtype=torch.bool), huber=1.0).item(), 6)
    0.003472
    """
    scale = (box2d[:, 2:] - box2d[:, :2]).amax(-1, keepdim=True).clamp(min=1)
    error = torch.nn.functional.huber_loss(extent / scale, box2d / scale, reduction="none",
                                           delta=huber) / huber
    weight = (~free_edges).to(extent.dtype)
    return (error * weight).sum(-1) / weight.sum(-1).clamp(min=1)


def nocs_loss(nocs: Tensor, silhouette: Tensor, target: Tensor, target_valid: Tensor) -> Tensor:
    """Mean L1 distance between rendered and given NOCS maps (canonical units in [0, 1]).

    Args:
        nocs: (B, S, S, 3) rendered. silhouette: (B, S, S) coverage.
        target: (B, S, S, 3) given NOCS. target_valid: (B, S, S) bool.
    Returns:
        (B,) coverage-weighted mean L1 over valid pixels.
    """
    weight = silhouette * target_valid
    error = (nocs - target).abs().sum(-1)
    return (weight * error).sum((-1, -2)) / weight.sum((-1, -2)).clamp(min=1e-6)


def ground_loss(bottom_height: Tensor, has_ground: Tensor, huber: float = 0.1) -> Tensor:
    """Ground contact: the shape's lowest point should sit on the ground plane, metres.

    Args:
        bottom_height: (B,) signed height of the shape's bottom above the ground plane.
        has_ground: (B,) bool, False where no plane was estimated.
    Returns:
        (B,) Huber penalty in metres, 0 without a plane.
    """
    error = torch.nn.functional.huber_loss(bottom_height, torch.zeros_like(bottom_height),
                                           reduction="none", delta=huber) / huber
    return error * has_ground


def size_prior_loss(log_size: Tensor, log_mean: Tensor, log_std: Tensor) -> Tensor:
    """Squared z-score of the log-size under the class's size distribution (dimensionless).

    Args:
        log_size: (B, 3). log_mean: (B, 3). log_std: (B, 3).
    Returns:
        (B,) mean over the three axes of ((log_size - log_mean) / log_std)^2.
    """
    return ((log_size - log_mean) / log_std).pow(2).mean(-1)


def footprint_overlap_loss(center: Tensor, rotation: Tensor, size: Tensor, obstacles: Tensor,
                           valid: Tensor, samples: int = 3) -> Tensor:
    """How deep a box's bird's-eye footprint reaches into other objects' footprints, metres.

    Two cars cannot share ground. The centres of a ``samples`` x ``samples`` grid of cells
    over the footprint are tested against each obstacle rectangle; a point inside counts its
    distance to the rectangle's nearest edge.

    Args:
        center: (B, 3) camera frame. rotation: (B, 3, 3) camera-from-object (object x
            forward, y left). size: (B, 3) (l, w, h).
        obstacles: (B, K, 5) other objects' footprints as (x, z, length, width, yaw), KITTI yaw
            (forward is (cos yaw, -sin yaw) in the (x, z) plane).
        valid: (B, K) bool, False for padding.
    Returns:
        (B,) mean over the grid points of the summed penetration depths.

    >>> from autolabel.geometry import yaw_to_rotation
    >>> box = (torch.tensor([[0.0, 0.0, 10.0]]), yaw_to_rotation(torch.zeros(1)),
    ...        torch.tensor([[4.0, 2.0, 1.5]]))
    >>> far = torch.tensor([[[0.0, 20.0, 4.0, 2.0, 0.0]]])
    >>> footprint_overlap_loss(*box, far, torch.tensor([[True]])).item()
    0.0
    >>> same = torch.tensor([[[0.0, 10.0, 4.0, 2.0, 0.0]]])
    >>> round(footprint_overlap_loss(*box, same, torch.tensor([[True]])).item(), 4)
    0.4815
    """
    steps = (torch.arange(samples, dtype=center.dtype, device=center.device) + 0.5) / samples - 0.5
    along, across = torch.meshgrid(steps, steps, indexing="ij")
    forward = rotation[:, [0, 2], 0]  # (B, 2) in (x, z)
    left = rotation[:, [0, 2], 1]
    offsets = (along.reshape(1, -1, 1) * size[:, None, 0:1] * forward[:, None]
               + across.reshape(1, -1, 1) * size[:, None, 1:2] * left[:, None])
    grid = center[:, None, [0, 2]] + offsets  # (B, G, 2)
    yaw = obstacles[..., 4]
    axis = torch.stack([torch.cos(yaw), -torch.sin(yaw)], dim=-1)  # (B, K, 2)
    normal = torch.stack([torch.sin(yaw), torch.cos(yaw)], dim=-1)
    relative = grid[:, :, None] - obstacles[:, None, :, :2]  # (B, G, K, 2)
    inside_length = obstacles[:, None, :, 2] / 2 - (relative * axis[:, None]).sum(-1).abs()
    inside_width = obstacles[:, None, :, 3] / 2 - (relative * normal[:, None]).sum(-1).abs()
    depth = torch.minimum(inside_length, inside_width).clamp(min=0) * valid[:, None]
    return depth.sum(-1).mean(-1)
