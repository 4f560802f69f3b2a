"""The L-shape fit: which rectangle orientation explains a bird's-eye outline best.

The search-based rectangle fit of Zhang et al. (IV 2017, "Efficient L-shape fitting for
vehicle detection using laser scanners"), on the outline a planar scanner would see.
"""

from __future__ import annotations

import math

import numpy as np


def _edge_distances(points_bev: np.ndarray, angles: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per angle, each point's distance to the rectangle's nearer edge along each axis.

    Per axis the edge is chosen once for all points: the bounding edge (minimum or maximum
    projection) with the smaller total distance, as in Zhang et al.

    Args:
        points_bev: (N, 2). angles: (T,) radians; the axes are (cos, sin) and (-sin, cos).
    Returns:
        distances along the first and the second axis, each (N, T), and the extents (T, 2).
    """
    axes = np.stack([np.cos(angles), np.sin(angles)], axis=0)  # (2, T)
    normals = np.stack([-np.sin(angles), np.cos(angles)], axis=0)
    distances, extents = [], []
    for projected in (points_bev @ axes, points_bev @ normals):  # (N, T)
        to_max = projected.max(axis=0) - projected
        to_min = projected - projected.min(axis=0)
        nearer_max = np.linalg.norm(to_max, axis=0) < np.linalg.norm(to_min, axis=0)
        distances.append(np.where(nearer_max, to_max, to_min))
        extents.append(projected.max(axis=0) - projected.min(axis=0))
    return distances[0], distances[1], np.stack(extents, axis=-1)


def rectangle_criterion(points_bev: np.ndarray, angles: np.ndarray, criterion: str = "variance",
                        floor: float = 0.01) -> np.ndarray:
    """Zhang et al.'s rectangle-fit scores at each angle; larger is better.

    * ``area``: minus the area of the bounding rectangle;
    * ``closeness``: the sum over points of 1 / max(d, floor), d the distance to the nearer
      of the two chosen edges;
    * ``variance``: minus the summed variances of the distances of the points assigned to
      each edge (each point goes to its nearer edge).

    Args:
        points_bev: (N, 2) BEV points (x, z), metres. angles: (T,) radians.
        criterion: 'area', 'closeness' or 'variance'. floor: closeness distance floor d0.
    Returns:
        (T,) scores.

    >>> corner = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 1.0], [2.0, 2.0]])
    >>> [int(np.argmax(rectangle_criterion(corner, np.array([0.0, 0.3, 0.6]), c)))
    ...  for c in ("area", "closeness", "variance")]
    [0, 0, 0]
    """
    first, second, extents = _edge_distances(points_bev, angles)
    if criterion == "area":
        return -extents.prod(axis=-1)
    if criterion == "closeness":
        return (1.0 / np.maximum(np.minimum(first, second), floor)).sum(axis=0)
    if criterion == "variance":
        on_first = first <= second
        return -(_masked_variance(first, on_first) + _masked_variance(second, ~on_first))
    raise ValueError(f"criterion must be 'area', 'closeness' or 'variance', got {criterion!r}")


def _masked_variance(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Variance over axis 0 of ``values`` (N, T) where ``mask`` (N, T); 0 for < 2 entries."""
    count = mask.sum(axis=0)
    safe = np.maximum(count, 1)
    mean = np.where(mask, values, 0.0).sum(axis=0) / safe
    spread = np.where(mask, (values - mean) ** 2, 0.0).sum(axis=0) / safe
    return np.where(count >= 2, spread, 0.0)


def visible_contour(points_bev: np.ndarray, sensor_bev: np.ndarray,
                    resolution: float = math.radians(0.25)) -> np.ndarray:
    """The points a planar scanner at ``sensor_bev`` would see: the nearest per bearing bin.

    A 3D LiDAR also sees the roof and bonnet, whose points lie inside the footprint and
    mislead an L-shape fit made for the outline; this keeps the outline facing the sensor.

    Args:
        points_bev: (N, 2) BEV points (x, z), metres. sensor_bev: (2,) the sensor's (x, z).
        resolution: bearing bin width, radians.
    Returns:
        (K, 2) the nearest point of each occupied bin, K <= N, ordered by bearing.

    >>> visible_contour(np.array([[0.0, 5.0], [0.0, 6.0], [1.0, 5.0]]), np.zeros(2)).tolist()
    [[0.0, 5.0], [1.0, 5.0]]
    """
    offset = points_bev - sensor_bev
    bearing = np.arctan2(offset[:, 0], offset[:, 1])
    bins = np.floor((bearing - bearing.min()) / resolution).astype(np.int64)
    order = np.lexsort((np.hypot(offset[:, 0], offset[:, 1]), bins))
    first = np.ones(len(order), dtype=bool)
    first[1:] = bins[order][1:] != bins[order][:-1]
    return points_bev[order[first]]


def lshape_angle(points_bev: np.ndarray, step: float = math.radians(0.5),
                 criterion: str = "variance", floor: float = 0.01) -> float:
    """The BEV chart angle in [0, pi/2) of the rectangle that fits the points best.

    Args:
        points_bev: (N, 2) BEV points (x, z), N >= 2. step: search step, radians.
        criterion, floor: as in :func:`rectangle_criterion`.
    Returns:
        theta: one rectangle axis is (cos theta, sin theta), the other perpendicular to it.
    """
    angles = np.arange(0.0, math.pi / 2, step)
    return float(angles[np.argmax(rectangle_criterion(points_bev, angles, criterion, floor))])
