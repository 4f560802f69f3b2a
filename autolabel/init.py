"""Initial pose and size hypotheses from LiDAR (or depth) points, or from the 2D box alone.

This is the classical baseline labeler and the fitter's initialisation; the point geometry it
uses lives in :mod:`autolabel.lidar`. For one frame:

1. the ground plane is fitted once on all points below the camera (seeded RANSAC,
   :mod:`autolabel.lidar.ground`);
2. per detection, the points in the box's frustum that are not ground are clustered
   (DBSCAN, :func:`autolabel.lidar.clusters.dbscan`) and scored against the box: horizontal
   coverage and the share of the box's height covered, at a depth that agrees with the box
   height; with an instance mask, every cluster that projects mostly inside the mask is the
   object. The detections of a frame then share the clusters out, no point to two objects
   (:mod:`autolabel.lidar.clusters`);
3. the yaw (modulo pi/2) comes from an L-shape fit of the cluster's bird's-eye view
   (:mod:`autolabel.lidar.lshape`);
4. the box is the cluster's extent along the fitted axes, completed with the class's mean
   size where the cluster is smaller (the faces seen by the sensor stay put and the box
   grows away from it), standing on the ground around the object
   (:func:`autolabel.lidar.ground.local_ground`). Which axis is the length is decided by
   how well the projected 3D box fills the 2D box.

A dense depth map (e.g. from a monocular depth network) stands in for LiDAR: the ground plane
is fitted to the whole map back-projected (:func:`depth_to_points`), and each detection's
points are its own mask pixels (or box pixels without a mask) back-projected, subsampled to
a pixel budget; steps 2 to 4 then run unchanged, with the camera as the sensor.

Without points (or with too few in the frustum) the hypothesis comes from the 2D box alone:
the distance at which a box of the class's mean size projects to the detected height, on the
ray through the box centre, heading along that ray. Such hypotheses are marked weak.

The L-shape fit cannot tell front from back: the heading is chosen pointing away from the
sensor (the most common case on the road), and :func:`yaw_hypotheses` gives the fitter the
alternatives ``yaw + k pi/2``, which include the flipped heading ``yaw + pi``.

Bird's-eye-view (BEV) coordinates are the camera frame's (x, z) plane; a BEV direction at
chart angle ``theta`` is ``(cos theta, sin theta)`` and the KITTI yaw of a forward axis along
it is ``-theta`` (forward is ``(cos yaw, -sin yaw)`` in that chart, see ``geometry``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from autolabel.classes import DEFAULT_SIZE_LOG_STD, mean_size, size_log_std
from autolabel.geometry import (
    backproject_pixels,
    box_corners,
    image_box,
    points_in_box,
    wrap_angle,
    yaw_to_rotation,
)
from autolabel.io.detections import Detection
from autolabel.io.kitti import Calib
from autolabel.label import ObjectLabel
from autolabel.lidar import ground
from autolabel.lidar.clusters import (
    ClusterCandidate,
    ProjectedPoints,
    assign_clusters,
    cluster_candidates,
    trim_cluster,
)
from autolabel.lidar.ground import GroundPlane, local_ground
from autolabel.lidar.lshape import lshape_angle, visible_contour

SOURCES = ("lidar", "depth", "box")
# Wide clusters (InitConfig.cluster_eps_per_metre) may span this many footprint diagonals of
# the class's mean size, as trim_cluster allows before it cuts.
WIDE_CLUSTER_REACH = 1.2


@dataclasses.dataclass(frozen=True)
class InitConfig:
    """Knobs of the initialisation, with defaults tuned on KITTI (64-beam LiDAR).

    Attributes:
        ground_threshold: RANSAC inlier distance of the ground plane, metres.
        ground_iterations: RANSAC iterations.
        ground_max_tilt: the largest angle (radians) between the plane normal and camera -y
            for a plane to count as ground; steeper planes (walls) are discarded.
        ground_range: only points within this horizontal distance (metres) fit the plane.
        ground_clearance: frustum points less than this high above the plane are ground.
        cluster_eps: DBSCAN neighbourhood radius, metres.
        cluster_eps_per_metre: a second DBSCAN radius, this many metres per metre of the
            box-only depth (used where it is the larger), whose clusters of car size compete
            too: far cars split at ``cluster_eps`` (kitti_dev, docs/decisions.md).
        cluster_min_points: DBSCAN core-point count.
        mask_share: with an instance mask, the clusters with at least this share of their
            points inside it make up the object (:func:`select_cluster`).
        min_object_points: fewer cluster points than this fall back to the box-only hypothesis.
        depth_tolerance: log-depth standard deviation with which a cluster's depth is compared
            to the depth the box height implies.
        contour_resolution: bearing bin of the visible outline the L-shape is fitted to,
            radians.
        yaw_step: L-shape search step over [0, pi/2), radians.
        criterion: the rectangle-fit criterion of Zhang et al.: 'variance' (default; the
            most robust on kitti_dev), 'closeness' or 'area'.
        closeness_floor: the closeness criterion's minimum distance d0, metres.
        depth_pixels: with a depth map, at most about this many pixels of a detection (its
            mask, else its box) are back-projected (every k-th row and column).
        depth_ground_pixels: at most about this many pixels of the whole depth map are
            back-projected to fit the ground plane.
        seed: seeds the ground plane's RANSAC.
        camera_height: metres from the camera down to the road, the ground of detections
            in frames without LiDAR or depth (:func:`autolabel.camera_only.calibration_ground`;
            KITTI's camera is mounted 1.65 m above the road).
        class_sizes: mean (length, width, height) per class as ``((name, (l, w, h)), ...)``;
            None for KITTI's (:data:`CLASS_MEAN_SIZE`).
        class_spreads: log-size spread (length, width, height) per class, in the same form;
            None for KITTI's (:data:`CLASS_SIZE_LOG_STD`), except that a class whose mean
            ``class_sizes`` gives (another data set's) gets the generic spread.
    """

    ground_threshold: float = 0.15
    ground_iterations: int = 200
    ground_max_tilt: float = math.radians(15.0)
    ground_range: float = 40.0
    ground_clearance: float = 0.2
    cluster_eps: float = 0.5
    cluster_eps_per_metre: float = 0.025
    cluster_min_points: int = 4
    mask_share: float = 0.8
    min_object_points: int = 4
    depth_tolerance: float = 0.35
    contour_resolution: float = math.radians(0.25)
    yaw_step: float = math.radians(0.5)
    criterion: str = "variance"
    closeness_floor: float = 0.01
    depth_pixels: int = 4000
    depth_ground_pixels: int = 30000
    seed: int = 0
    camera_height: float = 1.65
    class_sizes: tuple[tuple[str, tuple[float, float, float]], ...] | None = None
    class_spreads: tuple[tuple[str, tuple[float, float, float]], ...] | None = None

    def mean_size(self, category: str) -> np.ndarray:
        """The class's mean (l, w, h) under these settings (see :func:`mean_size`)."""
        return mean_size(category, None if self.class_sizes is None else dict(self.class_sizes))

    def size_log_std(self, category: str) -> np.ndarray:
        """The class's log-size spread (l, w, h) under these settings (see
        :func:`size_log_std`)."""
        if self.class_spreads is not None:
            return size_log_std(category, dict(self.class_spreads))
        if any(name.lower() == category.lower() for name, _ in self.class_sizes or ()):
            return np.array(DEFAULT_SIZE_LOG_STD)
        return size_log_std(category)


@dataclasses.dataclass(frozen=True, eq=False)
class Hypothesis:
    """One initial 3D box for a detection.

    Attributes:
        center: (3,) box centre in the camera frame, metres.
        yaw: KITTI ``rotation_y`` in radians.
        size: (3,) (length, width, height) in metres.
        points: (M, 3) the object's points it was made from (empty for the box-only one).
        source: 'lidar', 'depth' or 'box' (2D box and class statistics only).
        ground: the ground under the object (:func:`local_ground`), None when unknown.
    """

    center: np.ndarray
    yaw: float
    size: np.ndarray
    points: np.ndarray
    source: str
    ground: GroundPlane | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")

    @property
    def weak(self) -> bool:
        """True for a hypothesis from the 2D box alone (no 3D observation)."""
        return self.source == "box"

    def to_label(self, category: str, box2d: np.ndarray, score: float) -> ObjectLabel:
        """The hypothesis as an upright :class:`ObjectLabel`."""
        return ObjectLabel.upright(category, box2d, self.center, self.yaw, self.size,
                                   score=score)


def yaw_hypotheses(hypothesis: Hypothesis) -> list[Hypothesis]:
    """The four boxes ``yaw + k pi/2`` (k = 0..3) with the same footprint.

    An L-shape fit knows its axes only modulo pi/2 and the heading not at all; the fitter
    starts from all four. For odd k length and width are swapped, so the footprint is kept.
    k = 2 is the heading flip ``yaw + pi``.
    """
    result = []
    for k in range(4):
        size = hypothesis.size[[1, 0, 2]] if k % 2 else hypothesis.size
        yaw = float(wrap_angle(torch.tensor(hypothesis.yaw + k * math.pi / 2,
                                            dtype=torch.float64)))
        result.append(dataclasses.replace(hypothesis, yaw=yaw, size=size.copy()))
    return result


# --------------------------------------------------------------------------------------------
# Ground and object points
# --------------------------------------------------------------------------------------------

def depth_to_points(depth: np.ndarray, P2: np.ndarray, mask: np.ndarray | None = None,
                    stride: int = 1) -> np.ndarray:
    """Camera-frame points of a depth map's pixels (pixel centres at integer coordinates).

    Args:
        depth: (H, W) camera-frame z in metres; 0 or a non-finite value means no depth.
        P2: (3, 4) the camera's projection matrix (rectified frame to pixels).
        mask: (H, W) bool, only these pixels; None for all.
        stride: keep every ``stride``-th row and column, starting with pixel (0, 0).
    Returns:
        (N, 3) float64 points of the kept pixels that have a depth, in row-major pixel order.

    >>> P = np.array([[100.0, 0, 2, 0], [0, 100, 1, 0], [0, 0, 1, 0]])
    >>> depth = np.zeros((3, 5))
    >>> depth[0, 4], depth[1, 2] = 5.0, 10.0
    >>> depth_to_points(depth, P).round(6).tolist()
    [[0.1, -0.05, 5.0], [0.0, 0.0, 10.0]]
    >>> depth_to_points(depth, P, stride=2).round(6).tolist()
    [[0.1, -0.05, 5.0]]
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    keep = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        if np.shape(mask) != depth.shape:
            raise ValueError(f"mask has shape {np.shape(mask)}, the depth map {depth.shape}")
        keep &= np.asarray(mask, dtype=bool)
    grid = np.zeros_like(keep)
    grid[::stride, ::stride] = True
    rows, cols = np.nonzero(keep & grid)
    pixels = torch.as_tensor(np.stack([cols, rows], axis=1), dtype=torch.float64)
    points = backproject_pixels(pixels, torch.as_tensor(depth[rows, cols]),
                                torch.as_tensor(np.asarray(P2, dtype=np.float64)))
    return points.numpy()


def _stride_for(pixels: int, budget: int) -> int:
    """The grid stride that keeps about ``budget`` of ``pixels`` pixels (at least 1).

    >>> _stride_for(40000, 4000), _stride_for(100, 4000)
    (4, 1)
    """
    return max(1, math.ceil(math.sqrt(pixels / max(budget, 1))))


def fit_ground_plane(points: np.ndarray, config: InitConfig = InitConfig()) -> GroundPlane | None:
    """The frame's ground plane (:func:`autolabel.lidar.ground.fit_ground_plane`) with the
    settings of ``config``."""
    return ground.fit_ground_plane(points, threshold=config.ground_threshold,
                                   iterations=config.ground_iterations,
                                   max_tilt=config.ground_max_tilt,
                                   max_range=config.ground_range, seed=config.seed)


def _candidates(points: np.ndarray, indices: np.ndarray, seen: ProjectedPoints,
                box2d: np.ndarray, expected_depth: float, config: InitConfig,
                mask: np.ndarray | None, truncated: bool = False,
                size: np.ndarray | None = None,
                context: np.ndarray | None = None) -> list[ClusterCandidate]:
    """:func:`autolabel.lidar.clusters.cluster_candidates` with the settings of ``config``;
    the wider radius only with the class's mean ``size`` (l, w, h), which bounds its
    clusters; ``context`` as there."""
    wide_eps = 0.0 if size is None else config.cluster_eps_per_metre * expected_depth
    reach = 0.0 if size is None else WIDE_CLUSTER_REACH * float(np.hypot(size[0], size[1]))
    return cluster_candidates(points, indices, seen, box2d, expected_depth,
                              eps=config.cluster_eps, wide_eps=wide_eps, wide_reach=reach,
                              min_points=config.cluster_min_points, mask_share=config.mask_share,
                              depth_tolerance=config.depth_tolerance, mask=mask,
                              truncated=truncated, context=context)


def select_cluster(points: np.ndarray, projection: np.ndarray, box2d: np.ndarray,
                   expected_depth: float, config: InitConfig = InitConfig(),
                   mask: np.ndarray | None = None) -> np.ndarray:
    """The object's points among a frustum's non-ground points: the best of
    :func:`cluster_candidates` for a detection alone.

    Args:
        points: (N, 3) camera frame, the frustum's non-ground points. projection: (3, 4).
        box2d: (4,) pixels. expected_depth: metres. mask: (H, W) bool, or None.
    Returns:
        (M, 3) the object's points; (0, 3) when DBSCAN finds no cluster.
    """
    candidates = _candidates(points, np.arange(len(points)),
                             ProjectedPoints.of(points, projection), box2d, expected_depth,
                             config, mask)
    return points[candidates[0].indices] if candidates else np.zeros((0, 3))


# --------------------------------------------------------------------------------------------
# Boxes from points or from the 2D box
# --------------------------------------------------------------------------------------------

def _iou_2d(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (4,) x1, y1, x2, y2 boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _box2d_of(center: np.ndarray, yaw: float, size: np.ndarray, projection: np.ndarray,
              image_size: tuple[int, int] | None) -> np.ndarray:
    """(4,) image box of a 3D box's corners, clipped to the image when its size is given;
    zeros when it reaches behind the camera."""
    corners = box_corners(torch.as_tensor(center), yaw_to_rotation(torch.tensor(yaw,
                          dtype=torch.float64)), torch.as_tensor(size))
    box = image_box(corners, torch.as_tensor(projection), image_size)
    return np.zeros(4) if box is None else box.numpy()


def _complete(low: float, high: float, sensor: float, size: float) -> tuple[float, float]:
    """Extend the visible extent [low, high] along one axis to at least ``size``.

    The face nearer to the sensor stays; the box grows away from it. When the sensor lies
    between the two faces along this axis, both ends grow equally.
    """
    grow = max(size - (high - low), 0.0)
    if sensor <= low:
        return low, high + grow
    if sensor >= high:
        return low - grow, high
    return low - grow / 2, high + grow / 2


def box_from_cluster(points: np.ndarray, category: str, projection: np.ndarray,
                     box2d: np.ndarray, plane: GroundPlane | None,
                     sensor: np.ndarray | None = None,
                     image_size: tuple[int, int] | None = None,
                     config: InitConfig = InitConfig(), source: str = "lidar") -> Hypothesis:
    """A 3D box from an object's points: L-shape yaw, extent completed by class statistics.

    Args:
        points: (M, 3) the object's points in the camera frame, M >= 2.
        category: class name with entries in :data:`CLASS_MEAN_SIZE`.
        projection: (3, 4) camera matrix. box2d: (4,) the detection, pixels.
        plane: the frame's ground plane; the box's bottom is put on it. Without one the
            lowest point is the bottom.
        sensor: (3,) the sensor's position in the camera frame (the box grows away from it);
            None for the camera's origin.
        image_size: (height, width) pixels, to clip projected boxes like the detection is.
        source: 'lidar' or 'depth', recorded in the hypothesis.
    Returns:
        The hypothesis, heading pointing away from the sensor.
    """
    mean = config.mean_size(category)
    sensor = np.zeros(3) if sensor is None else np.asarray(sensor, dtype=np.float64)
    bev = points[:, [0, 2]]
    contour = visible_contour(bev, sensor[[0, 2]], config.contour_resolution)
    theta = lshape_angle(contour, config.yaw_step, config.criterion, config.closeness_floor)
    axes = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    projected = bev @ axes.T  # (M, 2) coordinates along the two axes
    origin = axes @ sensor[[0, 2]]
    low, high = projected.min(axis=0), projected.max(axis=0)
    top = float(np.percentile(points[:, 1], 1.0))
    candidates = []
    for length_axis in (0, 1):
        sizes = (mean[0], mean[1]) if length_axis == 0 else (mean[1], mean[0])
        bounds = [_complete(low[i], high[i], origin[i], sizes[i]) for i in range(2)]
        middle = np.array([(lo + hi) / 2 for lo, hi in bounds]) @ axes  # back to (x, z)
        extent = np.array([hi - lo for lo, hi in bounds])
        bottom = (float(plane.y_at(middle[0], middle[1])) if plane is not None
                  else float(points[:, 1].max()))
        seen = bottom - top  # a sparse or partly hidden top under-estimates the height
        height = float(mean[2] if seen < 0.9 * mean[2] else min(seen, 1.5 * mean[2]))
        center = np.array([middle[0], bottom - height / 2, middle[1]])
        direction = axes[length_axis]
        if direction @ (middle - sensor[[0, 2]]) < 0:
            direction = -direction
        yaw = math.atan2(-direction[1], direction[0])
        size = np.array([extent[length_axis], extent[1 - length_axis], height])
        excess = np.maximum(extent - 1.2 * np.array(sizes), 0.0) / np.array(sizes)
        fit = _iou_2d(_box2d_of(center, yaw, size, projection, image_size), box2d)
        candidates.append((fit - float(excess.sum()), center, yaw, size))
    _, center, yaw, size = max(candidates, key=lambda item: item[0])
    return Hypothesis(center, yaw, size, points, source)


def box_only_hypothesis(box2d: np.ndarray, category: str, projection: np.ndarray,
                        iterations: int = 5, config: InitConfig = InitConfig()) -> Hypothesis:
    """A weak hypothesis from the 2D box and the class's mean size alone.

    The box of mean size sits on the ray through the 2D box centre, heading along that ray
    (seen from behind), at the depth where its projected height equals the detected height:
    starting from ``f_y * h / box height``, the depth is rescaled by the ratio of projected
    to detected height ``iterations`` times.

    Args:
        box2d: (4,) pixels. category: class name. projection: (3, 4).
        config: supplies the class statistics.
    Returns:
        A hypothesis with source 'box' and no points.
    """
    size = config.mean_size(category)
    box2d = np.asarray(box2d, dtype=np.float64)
    projection = np.asarray(projection, dtype=np.float64)
    height_px = max(box2d[3] - box2d[1], 1.0)
    middle = torch.tensor([[(box2d[0] + box2d[2]) / 2, (box2d[1] + box2d[3]) / 2]],
                          dtype=torch.float64)
    depth = projection[1, 1] * size[2] / height_px
    center, yaw = np.zeros(3), 0.0
    for _ in range(iterations + 1):
        center = backproject_pixels(middle, torch.tensor([depth], dtype=torch.float64),
                                    torch.as_tensor(projection))[0].numpy()
        yaw = math.atan2(-center[2], center[0])
        projected = _box2d_of(center, yaw, size, projection, None)
        if projected[3] <= projected[1]:
            break
        depth *= (projected[3] - projected[1]) / height_px
    return Hypothesis(center, yaw, size, np.zeros((0, 3)), "box")


# --------------------------------------------------------------------------------------------
# Frame level
# --------------------------------------------------------------------------------------------

# Pixels within which a box edge counts as cut by the image border: detectors (and the
# benchmarks' jittered ground truth) put such edges a few pixels inside the image.
BORDER_TOLERANCE = 5.0


def border_edges(box2d: np.ndarray, image_size: tuple[int, int] | None,
                 tolerance: float = BORDER_TOLERANCE) -> np.ndarray:
    """Which edges (x1, y1, x2, y2) of detection boxes lie at the image border.

    Args:
        box2d: (..., 4) pixels. image_size: (height, width), or None (no edge is cut).
        tolerance: pixels.
    Returns:
        (..., 4) bool.

    >>> border_edges(np.array([3.0, 50.0, 90.0, 372.0]), (375, 1242)).tolist()
    [True, False, False, True]
    """
    box2d = np.asarray(box2d, dtype=np.float64)
    if image_size is None:
        return np.zeros(box2d.shape, dtype=bool)
    height, width = image_size
    # The last pixel column is width - 1, so a box reaching it ends at about width - 1.
    return np.stack([box2d[..., 0] <= tolerance, box2d[..., 1] <= tolerance,
                     box2d[..., 2] >= width - 1 - tolerance,
                     box2d[..., 3] >= height - 1 - tolerance], axis=-1)


def _detection_candidates(points: np.ndarray, detection: Detection, projection: np.ndarray,
                          plane: GroundPlane | None, image_size: tuple[int, int] | None,
                          config: InitConfig, mask: np.ndarray | None,
                          seen: ProjectedPoints | None = None
                          ) -> tuple[Hypothesis, list[ClusterCandidate]]:
    """The box-only fallback of a detection and its scored clusters among ``points``
    (``seen``: the points already projected through ``projection``, else projected here)."""
    fallback = box_only_hypothesis(detection.box2d, detection.category, projection,
                                   config=config)
    seen = ProjectedPoints.of(points, projection) if seen is None else seen
    index, context = (_above_ground(points, seen, box, plane, config)
                      for box in (detection.box2d, _widened(detection.box2d, image_size)))
    return fallback, _candidates(points, index, seen, detection.box2d,
                                 float(fallback.center[2]), config, mask,
                                 bool(border_edges(detection.box2d, image_size).any()),
                                 config.mean_size(detection.category), context)


def _above_ground(points: np.ndarray, seen: ProjectedPoints, box2d: np.ndarray,
                  plane: GroundPlane | None, config: InitConfig) -> np.ndarray:
    """Indices of the points in a box's frustum that stand clear of the ground plane."""
    index = np.flatnonzero(seen.in_box(box2d))
    if plane is None:
        return index
    return index[plane.height(points[index]) > config.ground_clearance]


def _widened(box2d: np.ndarray, image_size: tuple[int, int] | None) -> np.ndarray:
    """The box with half its width added on either side, within the image: the frustum
    where a cluster shows whether it continues past the box (nothing continues past the
    image's own border that the camera saw)."""
    x1, y1, x2, y2 = box2d
    half = (x2 - x1) / 2
    left, right = x1 - half, x2 + half
    if image_size is not None:
        left, right = max(left, 0.0), min(right, float(image_size[1]))
    return np.array([left, y1, right, y2])


def _hypothesis_from(cluster: np.ndarray, fallback: Hypothesis, detection: Detection,
                     projection: np.ndarray, plane: GroundPlane | None,
                     sensor: np.ndarray | None, image_size: tuple[int, int] | None,
                     config: InitConfig, source: str,
                     frame_points: np.ndarray | None = None) -> Hypothesis:
    """:func:`box_from_cluster` of the trimmed cluster standing on the :func:`local_ground`
    of those ``frame_points`` that lie outside its first box (the frame's plane without
    them), or ``fallback`` when fewer than ``config.min_object_points`` remain."""
    cluster = trim_cluster(cluster, config.mean_size(detection.category), sensor)
    if len(cluster) < config.min_object_points:
        return dataclasses.replace(fallback, ground=plane)
    hypothesis = box_from_cluster(cluster, detection.category, projection, detection.box2d,
                                  plane, sensor, image_size, config, source)
    if plane is None or frame_points is None:
        return dataclasses.replace(hypothesis, ground=plane)
    around = ~points_in_box(torch.as_tensor(frame_points), torch.as_tensor(hypothesis.center),
                            yaw_to_rotation(torch.tensor(hypothesis.yaw, dtype=torch.float64)),
                            torch.as_tensor(hypothesis.size + 0.5)).numpy()
    plane = local_ground(frame_points[around], plane, hypothesis.center)
    hypothesis = box_from_cluster(cluster, detection.category, projection, detection.box2d,
                                  plane, sensor, image_size, config, source)
    return dataclasses.replace(hypothesis, ground=plane)


def object_hypothesis(points: np.ndarray, category: str, projection: np.ndarray,
                      box2d: np.ndarray, plane: GroundPlane | None,
                      sensor: np.ndarray | None = None,
                      image_size: tuple[int, int] | None = None,
                      config: InitConfig = InitConfig(), source: str = "lidar",
                      mask: np.ndarray | None = None) -> Hypothesis:
    """The best single hypothesis for one detection alone from ``points``.

    Args:
        points: (N, 3) points in the camera frame (LiDAR, or depth back-projected).
        category, projection, box2d, plane, sensor, image_size, source: as in
            :func:`box_from_cluster`.
        mask: the detection's (H, W) instance mask, or None; see :func:`cluster_candidates`
            (points back-projected from the mask itself must not pass it: they all lie
            inside it, background at its edges too).
    Returns:
        A points-based hypothesis, or the box-only one when fewer than
        ``config.min_object_points`` object points are found.
    """
    detection = Detection(np.asarray(box2d, dtype=np.float64), category, 1.0)
    fallback, candidates = _detection_candidates(points, detection, projection, plane,
                                                 image_size, config, mask)
    cluster = points[candidates[0].indices] if candidates else np.zeros((0, 3))
    return _hypothesis_from(cluster, fallback, detection, projection, plane, sensor,
                            image_size, config, source)


def frame_hypotheses(points: np.ndarray | None, calib: Calib, detections: Sequence[Detection],
                     image_size: tuple[int, int] | None = None,
                     config: InitConfig = InitConfig(), depth: np.ndarray | None = None
                     ) -> tuple[list[Hypothesis], GroundPlane | None]:
    """One hypothesis per detection, and the frame's ground plane.

    With a depth map instead of LiDAR, the ground plane is fitted to the back-projected map
    and each detection's points are its own pixels (mask, else box) back-projected: points
    of other objects never enter its frustum. The sensor is then the camera's centre. With
    LiDAR, the detections share the frame's points: :func:`assign_clusters` gives every
    point to at most one object, so a hidden car does not take its occluder's cluster.

    Args:
        points: (N, 3) LiDAR points in the rectified camera frame, or None.
        calib: the frame's calibration (P2; the LiDAR origin when it has Tr_velo_to_cam).
        detections: the frame's detections, classes with entries in :data:`CLASS_MEAN_SIZE`.
        image_size: (height, width) pixels of the image, or None (with depth: its size).
        depth: (H, W) camera-frame z in metres (0: no value), used when ``points`` is None.
    Returns:
        hypotheses in detection order, and the ground plane (None without points or depth,
        or when no level plane is found). Without either, every hypothesis is box-only.
    Raises:
        ValueError: when both ``points`` and ``depth`` are given.
    """
    if points is not None and depth is not None:
        raise ValueError("give LiDAR points or a depth map, not both")
    if depth is not None:
        return _depth_hypotheses(np.asarray(depth, dtype=np.float64), calib, detections,
                                 image_size, config)
    if points is None:
        plane, points = None, np.zeros((0, 3))
    else:
        points = np.asarray(points, dtype=np.float64)
        plane = fit_ground_plane(points, config)
    sensor = calib.lidar_origin()
    seen = ProjectedPoints.of(points, calib.P2)
    scored = [_detection_candidates(points, d, calib.P2, plane, image_size, config, d.mask,
                                    seen)
              for d in detections]
    chosen = assign_clusters([candidates for _, candidates in scored])
    hypotheses = [_hypothesis_from(points[indices], fallback, d, calib.P2, plane, sensor,
                                   image_size, config, "lidar", points)
                  for (fallback, _), indices, d in zip(scored, chosen, detections, strict=True)]
    return hypotheses, plane


def _depth_hypotheses(depth: np.ndarray, calib: Calib, detections: Sequence[Detection],
                      image_size: tuple[int, int] | None, config: InitConfig
                      ) -> tuple[list[Hypothesis], GroundPlane | None]:
    """:func:`frame_hypotheses` from a depth map (see there)."""
    projection = np.asarray(calib.P2, dtype=np.float64)
    image_size = depth.shape if image_size is None else image_size
    valid = np.isfinite(depth) & (depth > 0)
    plane = fit_ground_plane(depth_to_points(
        depth, projection, stride=_stride_for(int(valid.sum()), config.depth_ground_pixels)),
        config)
    camera = -np.linalg.solve(projection[:, :3], projection[:, 3])
    rows, cols = np.indices(depth.shape)
    hypotheses = []
    for detection in detections:
        if detection.mask is not None:
            region = detection.mask & valid
        else:
            x1, y1, x2, y2 = detection.box2d
            region = valid & (cols >= x1) & (cols <= x2) & (rows >= y1) & (rows <= y2)
        stride = _stride_for(int(region.sum()), config.depth_pixels)
        hypotheses.append(object_hypothesis(
            depth_to_points(depth, projection, region, stride), detection.category, projection,
            detection.box2d, plane, camera, image_size, config, source="depth"))
    return hypotheses, plane


def label_frame_lshape(points: np.ndarray | None, calib: Calib,
                       detections: Sequence[Detection],
                       image_size: tuple[int, int] | None = None,
                       config: InitConfig = InitConfig(),
                       depth: np.ndarray | None = None) -> list[ObjectLabel]:
    """The classical baseline: one L-shape label per detection, scored by the detection.

    Args:
        points: (N, 3) LiDAR points in the rectified camera frame, or None.
        calib, detections, image_size, config, depth: as in :func:`frame_hypotheses`.
    Returns:
        :func:`hypothesis_labels` of the frame's hypotheses.
    """
    hypotheses, _ = frame_hypotheses(points, calib, detections, image_size, config, depth)
    image_size = depth.shape if image_size is None and depth is not None else image_size
    return hypothesis_labels(hypotheses, detections, calib.P2, image_size)


def hypothesis_labels(hypotheses: Sequence[Hypothesis], detections: Sequence[Detection],
                      projection: np.ndarray, image_size: tuple[int, int] | None
                      ) -> list[ObjectLabel]:
    """One label per hypothesis, in order, with its detection's class and score and the
    image box of its 3D box (:meth:`ObjectLabel.with_image_box`)."""
    return [h.to_label(d.category, d.box2d, d.score).with_image_box(projection, image_size)
            for h, d in zip(hypotheses, detections, strict=True)]
