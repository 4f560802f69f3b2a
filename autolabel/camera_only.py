"""Initial boxes for detections without LiDAR or depth: the camera's view of them alone.

Three pieces of knowledge stand in for the missing 3D points:

* the **observation angle** ``alpha`` the image model reads from the detection's crop
  (:mod:`autolabel.image.evidence`); the box's yaw follows from it and the ray to the box,
  ``rotation_y = alpha + atan2(x, z)`` (:func:`yaw_from_alpha`);
* the **ground**: without points to fit a plane to, the road is estimated from the frame's
  detections themselves (:func:`estimate_road`). A box of the class's mean size matched to a
  detection's four edges, at whatever height that takes, stands on a noisy sample of the road
  below it (:func:`road_sample`): its depth comes from the box's apparent size, its height
  from where its bottom edge meets that depth. A robust weighted least-squares fit of the
  road's height below the camera and its slope along the view over the frame's samples,
  each weighed by how far its depth may be off (the class's size spread and the edges'
  pixel noise at its size), and held by a prior around the level road ``camera_height``
  metres below the camera (:func:`calibration_ground`; KITTI's camera is mounted about
  1.65 m above the road), gives the frame's road plane; each detection's own sample then
  moves the road under it by what the road's roughness and grade allow, the more the
  farther the car: the road 40 m ahead may lie a metre above or below the level one, the
  road under a car 8 m ahead hardly. A frame without usable samples keeps the level road.
  With the spreads of :class:`RoadConfig` the plane is held level and only the per-car moves
  remain: a plane tilted by a frame's few samples moved the nearer cars, which the level
  road already places well. The estimate is off by default: it moves the far cars of hilly
  frames toward their roads, but kitti_dev's official AP fell with it and on level roads it
  only adds its samples' noise to the far cars' depth;
* the class's **mean size**.

A box of the mean size, at that observation angle, standing on that ground, has one free
parameter left: how far away it is. :func:`place_on_ground` tries depths on a geometric grid,
slides each box sideways until its projection is centred on the detection (on its
constrained edges), and keeps the depth whose projected box matches the detection's edges
best. Edges cut by the image border or by a nearer object (``free`` edges) do not bound the
object: there a box only has to reach about as far as the detection. The fitter then
refines the box with the box loss, the ground and the size prior; such labels stay *weak*
(no 3D observation).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from autolabel.geometry import box_corners, project_points, wrap_angle, yaw_to_rotation
from autolabel.init import Hypothesis, InitConfig
from autolabel.lidar.ground import GroundPlane

# Depths (metres) :func:`place_on_ground` tries: a geometric grid, 1 % apart.
DEPTHS = np.geomspace(2.0, 120.0, 412)
# How far (a share of the detection's longer side) a box may stop short of a free edge, as
# the fit's box loss allows (:class:`autolabel.losses.BoxLoss`, its Huber width).
FREE_EDGE_TOLERANCE = 0.05


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
                    ground: GroundPlane | None, free: np.ndarray | None = None,
                    depths: np.ndarray = DEPTHS, slides: int = 3) -> np.ndarray:
    """The centre of a box of ``size`` seen at ``alpha``, standing on ``ground``, whose
    projection best matches the detection (see the module docstring).

    Args:
        box2d: (4,) the detection (x1, y1, x2, y2), pixels. alpha: observation angle,
            radians. size: (3,) (l, w, h) metres. projection: (3, 4).
        ground: the road; None: the box floats, each candidate moved up or down until its
            projection is centred vertically on the detection.
        free: (4,) bool, the detection's edges that do not bound the object (None: none).
        depths: (Z,) camera z of the candidates, metres.
        slides: sideways (and without a ground, vertical) corrections per candidate.
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
    y = ((box2d[1] + box2d[3]) / 2 - P[1, 2]) * z / P[1, 1]
    for _ in range(slides + 1):
        if ground is not None:
            y = torch.as_tensor(ground.y_at(x.numpy(), z.numpy())) - size[2] / 2
        center = torch.stack([x, y, z], dim=1)
        boxes, ahead = _projected_boxes(center, alpha, size, P)
        sides = bound[[0, 2]].to(torch.float64)
        shift = ((box2d[[0, 2]] - boxes[:, [0, 2]]) * sides).sum(dim=1) / sides.sum()
        x = x + shift * z / P[0, 0]
        if ground is None:
            y = y + ((box2d[1] + box2d[3]) - (boxes[:, 1] + boxes[:, 3])) / 2 * z / P[1, 1]
    # A free edge still says the object reaches about that far (the border or the nearer
    # object cut it there): a box short of it by more than the tolerance counts the rest.
    tolerance = FREE_EDGE_TOLERANCE * float((box2d[2:] - box2d[:2]).max())
    short = torch.cat([boxes[:, :2] - box2d[:2], box2d[2:] - boxes[:, 2:]], dim=1)
    error = torch.where(bound, (boxes - box2d) ** 2, (short - tolerance).clamp(min=0) ** 2)
    error = error.sum(dim=1)
    error = torch.where(ahead, error, math.inf)
    return center[int(error.argmin())].numpy()


