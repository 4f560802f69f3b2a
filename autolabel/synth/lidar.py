"""A simulated 64-beam spinning LiDAR mounted like KITTI's Velodyne HDL-64E.

Rays leave the LiDAR origin (``Tr_velo_to_cam`` of the rig) at the 64 beam elevations of an
HDL-64E: an upper block of 32 beams from +2.0 deg down to -8.33 deg and a lower block of 32
from -8.83 deg down to -24.8 deg, each evenly spaced. Azimuths are limited to the camera's
field of view plus a margin (the rest of the sweep would never be seen by the image or the
labels). Returns carry range noise along the ray, random dropout and a reflectance that
depends on the surface and the angle of incidence. Points are written in the LiDAR frame.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from autolabel.synth.scene import Raycaster, Scene

GROUND_REFLECTANCE = 0.25


@dataclasses.dataclass(frozen=True)
class LidarConfig:
    """The scanner. Angles in radians, distances in metres.

    Attributes:
        beams: number of beams; half in the upper block, half in the lower.
        top, split, bottom: elevation of the first beam, of the last beam of the upper block
            and of the last beam of the lower block (which starts ``block_gap`` below ``split``).
        azimuth_step: horizontal angle between two firings (KITTI: about 0.08 deg at 10 Hz).
        half_azimuth: the scan covers azimuths in [-half_azimuth, half_azimuth] around the
            LiDAR's x axis (the camera sees about +-41 deg).
        max_range: returns farther than this are lost.
        range_noise: standard deviation of the range error.
        dropout: probability that a return is lost.
        intensity_noise: standard deviation of the reflectance error.
    """

    beams: int = 64
    top: float = math.radians(2.0)
    split: float = math.radians(-8.33)
    block_gap: float = math.radians(0.5)
    bottom: float = math.radians(-24.8)
    azimuth_step: float = math.radians(0.08)
    half_azimuth: float = math.radians(50.0)
    max_range: float = 120.0
    range_noise: float = 0.02
    dropout: float = 0.05
    intensity_noise: float = 0.03

    def elevations(self) -> np.ndarray:
        """(beams,) elevation angles, top beam first."""
        upper = self.beams // 2
        return np.concatenate([
            np.linspace(self.top, self.split, upper),
            np.linspace(self.split - self.block_gap, self.bottom, self.beams - upper)])

    def directions(self) -> np.ndarray:
        """(R, 3) unit ray directions in the LiDAR frame (x forward, y left, z up)."""
        count = int(round(2 * self.half_azimuth / self.azimuth_step)) + 1
        azimuth = np.linspace(-self.half_azimuth, self.half_azimuth, count)
        elevation, azimuth = np.meshgrid(self.elevations(), azimuth, indexing="ij")
        return np.stack([np.cos(elevation) * np.cos(azimuth),
                         np.cos(elevation) * np.sin(azimuth),
                         np.sin(elevation)], axis=-1).reshape(-1, 3)


class LidarScan(NamedTuple):
    """A simulated scan.

    Attributes:
        points: (N, 4) float32 (x, y, z, reflectance) in the LiDAR frame, as in KITTI ``.bin``.
        car: (N,) int64 index of the car each point lies on, -1 for the ground.
    """

    points: np.ndarray
    car: np.ndarray


def simulate_lidar(scene: Scene, raycaster: Raycaster, rng: np.random.Generator,
                   config: LidarConfig = LidarConfig()) -> LidarScan:
    """Ray-cast one sweep of the scanner through ``raycaster`` (built from ``scene``)."""
    velo_to_rect = scene.calib.velo_to_rect_matrix()
    directions = config.directions() @ velo_to_rect[:3, :3].T
    hits = raycaster.cast(scene.calib.lidar_origin(), directions)
    keep = (hits["t_hit"] <= config.max_range) & (rng.uniform(size=len(directions))
                                                  >= config.dropout)
    distance = hits["t_hit"][keep] + rng.normal(0.0, config.range_noise, int(keep.sum()))
    points = scene.calib.lidar_origin() + distance[:, None] * directions[keep]
    car = hits["car"][keep]
    # car -1 (the ground) picks the last entry.
    surface = np.array([c.reflectance for c in scene.cars] + [GROUND_REFLECTANCE])[car]
    incidence = np.abs(np.sum(hits["normal"][keep] * directions[keep], axis=1))
    reflectance = surface * (0.3 + 0.7 * incidence)
    reflectance += rng.normal(0.0, config.intensity_noise, len(reflectance))
    velo = scene.calib.rect_to_velo(points)
    columns = np.concatenate([velo, np.clip(reflectance, 0.0, 1.0)[:, None]], axis=1)
    return LidarScan(columns.astype(np.float32), car)
