"""The label record that flows between readers, the fitter, the evaluator and the writers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from autolabel.geometry import rotation_to_yaw, yaw_to_rotation


@dataclasses.dataclass
class ObjectLabel:
    """One object: a 9D box in the camera frame plus KITTI's bookkeeping fields.

    Attributes:
        category: class name as in KITTI (``Car``, ``Pedestrian``, ...).
        box2d: (4,) pixels (x1, y1, x2, y2) in the full image.
        center: (3,) metres, centre of the 3D box in the rectified camera frame.
        rotation: (3, 3) camera-from-object rotation (object x forward, y left, z up).
        size: (3,) metres, (length, width, height) along the object's x, y, z axes.
        truncation: KITTI truncation in [0, 1].
        occlusion: KITTI occlusion level 0 (visible) .. 3 (unknown).
        score: detection or label confidence in [0, 1]; None for ground truth.
    """

    category: str
    box2d: np.ndarray
    center: np.ndarray
    rotation: np.ndarray
    size: np.ndarray
    truncation: float = 0.0
    occlusion: int = 0
    score: float | None = None

    @classmethod
    def upright(cls, category: str, box2d, center, yaw: float, size, **fields) -> ObjectLabel:
        """A label whose rotation is a yaw about the camera's y axis (KITTI ``rotation_y``)."""
        rotation = yaw_to_rotation(torch.tensor(float(yaw), dtype=torch.float64)).numpy()
        return cls(category, np.asarray(box2d, dtype=np.float64),
                   np.asarray(center, dtype=np.float64), rotation,
                   np.asarray(size, dtype=np.float64), **fields)

    @property
    def yaw(self) -> float:
        """KITTI ``rotation_y`` in radians: heading of the forward axis about camera y."""
        return float(rotation_to_yaw(torch.as_tensor(self.rotation)))

    @property
    def alpha(self) -> float:
        """KITTI observation angle: yaw relative to the ray through the box centre, in (-pi, pi]."""
        value = self.yaw - math.atan2(self.center[0], self.center[2])
        return math.atan2(math.sin(value), math.cos(value))