@dataclasses.dataclass(frozen=True)
class RoadConfig:
    """How a frame without LiDAR or depth estimates its road from its detections
    (:func:`estimate_road`). The spreads are one standard deviation.

    Attributes:
        enabled: estimate the road; False (the default): every detection stands on the level
            road ``camera_height`` below the camera. Enabled, kitti_dev's camera-only labels
            come nearer their cars on average but its official AP falls, and the synthetic
            ones, on level roads, lose much more (docs/decisions.md).
        height_spread: prior spread of the frame's road height below the camera around
            ``camera_height``, metres (the car's load and suspension, the road's camber).
        slope_spread: prior spread of the frame's road slope along the camera's z (camera
            pitch and road grade), as a tangent: 0.02 is 1 m of height 50 m ahead. With the
            defaults (0.01 m, 0.001) the frame's plane stays level: fitted to kitti_dev's
            few cars a frame, its tilt moved nearer cars that the level road places well.
        roughness: spread of the road under one car about the frame's plane, metres (dips,
            crests and cross-fall the plane cannot follow).
        grade_spread: spread of the grade between the camera and one car, as a tangent: the
            road under a car ``z`` metres ahead may lie ``grade_spread * z`` above or below
            the plane (with the roughness, in quadrature), so a far car's own sample moves
            its road more than a near car's does (docs/decisions.md).
        size_spread: relative spread of the class's sizes about its mean: a sample's depth
            is off by this share (KITTI cars: height 1.53 +- 0.14 m, length 3.9 +- 0.4 m).
        edge_noise: spread of a detection's edges, pixels.
        outlier: residuals beyond this many spreads count less (Huber weights).
        iterations: reweighting rounds of the robust fit.
    """

    enabled: bool = False
    height_spread: float = 0.01
    slope_spread: float = 0.001
    roughness: float = 0.1
    grade_spread: float = 0.01
    size_spread: float = 0.1
    edge_noise: float = 3.0
    outlier: float = 2.5
    iterations: int = 5


def road_sample(box2d: np.ndarray, alpha: float, size: np.ndarray, projection: np.ndarray,
                free: np.ndarray | None = None) -> np.ndarray | None:
    """The road point (3,) under a box of ``size`` seen at ``alpha`` that matches the
    detection's edges at any height (:func:`place_on_ground` without a ground): the middle
    of its bottom face. None when the detection's top or bottom edge is ``free`` (then its
    height says nothing about its depth).

    Args:
        box2d: (4,) pixels. alpha: radians. size: (3,) metres. projection: (3, 4).
        free: (4,) bool edges that do not bound the object (None: none).
    """
    if free is not None and (free[1] or free[3]):
        return None
    center = place_on_ground(box2d, alpha, size, projection, None, free)
    return center + np.array([0.0, size[2] / 2, 0.0])


def road_plane(height: float, slope: float) -> GroundPlane:
    """The road ``y = height + slope * z`` in the camera frame (y down).

    >>> round(float(road_plane(1.5, 0.01).y_at(0.0, 20.0)), 6)
    1.7
    """
    normal = np.array([0.0, -1.0, slope])
    norm = float(np.linalg.norm(normal))
    return GroundPlane(normal / norm, height / norm)


