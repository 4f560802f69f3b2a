"""The ground under a frame's objects: a RANSAC plane for the frame, moved locally to the road
around each object."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class GroundPlane:
    """The plane ``normal . x + offset = 0`` in the camera frame, normal pointing up (-y).

    Attributes:
        normal: (3,) unit vector with a negative y component.
        offset: metres.
    """

    normal: np.ndarray
    offset: float

    def height(self, points: np.ndarray) -> np.ndarray:
        """Signed height above the plane (metres) of ``points`` (*, 3) -> (*,)."""
        return np.asarray(points) @ self.normal + self.offset

    def y_at(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Camera y (metres) of the plane below the camera-frame positions ``x``, ``z`` (*,).

        >>> float(GroundPlane(np.array([0.0, -1.0, 0.0]), 1.65).y_at(3.0, 9.0))
        1.65
        """
        n = self.normal
        return -(self.offset + n[0] * np.asarray(x) + n[2] * np.asarray(z)) / n[1]


def ransac_plane(points: np.ndarray, threshold: float, iterations: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray] | None:
    """The plane with the most points within ``threshold``, refined by least squares.

    Seeded and single-threaded, so the same points always give the same plane (open3d's
    ``segment_plane`` runs its iterations in parallel and was not reproducible across runs).

    Args:
        points: (N, 3), N >= 3. threshold: inlier distance. iterations: planes tried.
        rng: the source of the samples.
    Returns:
        unit normal (3,), offset (plane ``normal . x + offset = 0``), inliers (N,) bool;
        None when every sample was degenerate (collinear points).

    >>> flat = np.c_[np.random.default_rng(0).uniform(-5, 5, (50, 2)), np.zeros(50)]
    >>> normal, offset, inliers = ransac_plane(flat, 0.1, 20, np.random.default_rng(0))
    >>> np.round(np.abs(normal), 6).tolist(), abs(round(offset, 6)), int(inliers.sum())
    ([0.0, 0.0, 1.0], 0.0, 50)
    """
    corners = points[rng.integers(0, len(points), size=(iterations, 3))]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    usable = lengths > 1e-9
    if not usable.any():
        return None
    normals = normals[usable] / lengths[usable, None]
    offsets = -(normals * corners[usable, 0]).sum(1)
    counts = np.concatenate([
        (np.abs(points @ normals[i:i + 32].T + offsets[i:i + 32]) < threshold).sum(0)
        for i in range(0, len(normals), 32)])
    best = int(np.argmax(counts))
    inliers = np.abs(points @ normals[best] + offsets[best]) < threshold
    centre = points[inliers].mean(0)
    normal = np.linalg.svd(points[inliers] - centre, full_matrices=False)[2][-1]
    offset = -float(normal @ centre)
    return normal, offset, np.abs(points @ normal + offset) < threshold


def fit_ground_plane(points: np.ndarray, *, threshold: float, iterations: int,
                     max_tilt: float, max_range: float, seed: int) -> GroundPlane | None:
    """Fit the ground plane of a frame with RANSAC (:func:`ransac_plane`).

    Only points below the camera (y > 0) within ``max_range`` metres in front of it take
    part. A plane tilted more than ``max_tilt`` radians from horizontal (a wall) is discarded
    with its inliers and the search repeats, at most three times.

    Args:
        points: (N, 3) camera frame, metres. threshold: inlier distance, metres.
        iterations: RANSAC planes tried per search. seed: seeds the samples.
    Returns:
        The plane, or None when fewer than 3 candidate points remain, they are collinear, or
        no plane is level.
    """
    points = np.asarray(points, dtype=np.float64)
    near = (points[:, 1] > 0) & (points[:, 2] > 0)
    near &= np.hypot(points[:, 0], points[:, 2]) < max_range
    candidates = points[near]
    rng = np.random.default_rng(seed)
    for _ in range(3):
        if len(candidates) < 3:
            return None
        found = ransac_plane(candidates, threshold, iterations, rng)
        if found is None:
            return None
        normal, offset, inliers = found
        if normal[1] > 0:
            normal, offset = -normal, -offset
        if -normal[1] >= math.cos(max_tilt):
            return GroundPlane(normal, offset)
        candidates = candidates[~inliers]
    return None


def ray_heights(points: np.ndarray, origin: np.ndarray, plane: GroundPlane, reach: float
                ) -> np.ndarray:
    """Height above ``plane`` at which the sensor's ray to each return passes ``reach``.

    A ray is straight, so its height above the plane changes linearly with the horizontal
    (x-z) distance from the sensor; a ray that ends nearer than ``reach`` gives its return's
    own height. A return far behind an object can be low while its ray crossed the object
    high up, through a window or over the bonnet.

    Args:
        points: (N, 3) returns, camera frame. origin: (3,) the sensor, camera frame.
        plane: the ground. reach: metres of horizontal distance from the sensor.
    Returns:
        (N,) metres.

    >>> flat = GroundPlane(np.array([0.0, -1.0, 0.0]), 1.65)  # the camera 1.65 m up
    >>> far, near = [0.0, 1.65, 20.0], [0.0, 1.15, 5.0]  # the road 20 m ahead, 0.5 m up 5 m
    >>> ray_heights(np.array([far, near]), np.zeros(3), flat, 10.0).round(6).tolist()
    [0.825, 0.5]
    """
    height = plane.height(points)
    sensor = float(plane.height(origin))
    distance = np.hypot(points[:, 0] - origin[0], points[:, 2] - origin[2])
    fraction = reach / np.maximum(distance, 1e-9)
    return np.where(fraction < 1, sensor + (height - sensor) * fraction, height)


def local_ground(points: np.ndarray, plane: GroundPlane, center: np.ndarray,
                 radius: float = 4.0, band: float = 0.5, min_points: int = 10) -> GroundPlane:
    """The frame's ground plane raised or lowered to the road around one object.

    Roads are not flat: on kitti_dev the frame's plane lies within 0.15 m of a car's true
    bottom for only 80 % of the cars. The plane keeps its tilt and moves to the median height
    of the near-ground points (within ``band`` of the plane) less than ``radius`` metres
    from ``center`` in the bird's-eye view.

    Args:
        points: (N, 3) the frame's points, camera frame. plane: the frame's plane.
        center: (3,) where the object stands (its points' centre).
    Returns:
        The local plane; ``plane`` itself when fewer than ``min_points`` points are near.

    >>> flat = GroundPlane(np.array([0.0, -1.0, 0.0]), 1.6)
    >>> road = np.c_[np.linspace(-3, 3, 20), np.full(20, 1.5), np.full(20, 10.0)]
    >>> round(local_ground(road, flat, np.array([0.0, 0.0, 10.0])).offset, 6)
    1.5
    """
    height = plane.height(points)
    near = (np.hypot(points[:, 0] - center[0], points[:, 2] - center[2]) < radius) & (
        np.abs(height) < band)
    if near.sum() < min_points:
        return plane
    return GroundPlane(plane.normal, plane.offset - float(np.median(height[near])))
