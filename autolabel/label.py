"""The label record that flows between readers, the fitter, the evaluator and the writers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from autolabel.geometry import box_corners, image_box, rotation_to_yaw, yaw_to_rotation


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

    def with_image_box(self, projection: np.ndarray, image_size: tuple[int, int] | None
                       ) -> ObjectLabel:
        """This label with ``box2d`` the image box of its 3D box (clipped to the image), as
        3D detectors report it; ``box2d`` is kept when the box reaches behind the camera.

        Args:
            projection: (3, 4) camera matrix. image_size: (height, width), or None.
        """
        corners = box_corners(torch.as_tensor(self.center), torch.as_tensor(self.rotation),
                              torch.as_tensor(self.size))
        box = image_box(corners, torch.as_tensor(np.asarray(projection, dtype=np.float64)),
                        image_size)
        return self if box is None else dataclasses.replace(self, box2d=box.numpy())

    def share_in_view(self, projection: np.ndarray, image_size: tuple[int, int],
                      samples: int = 3) -> float:
        """Share of the box inside the camera's view: of a ``samples``^3 grid of cell centres
        filling the 3D box, the fraction in front of the camera that projects into the image.

        >>> label = ObjectLabel.upright("Car", np.zeros(4), [0.0, 0.0, 10.0], 0.0, [4, 2, 1.5])
        >>> camera = np.array([[100.0, 0, 50, 0], [0, 100, 50, 0], [0, 0, 1, 0]])
        >>> label.share_in_view(camera, (100, 100)), label.share_in_view(camera, (100, 40))
        (1.0, 0.3333333333333333)
        """
        steps = (np.arange(samples) + 0.5) / samples - 0.5
        grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
        points = (grid * self.size) @ self.rotation.T + self.center
        homogeneous = points @ np.asarray(projection)[:, :3].T + np.asarray(projection)[:, 3]
        ahead = homogeneous[:, 2] > 0.1
        pixels = homogeneous[:, :2] / np.where(ahead, homogeneous[:, 2], 1.0)[:, None]
        height, width = image_size
        inside = ahead & (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0) & (
            pixels[:, 1] < height)
        return float(inside.mean())