def estimate_road(samples: np.ndarray, box_heights: np.ndarray, camera_height: float,
                  config: RoadConfig = RoadConfig()) -> tuple[GroundPlane, np.ndarray]:
    """The frame's road plane ``y = height + slope * z`` fitted to road samples, and how much
    higher or lower the road lies under each sample (see the module docstring).

    A sample's depth is off by a relative ``s = sqrt(size_spread^2 + 2 (edge_noise / h)^2)``
    for a detection ``h`` pixels tall, and its height by ``|y| s``, to which the road's
    own spread ``r^2 = roughness^2 + (grade_spread z)^2`` adds. Height and slope
    minimise the squared residuals in these units, Huber-weighted, plus the prior terms
    ``((height - camera_height) / height_spread)^2`` and ``(slope / slope_spread)^2``; a
    sample's own offset is its residual shrunk by ``r^2 / (r^2 + (|y| s)^2)`` (and by its
    Huber weight).

    Args:
        samples: (S, 3) road points in the camera frame, metres (:func:`road_sample`).
        box_heights: (S,) their detections' heights, pixels.
        camera_height: the prior road's height below the camera, metres.
        config: the spreads.
    Returns:
        the plane, and (S,) metres to add to its y under each sample (positive: lower).

    >>> depths, heights = (10.0, 20.0, 40.0), np.array([150.0, 75.0, 37.0])
    >>> samples = np.array([[0.0, 1.6 + 0.01 * z, z] for z in depths])  # y 1.7, 1.8, 2.0
    >>> road, offsets = estimate_road(samples, heights, 1.65)  # the plane stays level
    >>> [round(float(road.y_at(0.0, z) + o), 2) for z, o in zip(depths, offsets)]
    [1.67, 1.73, 1.88]
    >>> tilted = RoadConfig(height_spread=0.03, slope_spread=0.01, grade_spread=0.0)
    >>> road, _ = estimate_road(samples, heights, 1.65, tilted)
    >>> [round(float(road.y_at(0.0, z)), 2) for z in (0.0, 40.0)]
    [1.65, 1.88]
    """
    samples = np.asarray(samples, dtype=np.float64).reshape(-1, 3)
    y, z = samples[:, 1], samples[:, 2]
    relative = np.sqrt(config.size_spread ** 2
                       + 2 * (config.edge_noise / np.asarray(box_heights, dtype=np.float64)) ** 2)
    noise = np.abs(y) * relative
    rough = config.roughness ** 2 + (config.grade_spread * z) ** 2
    spread = np.sqrt(noise ** 2 + rough)
    prior = np.array([[1 / config.height_spread, 0.0], [0.0, 1 / config.slope_spread]])
    target = np.array([camera_height / config.height_spread, 0.0])
    weight = np.ones(len(samples))
    height, slope = float(camera_height), 0.0
    for _ in range(config.iterations if len(samples) else 0):
        scale = np.sqrt(weight) / spread
        design = np.concatenate([np.stack([np.ones_like(z), z], axis=1) * scale[:, None], prior])
        height, slope = np.linalg.lstsq(design, np.concatenate([y * scale, target]),
                                        rcond=None)[0]
        residual = np.abs(y - height - slope * z) / spread
        weight = np.minimum(1.0, config.outlier / np.maximum(residual, 1e-12))
    offsets = (rough / spread ** 2 * weight) * (y - height - slope * z)
    return road_plane(float(height), float(slope)), offsets


def detection_grounds(boxes: np.ndarray, alphas: np.ndarray, sizes: np.ndarray,
                      projection: np.ndarray, free: np.ndarray, camera_height: float,
                      config: RoadConfig = RoadConfig()) -> list[GroundPlane]:
    """The road under each of a frame's detections, estimated from all of them
    (:func:`road_sample`, :func:`estimate_road`); each detection's ground is the frame's
    plane moved by its own sample's offset, the plane itself where it has none.

    Args:
        boxes: (D, 4) pixels. alphas: (D,) observation angles, radians. sizes: (D, 3) the
            classes' mean sizes, metres. projection: (3, 4). free: (D, 4) bool edges that do
            not bound their objects. camera_height: the prior road's height, metres.
        config: the road's settings; disabled: the level road for every detection.
    Returns:
        D planes.
    """
    if not config.enabled:
        return [calibration_ground(camera_height)] * len(boxes)
    samples = [road_sample(b, float(a), s, projection, f)
               for b, a, s, f in zip(boxes, alphas, sizes, free, strict=True)]
    used = [d for d, sample in enumerate(samples) if sample is not None]
    road, offsets = estimate_road(np.array([samples[d] for d in used]),
                                  np.array([boxes[d][3] - boxes[d][1] for d in used]),
                                  camera_height, config)
    shift = dict(zip(used, offsets, strict=True))
    return [GroundPlane(road.normal, road.offset - float(road.normal[1] * shift.get(d, 0.0)))
            for d in range(len(boxes))]


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
