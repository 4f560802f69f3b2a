"""Free space along LiDAR rays: places around an object that the sensor saw through.

A return at range r says the straight ray from the sensor to it crossed empty space up to r.
Points sampled on such rays near an object must lie outside the object's shape; the fit
penalises those its shape swallows (:class:`autolabel.losses.FreeRayLoss`). Unlike the
rendered free-space term, which compares depths per camera pixel, these samples are tested
against the signed distance itself, so a ray that passes a car's far end says so even when
that end covers only a sliver of the image.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from autolabel.lidar.ground import GroundPlane


def free_samples(points: np.ndarray, origin: np.ndarray, plane: GroundPlane,
                 center: np.ndarray, radius: float, band: tuple[float, float],
                 margin: float = 0.15, per_ray: int = 4, count: int = 256,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Points on the sensor's rays, near an object, that the sensor saw as free.

    Each ray from ``origin`` to a return is cut to the part whose horizontal (x-z) distance
    to ``center`` is under ``radius`` and that ends ``margin`` metres (horizontally) short
    of its return; ``per_ray`` points are drawn uniformly on that part, and those between
    ``band`` metres above ``plane`` are kept: below it rays pass under bodies and between
    wheels, above it through windows into cabins.

    Args:
        points: (N, 3) returns, camera frame. origin: (3,) the sensor, camera frame.
        plane: the ground under the object. center: (3,) the object's initial centre.
        radius: metres around ``center`` (horizontal). band: (low, high) metres.
        margin: metres short of each return (its own surface and range noise).
        per_ray: draws per ray. count: at most this many samples are returned, drawn without
            replacement. rng: the draws' generator (seed 0 when None).
    Returns:
        (F, 3) samples, camera frame, F <= count.

    >>> flat = GroundPlane(np.array([0.0, -1.0, 0.0]), 1.0)  # the sensor 1 m up
    >>> road = np.array([[0.0, 1.0, 20.0]])                  # a return on the road 20 m ahead
    >>> samples = free_samples(road, np.zeros(3), flat, np.array([0.0, 0.5, 10.0]), 1.0,
    ...                        (0.3, 0.9))
    >>> bool(np.all(np.abs(samples[:, 2] - 10.0) <= 1.0)), bool(np.all(samples[:, 1] <= 0.7))
    (True, True)
    """
    rng = np.random.default_rng(0) if rng is None else rng
    ray = points - origin
    reach = np.hypot(ray[:, 0], ray[:, 2])
    direction = ray[:, [0, 2]] / np.maximum(reach, 1e-9)[:, None]
    towards = (center - origin)[[0, 2]]
    along = direction @ towards
    miss = np.maximum(towards @ towards - along ** 2, 0.0)
    half_chord = np.sqrt(np.maximum(radius ** 2 - miss, 0.0))
    start = np.maximum(along - half_chord, 0.0)
    end = np.minimum(along + half_chord, reach - margin)
    crossing = (miss < radius ** 2) & (end > start)
    if not crossing.any():
        return np.zeros((0, 3))
    start, end, ray, reach = start[crossing], end[crossing], ray[crossing], reach[crossing]
    distance = start[:, None] + (end - start)[:, None] * rng.random((len(start), per_ray))
    samples = origin + ray[:, None, :] * (distance / reach[:, None])[..., None]
    samples = samples.reshape(-1, 3)
    height = plane.height(samples)
    samples = samples[(height > band[0]) & (height < band[1])]
    if len(samples) > count:
        samples = samples[rng.choice(len(samples), count, replace=False)]
    return samples


@dataclasses.dataclass(frozen=True)
class FreeRayConfig:
    """How many free-space samples an object gets from the LiDAR's rays, and where (the
    heights they may lie at are ``PipelineConfig.free_space_band``).

    Attributes:
        reach: metres beyond half the class's mean length that the samples reach from the
            object's initial centre (horizontally).
        margin: metres short of each return. per_ray: draws per ray. count: samples kept.
    """

    reach: float = 1.0
    margin: float = 0.15
    per_ray: int = 4
    count: int = 256
