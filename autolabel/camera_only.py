"""Initial boxes for detections without LiDAR or depth: the camera's view of them alone.

Three pieces of knowledge stand in for the missing 3D points:

* the **observation angle** ``alpha`` the image model reads from the detection's crop
  (:mod:`autolabel.image.evidence`); the box's yaw follows from it and the ray to the box,
  ``rotation_y = alpha + atan2(x, z)`` (:func:`yaw_from_alpha`);
* the **ground**: without points to fit a plane to, the road is the level plane
  ``camera_height`` metres below the camera (:func:`calibration_ground`; KITTI's camera is
  mounted about 1.65 m above the road);
* the class's **mean size**.

A box of the mean size, at that observation angle, standing on that ground, has one free
parameter left: how far away it is. :func:`place_on_ground` tries depths on a geometric grid,
slides each box sideways until its projection is centred on the detection (on its
constrained edges), and keeps the depth whose projected box matches the detection's edges
best. Edges cut by the image border or by a nearer object (``free`` edges) do not bound the
object and are left out of the match. The fitter then refines the box with the box loss, the
ground and the size prior; such labels stay *weak* (no 3D observation).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from autolabel.geometry import box_corners, project_points, wrap_angle, yaw_to_rotation
from autolabel.init import Hypothesis, InitConfig
from autolabel.lidar.ground import GroundPlane

# Depths (metres) :func:`place_on_ground` tries: a geometric grid, 1 % apart.
DEPTHS = np.geomspace(2.0, 120.0, 412)


def calibration_ground(camera_height: float) -> GroundPlane:
    """The level road ``camera_height`` metres below the camera (camera y points down).

    >>> calibration_ground(1.65).height(np.array([0.0, 1.65, 20.0])).item()
    0.0
    """
    return GroundPlane(np.array([0.0, -1.0, 0.0]), float(camera_height))


def yaw_from_alpha(alpha: float, center: np.ndarray) -> float:
    """KITTI ``rotation_y`` of a box at ``center`` (3,) seen at observation angle ``alpha``:
    ``alpha + atan2(x, z)``, wrapped into [-pi, pi).

    >>> round(yaw_from_alpha(-math.pi / 4, np.array([5.0, 1.0, 5.0])), 6)
    0.0
    """
    ray = math.atan2(float(center[0]), float(center[2]))
    return float(wrap_angle(torch.tensor(alpha + ray, dtype=torch.float64)))


def _projected_boxes(center: torch.Tensor, alpha: float, size: np.ndarray,
                     projection: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image boxes (Z, 4) of boxes at centres (Z, 3) seen at ``alpha``, and (Z,) whether all
    their corners lie ahead of the camera."""
    yaw = wrap_angle(alpha + torch.atan2(center[:, 0], center[:, 2]))
    corners = box_corners(center, yaw_to_rotation(yaw),
                          torch.as_tensor(size, dtype=torch.float64).expand(len(center), 3))
    pixels, depth = project_points(corners, projection.expand(len(center), 3, 4))
    boxes = torch.cat([pixels.amin(dim=1), pixels.amax(dim=1)], dim=1)
    return boxes, (depth > 0.1).all(dim=1)


def place_on_ground(box2d: np.ndarray, alpha: float, size: np.ndarray, projection: np.ndarray,
                    ground: GroundPlane, free: np.ndarray | None = None,
                    depths: np.ndarray = DEPTHS, slides: int = 3) -> np.ndarray:
    """The centre of a box of ``size`` seen at ``alpha``, standing on ``ground``, whose
    projection best matches the detection (see the module docstring).

    Args:
        box2d: (4,) the detection (x1, y1, x2, y2), pixels. alpha: observation angle,
            radians. size: (3,) (l, w, h) metres. projection: (3, 4). ground: the road.
        free: (4,) bool, the detection's edges that do not bound the object (None: none).
        depths: (Z,) camera z of the candidates, metres.
        slides: sideways corrections per candidate.
    Returns:
        (3,) the box centre in the camera frame, metres.
    """
    box2d = torch.as_tensor(np.asarray(box2d, dtype=np.float64))
    P = torch.as_tensor(np.asarray(projection, dtype=np.float64))
    free = torch.zeros(4, dtype=torch.bool) if free is None else torch.as_tensor(free)
    bound = ~free
    if not bool(bound[[0, 2]].any()):  # both sides free: centre on the visible part
        bound[[0, 2]] = True
    z = torch.as_tensor(np.asarray(depths, dtype=np.float64))
    x = ((box2d[0] + box2d[2]) / 2 - P[0, 2]) * z / P[0, 0]
    for _ in range(slides + 1):
        y = torch.as_tensor(ground.y_at(x.numpy(), z.numpy())) - size[2] / 2
        center = torch.stack([x, y, z], dim=1)
        boxes, ahead = _projected_boxes(center, alpha, size, P)
        sides = bound[[0, 2]].to(torch.float64)
        shift = ((box2d[[0, 2]] - boxes[:, [0, 2]]) * sides).sum(dim=1) / sides.sum()
        x = x + shift * z / P[0, 0]
    error = ((boxes - box2d) ** 2 * bound).sum(dim=1)
    error = torch.where(ahead, error, math.inf)
    return center[int(error.argmin())].numpy()


def camera_hypothesis(box2d: np.ndarray, category: str, projection: np.ndarray, alpha: float,
                      ground: GroundPlane, free: np.ndarray | None = None,
                      config: InitConfig = InitConfig()) -> Hypothesis:
    """A weak hypothesis from the 2D box, the predicted observation angle, the ground and the
    class's mean size (:func:`place_on_ground`, :func:`yaw_from_alpha`).

    Args:
        box2d: (4,) pixels. category: class name. projection: (3, 4). alpha: radians.
        ground: the road under the object. free: (4,) bool edges that do not bound it.
        config: supplies the class statistics.
    Returns:
        A hypothesis with source 'box', no points, standing on ``ground``.
    """
    size = config.mean_size(category)
    center = place_on_ground(box2d, alpha, size, projection, ground, free)
    return Hypothesis(center, yaw_from_alpha(alpha, center), size, np.zeros((0, 3)), "box",
                      ground)
