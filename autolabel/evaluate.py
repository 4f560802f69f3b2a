"""KITTI 3D object evaluation, as the official devkit computes it: BEV and 3D AP|R40 and AP|R11.

Boxes are compared as upright boxes with a yaw about the camera's y axis, as KITTI does: the
bird's-eye view (BEV) is the camera x-z plane, where a box is a rotated rectangle, and the 3D
overlap is the BEV intersection area times the overlap of the vertical extents. A label with
pitch or roll is evaluated as the upright box with the heading of its forward axis
(:func:`autolabel.geometry.rotation_to_yaw`); exact IoU of generally rotated boxes is not
implemented because KITTI ground truth has yaw only.

Average precision reproduces the official KITTI object devkit (``cpp/evaluate_object.cpp``,
2019 version with 41 sampled recall points; OpenPCDet's ``kitti_object_eval_python`` computes
the same), checked against the devkit's numbers in ``tests/test_evaluate_official.py``:

* difficulty: a ground truth of the class is *ignored* at a level when its 2D box is at most
  40 / 25 / 25 px tall (``<=``: a car exactly 25.00 px tall is ignored everywhere), its
  occlusion above 0 / 1 / 2 or its truncation above 0.15 / 0.3 / 0.5 (easy / moderate /
  hard); the neighbouring class (``Van`` for ``Car``, ``Person_sitting`` for ``Pedestrian``)
  is always ignored. Ignored ground truths may take a detection but count neither as found
  nor as missed; other classes and ``DontCare`` take part in nothing.
* detections: one lower than the level's minimum height (``<``) is ignored whatever its
  class (neither true nor false positive, but it can take a ground truth, which then counts
  neither as found nor as missed); otherwise one of another class is left out.
* matching (per frame, ground truths in file order): first, over all detections, each ground
  truth takes the free detection of highest score with ``IoU > threshold`` (strict); the
  scores of the true positives give at most 41 score thresholds, kept where the recall is
  nearest to the next of the recall points 0, 1/40, ..., 1 (:func:`sample_thresholds`). Then,
  at each score threshold, each ground truth takes the free non-ignored detection of highest
  IoU, or else the first ignored (too low) one; unmatched valid ground truths are misses and
  free non-ignored detections false positives.
* precision at each threshold is TP / (TP + FP), replaced by the best precision at any later
  threshold; the 41 entries (0 beyond the number of thresholds) give AP|R40, the mean of
  entries 1..40, and AP|R11, the mean of entries 0, 4, ..., 40. With at most 40 valid
  ground truths there are at most 40 thresholds, so AP is capped: a perfect prediction of
  n <= 40 objects gets (n - 1) / 40 at R40.
* IoU thresholds: 0.7 and 0.5 for cars (and any class the devkit does not know), 0.5 and 0.25
  for ``Pedestrian``, ``Person_sitting`` and ``Cyclist`` (the second as in OpenPCDet).
* ``DontCare`` regions: the devkit's stuff-area rule compares them by the metric's own
  overlap, which for BEV and 3D never fires (their 3D fields are placeholders far away), so
  they are not used.

Where the devkit has no answer: a level without valid ground truth has AP NaN (``null`` in
JSON; the devkit would report 0), a threshold with neither true nor false positives has
precision 0 (the devkit divides 0 by 0), predictions without a score (ground-truth files used
as predictions) have score 1.0 (the devkit refuses such files), and classes are compared
case-insensitively as in the devkit.

Pose errors of matched pairs are medians over the true positives of the devkit's matching at
BEV IoU > 0.5, the *hard* level and no score threshold: centre distance in metres, absolute
wrapped yaw difference in degrees, and absolute length, width and height differences in metres.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

from autolabel.geometry import box_corners, rotation_to_yaw, wrap_angle, yaw_to_rotation
from autolabel.label import ObjectLabel

DIFFICULTIES = ("easy", "moderate", "hard")
MIN_HEIGHT = (40.0, 25.0, 25.0)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
METRICS = ("bev", "3d")
# The devkit samples precision at 41 recall points 0, 1/40, ..., 1.
SAMPLE_POINTS = 41
RECALL_POSITIONS = (40, 11)
# Which of the 41 entries each AP averages: recall 1/40 .. 40/40, and 0, 0.1, ..., 1.
_RECALL_ENTRIES = {40: slice(1, None), 11: slice(None, None, 4)}
ERROR_MATCH_IOU = 0.5

_VEHICLE_IOU_THRESHOLDS = (0.7, 0.5)
_SMALL_OBJECT_IOU_THRESHOLDS = (0.5, 0.25)
_SMALL_OBJECT_CLASSES = frozenset({"pedestrian", "person_sitting", "cyclist"})
_NEIGHBOUR_CLASS = {"car": "van", "pedestrian": "person_sitting"}
# A convex quadrilateral clipped by the four edges of another has at most 8 vertices.
_MAX_VERTICES = 8


# --------------------------------------------------------------------------------------------
# Oriented-box IoU
# --------------------------------------------------------------------------------------------

def labels_to_boxes(labels: Sequence[ObjectLabel]) -> Tensor:
    """Upright boxes of labels as rows ``(x, y, z, l, w, h, yaw)``.

    Returns:
        (N, 7) float64: centre in the camera frame (metres), size (length, width, height) and
        KITTI yaw ``rotation_y`` (radians) of the forward axis.
    """
    if not labels:
        return torch.zeros((0, 7), dtype=torch.float64)
    center = torch.as_tensor(np.stack([label.center for label in labels]), dtype=torch.float64)
    size = torch.as_tensor(np.stack([label.size for label in labels]), dtype=torch.float64)
    rotation = torch.as_tensor(np.stack([label.rotation for label in labels]),
                               dtype=torch.float64)
    return torch.cat([center, size, rotation_to_yaw(rotation).unsqueeze(-1)], dim=-1)


def bev_corners(boxes: Tensor) -> Tensor:
    """Footprints of upright boxes in the camera x-z plane.

    Args:
        boxes: (*, 7) as ``(x, y, z, l, w, h, yaw)``.
    Returns:
        (*, 4, 2) corners as (x, z), counter-clockwise in that chart (positive shoelace area).

    >>> bev_corners(torch.tensor([1.0, 0, 5, 4, 2, 1.5, 0])).tolist()
    [[3.0, 6.0], [-1.0, 6.0], [-1.0, 4.0], [3.0, 4.0]]
    """
    corners = box_corners(boxes[..., :3], yaw_to_rotation(boxes[..., 6]), boxes[..., 3:6])
    return corners[..., :4, :][..., [0, 2]]


def _next_vertex(count: Tensor, capacity: int) -> Tensor:
    """(K, capacity) index of each slot's successor in a polygon of ``count`` (K,) vertices."""
    slots = torch.arange(capacity, device=count.device)
    return torch.where(slots + 1 < count.unsqueeze(-1), slots + 1, 0)


def _gather_vertices(polygons: Tensor, index: Tensor) -> Tensor:
    """``polygons`` (K, C, 2) gathered at ``index`` (K, C') -> (K, C', 2)."""
    return torch.gather(polygons, 1, index.unsqueeze(-1).expand(-1, -1, 2))


def _clip_by_edge(polygons: Tensor, count: Tensor, start: Tensor, end: Tensor
                  ) -> tuple[Tensor, Tensor]:
    """One Sutherland-Hodgman step: keep the part of each polygon left of its directed edge.

    Args:
        polygons: (K, C, 2) vertices, the first ``count`` of each row in order.
        count: (K,) number of vertices per polygon.
        start, end: (K, 2) the clipping edge; the kept half-plane is on its left.
    Returns:
        clipped (K, C, 2) and its vertex counts (K,).
    """
    capacity = polygons.shape[1]
    following = _gather_vertices(polygons, _next_vertex(count, capacity))
    edge = (end - start).unsqueeze(1)
    offset_here = polygons - start.unsqueeze(1)
    offset_next = following - start.unsqueeze(1)
    side_here = edge[..., 0] * offset_here[..., 1] - edge[..., 1] * offset_here[..., 0]
    side_next = edge[..., 0] * offset_next[..., 1] - edge[..., 1] * offset_next[..., 0]
    valid = torch.arange(capacity, device=count.device) < count.unsqueeze(-1)
    inside_here, inside_next = side_here >= 0, side_next >= 0
    keep = valid & inside_here
    crossing = valid & (inside_here != inside_next)
    denominator = torch.where(crossing, side_here - side_next, torch.ones_like(side_here))
    fraction = (side_here / denominator).unsqueeze(-1)
    crossing_points = polygons + fraction * (following - polygons)
    candidates = torch.stack([polygons, crossing_points], dim=2).flatten(1, 2)
    chosen = torch.stack([keep, crossing], dim=2).flatten(1, 2)
    order = torch.argsort((~chosen).to(torch.uint8), dim=1, stable=True)[:, :capacity]
    return _gather_vertices(candidates, order), chosen.sum(dim=1).clamp(max=capacity)


def _polygon_area(polygons: Tensor, count: Tensor) -> Tensor:
    """Shoelace area (K,) of polygons (K, C, 2) with ``count`` (K,) vertices, CCW positive."""
    following = _gather_vertices(polygons, _next_vertex(count, polygons.shape[1]))
    valid = torch.arange(polygons.shape[1], device=count.device) < count.unsqueeze(-1)
    twice = polygons[..., 0] * following[..., 1] - following[..., 0] * polygons[..., 1]
    return 0.5 * torch.where(valid, twice, torch.zeros_like(twice)).sum(dim=1)


def bev_intersection(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Exact area of the intersection of paired BEV rectangles (Sutherland-Hodgman clipping).

    Args:
        boxes_a, boxes_b: (K, 7) as ``(x, y, z, l, w, h, yaw)``; row i of one is paired with
            row i of the other.
    Returns:
        (K,) square metres.

    >>> a = torch.tensor([[0.0, 0, 0, 4, 2, 1.5, 0]])
    >>> float(bev_intersection(a, a + torch.tensor([1.0, 0, 0, 0, 0, 0, 0])))
    6.0
    """
    clip = bev_corners(boxes_b)
    polygons = torch.zeros((boxes_a.shape[0], _MAX_VERTICES, 2), dtype=boxes_a.dtype,
                           device=boxes_a.device)
    polygons[:, :4] = bev_corners(boxes_a)
    count = torch.full((boxes_a.shape[0],), 4, dtype=torch.long, device=boxes_a.device)
    for i in range(4):
        polygons, count = _clip_by_edge(polygons, count, clip[:, i], clip[:, (i + 1) % 4])
    return _polygon_area(polygons, count).clamp(min=0)


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator`` clamped to [0, 1], 0 where the denominator is not positive."""
    positive = denominator > 0
    safe = torch.where(positive, denominator, torch.ones_like(denominator))
    return torch.where(positive, numerator / safe, torch.zeros_like(numerator)).clamp(0, 1)


def paired_iou(boxes_a: Tensor, boxes_b: Tensor) -> tuple[Tensor, Tensor]:
    """BEV and 3D IoU of paired upright boxes.

    Args:
        boxes_a, boxes_b: (K, 7) as ``(x, y, z, l, w, h, yaw)`` (camera frame, y down).
    Returns:
        bev: (K,) IoU of the footprints in the x-z plane; iou3d: (K,) IoU of the volumes.

    >>> a = torch.tensor([[0.0, 0, 0, 4, 2, 1.5, 0]])
    >>> [round(float(v), 4) for v in paired_iou(a, a + torch.tensor([0.0, 0.5, 0, 0, 0, 0, 0]))]
    [1.0, 0.5]
    """
    intersection = bev_intersection(boxes_a, boxes_b)
    area_a = boxes_a[:, 3] * boxes_a[:, 4]
    area_b = boxes_b[:, 3] * boxes_b[:, 4]
    bev = _ratio(intersection, area_a + area_b - intersection)
    top = torch.maximum(boxes_a[:, 1] - boxes_a[:, 5] / 2, boxes_b[:, 1] - boxes_b[:, 5] / 2)
    bottom = torch.minimum(boxes_a[:, 1] + boxes_a[:, 5] / 2, boxes_b[:, 1] + boxes_b[:, 5] / 2)
    volume = intersection * (bottom - top).clamp(min=0)
    union = area_a * boxes_a[:, 5] + area_b * boxes_b[:, 5] - volume
    return bev, _ratio(volume, union)


def _footprints_may_touch(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(K,) False where paired footprints are certainly disjoint (bounding circles apart)."""
    reach = 0.5 * (torch.hypot(boxes_a[:, 3], boxes_a[:, 4])
                   + torch.hypot(boxes_b[:, 3], boxes_b[:, 4]))
    distance = torch.hypot(boxes_a[:, 0] - boxes_b[:, 0], boxes_a[:, 2] - boxes_b[:, 2])
    return distance <= reach


def _pairwise(boxes_a: Tensor, boxes_b: Tensor) -> tuple[Tensor, Tensor]:
    """BEV and 3D IoU (N, M) of every box of ``boxes_a`` (N, 7) with every one of ``boxes_b``."""
    rows, cols = torch.meshgrid(torch.arange(boxes_a.shape[0]), torch.arange(boxes_b.shape[0]),
                                indexing="ij")
    bev, iou3d = _sparse_paired_iou(boxes_a[rows.flatten()], boxes_b[cols.flatten()])
    return bev.reshape(rows.shape), iou3d.reshape(rows.shape)


def _sparse_paired_iou(boxes_a: Tensor, boxes_b: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`paired_iou`, computed only for pairs whose footprints may overlap."""
    near = _footprints_may_touch(boxes_a, boxes_b)
    bev = torch.zeros(boxes_a.shape[0], dtype=boxes_a.dtype, device=boxes_a.device)
    iou3d = torch.zeros_like(bev)
    if bool(near.any()):
        bev[near], iou3d[near] = paired_iou(boxes_a[near], boxes_b[near])
    return bev, iou3d


def bev_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of every pair of upright boxes in the bird's-eye view (camera x-z plane).

    Args:
        boxes_a: (N, 7), boxes_b: (M, 7) as ``(x, y, z, l, w, h, yaw)``.
    Returns:
        (N, M) in [0, 1].

    >>> a = torch.tensor([[0.0, 0, 10, 4, 2, 1.5, 0]])
    >>> b = a + torch.tensor([2.0, 0, 0, 0, 0, 0, 0])  # shifted by half its length
    >>> bev_iou(a, b)
    tensor([[0.3333]], dtype=torch.float64)
    """
    return _pairwise(boxes_a.double(), boxes_b.double())[0]


def iou_3d(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of every pair of upright 3D boxes.

    Args:
        boxes_a: (N, 7), boxes_b: (M, 7) as ``(x, y, z, l, w, h, yaw)``.
    Returns:
        (N, M) in [0, 1].
    """
    return _pairwise(boxes_a.double(), boxes_b.double())[1]


# --------------------------------------------------------------------------------------------
# The devkit's rules: ignored objects, matching, score thresholds, precision
# --------------------------------------------------------------------------------------------

def _too_hard(height: np.ndarray, occlusion: np.ndarray, truncation: np.ndarray, level: int
              ) -> np.ndarray:
    """(*,) True where a ground truth of shape (*,) is outside difficulty ``level``."""
    return ((np.asarray(occlusion) > MAX_OCCLUSION[level])
            | (np.asarray(truncation) > MAX_TRUNCATION[level])
            | (np.asarray(height) <= MIN_HEIGHT[level]))


def kitti_difficulty(height: np.ndarray, occlusion: np.ndarray, truncation: np.ndarray
                     ) -> np.ndarray:
    """The easiest KITTI level each object counts at, by the devkit's limits.

    Args:
        height: (N,) 2D box height in pixels. occlusion: (N,) 0..3. truncation: (N,) 0..1.
    Returns:
        (N,) int: 0 easy, 1 moderate, 2 hard, -1 none. An object counts at its level and
        every harder one. A box exactly 40 (25) px tall is too low for easy (any level).

    >>> kitti_difficulty(np.array([40.01, 40.0, 30, 30, 25.0]), np.array([0, 0, 2, 3, 0]),
    ...                  np.array([0.15, 0.0, 0.5, 0.0, 0.0])).tolist()
    [0, 1, 2, -1, -1]
    """
    level = np.full(np.shape(height), -1, dtype=np.int64)
    for index in reversed(range(len(DIFFICULTIES))):
        level[~_too_hard(height, occlusion, truncation, index)] = index
    return level


def ignored_ground_truth(gt_class: np.ndarray, height: np.ndarray, occlusion: np.ndarray,
                         truncation: np.ndarray, level: int) -> np.ndarray:
    """The devkit's ``ignored_gt`` of ground truths at difficulty ``level``.

    Args:
        gt_class: (*,) 1 for the evaluated class, 0 for its neighbour class (``Van`` for
            ``Car``), -1 for any other.
        height: (*,) 2D box height in pixels. occlusion: (*,). truncation: (*,).
    Returns:
        (*,) int: 0 valid (counted in the recall), 1 ignored (neighbour class, or too hard for
        the level), -1 not evaluated.

    >>> ignored_ground_truth(np.array([1, 1, 0, -1]), np.array([25.01, 25.0, 100, 100]),
    ...                      np.zeros(4), np.zeros(4), level=1).tolist()
    [0, 1, 1, -1]
    """
    gt_class = np.asarray(gt_class)
    valid = (gt_class == 1) & ~_too_hard(height, occlusion, truncation, level)
    return np.where(valid, 0, np.where(gt_class >= 0, 1, -1))


def ignored_detections(is_class: np.ndarray, height: np.ndarray, level: int) -> np.ndarray:
    """The devkit's ``ignored_det`` of detections at difficulty ``level``.

    Args:
        is_class: (*,) bool, the detection is of the evaluated class.
        height: (*,) 2D box height in pixels.
    Returns:
        (*,) int: 1 lower than the level's minimum height (whatever the class), else 0 for
        the evaluated class and -1 for any other.

    >>> ignored_detections(np.array([True, False, True, False]),
    ...                    np.array([24.9, 20.0, 25.0, 90.0]), level=1).tolist()
    [1, 1, 0, -1]
    """
    return np.where(np.asarray(height) < MIN_HEIGHT[level], 1, np.where(is_class, 0, -1))


def match_detections(overlap_ok: np.ndarray, eligible: np.ndarray, preference: np.ndarray,
                     ignored_gt: np.ndarray, ignored_det: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The devkit's assignment of detections to ground truths, in T settings at once.

    In every frame the ground truths are visited in order; each one not marked -1 takes, among
    the eligible detections still free that it overlaps, the one of highest ``preference``
    (the first of equals). A pair is a true positive when neither side is ignored (both 0).

    Args:
        overlap_ok: (F, P, G) bool, IoU above the threshold, for F frames of P detections and
            G ground truths.
        eligible: (T, F, P) bool, the detections that may be taken in each of T settings.
        preference: (1 or T, F, P, G) float, how much ground truth g prefers detection p.
        ignored_gt: (F, G) int, see :func:`ignored_ground_truth`.
        ignored_det: (F, P) int, see :func:`ignored_detections`.
    Returns:
        matched: (T, F, P) index of the ground truth each detection took, -1 for none.
        true_positive: (T, F, P) bool.
    """
    matched = np.full(eligible.shape, -1, dtype=np.int64)
    for g in range(overlap_ok.shape[2]):
        candidates = eligible & (matched < 0) & overlap_ok[None, :, :, g]
        best = np.argmax(np.where(candidates, preference[..., g], -np.inf), axis=-1)
        setting, frame = np.nonzero(candidates.any(axis=-1) & (ignored_gt[None, :, g] >= 0))
        matched[setting, frame, best[setting, frame]] = g
    gt_valid = np.take_along_axis(ignored_gt[None], matched.clip(min=0), axis=2) == 0
    return matched, (matched >= 0) & gt_valid & (ignored_det[None] == 0)


def sample_thresholds(scores: np.ndarray, num_gt: int) -> np.ndarray:
    """The devkit's score thresholds (``getThresholds``) from the true positives' scores.

    Walking the scores from the highest, the i-th (from 0) reaches recall (i + 1) / num_gt.
    A score is skipped when its recall is below the next recall point (0, 1/40, 2/40, ...,
    starting at 0 and advancing one step per kept score) and the following score's recall is
    nearer to that point; the last score is always kept.

    Args:
        scores: (K,) scores of the true positives of the matching by score, K <= num_gt.
        num_gt: number of valid ground truths.
    Returns:
        (T,) the kept scores in descending order, T <= 41.

    >>> sample_thresholds(np.array([0.5, 0.9, 0.7]), 10).tolist()
    [0.9, 0.7, 0.5]
    >>> len(sample_thresholds(np.linspace(1.0, 0.01, 100), 100))
    41
    """
    ordered = np.sort(np.asarray(scores, dtype=np.float64))[::-1].tolist()
    kept, target = [], 0.0
    for i, score in enumerate(ordered):
        recall = (i + 1) / num_gt
        last = i == len(ordered) - 1
        if not last and (i + 2) / num_gt - target < target - recall:
            continue
        kept.append(score)
        target += 1.0 / (SAMPLE_POINTS - 1)
    return np.array(kept, dtype=np.float64)


def interpolated_precision(true_positives: np.ndarray, false_positives: np.ndarray
                           ) -> np.ndarray:
    """The devkit's 41 precision entries from the counts at T <= 41 score thresholds.

    Args:
        true_positives, false_positives: (T,) counts, thresholds in descending order.
    Returns:
        (41,) precision TP / (TP + FP) at each threshold (0 without positives), replaced by
        the best at it or any later threshold; 0 beyond the T-th entry.

    >>> interpolated_precision(np.array([1, 2, 3]), np.array([0, 2, 1]))[:4].tolist()
    [1.0, 0.75, 0.75, 0.0]
    """
    positives = true_positives + false_positives
    precision = np.zeros(SAMPLE_POINTS)
    precision[:len(positives)] = np.where(positives > 0,
                                          true_positives / np.maximum(positives, 1), 0.0)
    return np.maximum.accumulate(precision[::-1])[::-1]


def average_precision(precision: np.ndarray, recall_positions: int = 40) -> float:
    """AP in percent from the 41 precision entries of :func:`interpolated_precision`.

    AP|R40 is the mean of entries 1..40 (recall 1/40 ... 1), AP|R11 the mean of entries
    0, 4, ..., 40 (recall 0, 0.1, ..., 1), summed in order as the devkit does.

    >>> precision = np.r_[np.ones(21), np.zeros(20)]
    >>> average_precision(precision, 40), round(average_precision(precision, 11), 4)
    (50.0, 54.5455)
    """
    if recall_positions not in RECALL_POSITIONS:
        raise ValueError(f"recall positions must be one of {RECALL_POSITIONS}, "
                         f"got {recall_positions}")
    return sum(precision[_RECALL_ENTRIES[recall_positions]].tolist()) / recall_positions * 100


def iou_thresholds_for(category: str) -> tuple[float, float]:
    """KITTI's strict and loose IoU thresholds for a class (0.7/0.5, or 0.5/0.25 for people).

    >>> iou_thresholds_for("Car"), iou_thresholds_for("cyclist")
    ((0.7, 0.5), (0.5, 0.25))
    """
    if category.lower() in _SMALL_OBJECT_CLASSES:
        return _SMALL_OBJECT_IOU_THRESHOLDS
    return _VEHICLE_IOU_THRESHOLDS


def box2d_coverage(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(P, D) fraction of each 2D box (P, 4) covered by each region (D, 4), boxes x1 y1 x2 y2."""
    width = (np.minimum(boxes[:, None, 2], regions[None, :, 2])
             - np.maximum(boxes[:, None, 0], regions[None, :, 0])).clip(min=0)
    height = (np.minimum(boxes[:, None, 3], regions[None, :, 3])
              - np.maximum(boxes[:, None, 1], regions[None, :, 1])).clip(min=0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.where(area[:, None] > 0, width * height / np.maximum(area[:, None], 1e-12), 0.0)


# --------------------------------------------------------------------------------------------
# Dataset-level evaluation
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PoseErrors:
    """Medians over matched pairs (BEV IoU > 0.5, hard level); NaN when there are none.

    Attributes:
        pairs: number of matched pairs.
        translation_m: centre distance in metres.
        yaw_deg: absolute yaw difference wrapped to [0, 180] degrees.
        size_m: absolute (length, width, height) differences in metres.
    """

    pairs: int
    translation_m: float
    yaw_deg: float
    size_m: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class ClassResult:
    """Evaluation of one class.

    Attributes:
        category: the class name as requested.
        iou_thresholds: the IoU thresholds AP was computed at (strict first).
        ap: ``(recall_positions, metric, iou) -> (easy, moderate, hard)`` AP in percent,
            ``recall_positions`` 40 or 11, ``metric`` ``bev`` or ``3d``; NaN for a level
            without valid ground truth.
        num_gt: valid ground truths per level (easy, moderate, hard).
        num_pred: predictions of the class.
        errors: pose errors of the matched pairs.
    """

    category: str
    iou_thresholds: tuple[float, ...]
    ap: dict[tuple[int, str, float], tuple[float, float, float]]
    num_gt: tuple[int, int, int]
    num_pred: int
    errors: PoseErrors

    def ap_at(self, metric: str, iou: float, difficulty: str = "moderate",
              recall_positions: int = 40) -> float:
        """AP|R40 (or AP|R11) in percent for ``metric`` (``bev``/``3d``), IoU and level."""
        return self.ap[(recall_positions, metric, iou)][DIFFICULTIES.index(difficulty)]


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Evaluation of a set of frames.

    Attributes:
        num_frames: frames with ground truth (frames without predictions count as empty).
        classes: per requested class, in the requested order.
    """

    num_frames: int
    classes: dict[str, ClassResult]


@dataclasses.dataclass(frozen=True)
class _ClassData:
    """One class's ground truths and detections in F frames, padded to G and P a frame.

    Only what the devkit can use is kept: ground truths of the class and of its neighbour
    class, and detections of the class or lower than the easy level's minimum height (the
    devkit ignores, rather than leaves out, a detection of any class that is too low). Padding
    has ``gt_class`` -1, ``det_is_class`` False and ``det_height`` inf, which the devkit's
    rules leave out.
    """

    gt_class: np.ndarray       # (F, G) 1 the class, 0 the neighbour class, -1 padding
    gt_height: np.ndarray      # (F, G) 2D box height in pixels
    gt_occlusion: np.ndarray   # (F, G)
    gt_truncation: np.ndarray  # (F, G)
    gt_boxes: np.ndarray       # (F, G, 7)
    det_is_class: np.ndarray   # (F, P) bool
    det_height: np.ndarray     # (F, P) 2D box height in pixels
    det_score: np.ndarray      # (F, P)
    det_boxes: np.ndarray      # (F, P, 7)
    overlap: dict[str, np.ndarray]  # metric -> (F, P, G) IoU

    def ignored(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """``ignored_gt`` (F, G) and ``ignored_det`` (F, P) at difficulty ``level``."""
        return (ignored_ground_truth(self.gt_class, self.gt_height, self.gt_occlusion,
                                     self.gt_truncation, level),
                ignored_detections(self.det_is_class, self.det_height, level))

    def num_valid(self, level: int) -> int:
        """Valid ground truths (``ignored_gt`` 0) at difficulty ``level``."""
        return int((self.ignored(level)[0] == 0).sum())


def _padded(values: np.ndarray, counts: np.ndarray, fill: float) -> np.ndarray:
    """Consecutive groups of ``values`` (N, ...), sizes ``counts`` (F,), as rows
    (F, max(1, max count), ...) filled up with ``fill``."""
    frame = np.repeat(np.arange(len(counts)), counts)
    slot = np.arange(len(values)) - np.repeat(np.cumsum(counts) - counts, counts)
    padded = np.full((len(counts), max(1, int(counts.max(initial=0))), *values.shape[1:]), fill,
                     dtype=values.dtype)
    padded[frame, slot] = values
    return padded


def _box2d_height(labels: Sequence[ObjectLabel]) -> np.ndarray:
    """(N,) heights in pixels of the labels' 2D boxes."""
    box2d = np.array([label.box2d for label in labels], dtype=np.float64).reshape(-1, 4)
    return box2d[:, 3] - box2d[:, 1]


def _overlaps(det_boxes: np.ndarray, gt_boxes: np.ndarray, pairs: np.ndarray
              ) -> dict[str, np.ndarray]:
    """BEV and 3D IoU (F, P, G) of detections (F, P, 7) and ground truths (F, G, 7) of the
    same frame, computed in one batch where ``pairs`` (F, P, G) is True and 0 elsewhere."""
    frame, det, gt = np.nonzero(pairs)
    ious = _sparse_paired_iou(torch.from_numpy(det_boxes[frame, det]),
                              torch.from_numpy(gt_boxes[frame, gt]))
    overlaps = {}
    for metric, iou in zip(METRICS, ious, strict=True):
        overlaps[metric] = np.zeros(pairs.shape)
        overlaps[metric][frame, det, gt] = iou.numpy()
    return overlaps


def _class_data(gt_by_frame: Mapping[str, Sequence[ObjectLabel]],
                pred_by_frame: Mapping[str, Sequence[ObjectLabel]], category: str
                ) -> _ClassData:
    """The labels of every frame of ``gt_by_frame`` that matter for ``category``, batched."""
    name = category.lower()
    evaluated = (name, _NEIGHBOUR_CLASS.get(name))
    truths = [[label for label in gt if label.category.lower() in evaluated]
              for gt in gt_by_frame.values()]
    detections = [[label for label, height in zip(pred, _box2d_height(pred), strict=True)
                   if label.category.lower() == name or height < MIN_HEIGHT[0]]
                  for pred in (pred_by_frame.get(frame_id, ()) for frame_id in gt_by_frame)]
    gt_counts = np.array([len(labels) for labels in truths], dtype=np.int64)
    det_counts = np.array([len(labels) for labels in detections], dtype=np.int64)
    gt = [label for labels in truths for label in labels]
    det = [label for labels in detections for label in labels]
    gt_boxes = _padded(labels_to_boxes(gt).numpy(), gt_counts, 0.0)
    det_boxes = _padded(labels_to_boxes(det).numpy(), det_counts, 0.0)
    real_gt = np.arange(gt_boxes.shape[1]) < gt_counts[:, None]
    real_det = np.arange(det_boxes.shape[1]) < det_counts[:, None]
    scores = [1.0 if label.score is None else label.score for label in det]
    return _ClassData(
        gt_class=_padded(np.array([int(label.category.lower() == name) for label in gt],
                                  dtype=np.int64), gt_counts, -1),
        gt_height=_padded(_box2d_height(gt), gt_counts, 0.0),
        gt_occlusion=_padded(np.array([label.occlusion for label in gt], dtype=np.int64),
                             gt_counts, 0),
        gt_truncation=_padded(np.array([label.truncation for label in gt], dtype=np.float64),
                              gt_counts, 0.0),
        gt_boxes=gt_boxes,
        det_is_class=_padded(np.array([label.category.lower() == name for label in det],
                                      dtype=bool), det_counts, False),
        det_height=_padded(_box2d_height(det), det_counts, np.inf),
        det_score=_padded(np.array(scores, dtype=np.float64), det_counts, 0.0),
        det_boxes=det_boxes,
        overlap=_overlaps(det_boxes, gt_boxes, real_det[:, :, None] & real_gt[:, None, :]),
    )


def _match_at_thresholds(data: _ClassData, metric: str, iou_threshold: float, level: int,
                         thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The devkit's matching for precision, at T score thresholds at once.

    Detections scoring below a threshold are left out; each ground truth takes the free
    non-ignored detection of highest IoU, or else the first free ignored (too low) one.

    Args:
        metric: ``bev`` or ``3d``. iou_threshold: IoU a match must exceed. level: 0..2.
        thresholds: (T,) scores.
    Returns:
        matched (T, F, P) and true_positive (T, F, P) as in :func:`match_detections`, and
        false_positive (T, F, P): free non-ignored detections at or above the threshold.
    """
    ignored_gt, ignored_det = data.ignored(level)
    overlap = data.overlap[metric]
    eligible = (ignored_det >= 0) & (data.det_score >= thresholds[:, None, None])
    by_overlap = np.where(ignored_det[..., None] == 0, overlap, -1.0)
    matched, true_positive = match_detections(overlap > iou_threshold, eligible,
                                              by_overlap[None], ignored_gt, ignored_det)
    return matched, true_positive, eligible & (matched < 0) & (ignored_det == 0)


def _precision(data: _ClassData, metric: str, iou_threshold: float, level: int
               ) -> np.ndarray:
    """The devkit's (41,) interpolated precision of one metric, IoU threshold and level."""
    ignored_gt, ignored_det = data.ignored(level)
    overlap = data.overlap[metric]
    by_score = np.broadcast_to(data.det_score[None, :, :, None], (1, *overlap.shape))
    _, true_positive = match_detections(overlap > iou_threshold, (ignored_det >= 0)[None],
                                        by_score, ignored_gt, ignored_det)
    thresholds = sample_thresholds(data.det_score[true_positive[0]], data.num_valid(level))
    _, true_positive, false_positive = _match_at_thresholds(data, metric, iou_threshold, level,
                                                            thresholds)
    return interpolated_precision(true_positive.sum(axis=(1, 2)), false_positive.sum(axis=(1, 2)))


def _pose_errors(data: _ClassData) -> PoseErrors:
    """Errors of the true positives of the devkit's matching at BEV IoU > 0.5, hard level."""
    matched, true_positive, _ = _match_at_thresholds(data, "bev", ERROR_MATCH_IOU,
                                                     len(DIFFICULTIES) - 1, np.array([-np.inf]))
    frame, det = np.nonzero(true_positive[0])
    pred = data.det_boxes[frame, det]
    gt = data.gt_boxes[frame, matched[0, frame, det]]
    if len(pred) == 0:
        return PoseErrors(0, math.nan, math.nan, (math.nan, math.nan, math.nan))
    translation = np.linalg.norm(pred[:, :3] - gt[:, :3], axis=-1)
    yaw = np.degrees(np.abs(wrap_angle(torch.from_numpy(pred[:, 6] - gt[:, 6])).numpy()))
    size = np.abs(pred[:, 3:6] - gt[:, 3:6])
    return PoseErrors(len(pred), float(np.median(translation)), float(np.median(yaw)),
                      tuple(float(v) for v in np.median(size, axis=0)))


def _evaluate_class(gt_by_frame: Mapping[str, Sequence[ObjectLabel]],
                    pred_by_frame: Mapping[str, Sequence[ObjectLabel]], category: str
                    ) -> ClassResult:
    data = _class_data(gt_by_frame, pred_by_frame, category)
    thresholds = iou_thresholds_for(category)
    num_gt = tuple(data.num_valid(level) for level in range(len(DIFFICULTIES)))
    ap: dict[tuple[int, str, float], tuple[float, float, float]] = {}
    for metric in METRICS:
        for threshold in thresholds:
            precisions = [_precision(data, metric, threshold, level)
                          for level in range(len(DIFFICULTIES))]
            for positions in RECALL_POSITIONS:
                ap[(positions, metric, threshold)] = tuple(
                    average_precision(precision, positions) if count else math.nan
                    for precision, count in zip(precisions, num_gt, strict=True))
    return ClassResult(category=category, iou_thresholds=thresholds, ap=ap, num_gt=num_gt,
                       num_pred=int(data.det_is_class.sum()), errors=_pose_errors(data))


def evaluate(gt_by_frame: Mapping[str, Sequence[ObjectLabel]],
             pred_by_frame: Mapping[str, Sequence[ObjectLabel]],
             classes: Sequence[str] = ("Car",)) -> EvalResult:
    """KITTI AP|R40 and AP|R11 (BEV and 3D, per difficulty), as the official devkit computes
    them, and pose errors of predictions.

    Args:
        gt_by_frame: frame id -> ground-truth labels of every class, DontCare included; the
            order of a frame's labels matters to the devkit's matching (use file order).
        pred_by_frame: frame id -> predicted labels; a frame absent here has no predictions.
            A missing score counts as 1.0.
        classes: class names to evaluate (compared case-insensitively).
    Returns:
        An :class:`EvalResult`.
    Raises:
        ValueError: when predictions name frames that have no ground truth.
    """
    unknown = sorted(set(pred_by_frame) - set(gt_by_frame))
    if unknown:
        raise ValueError(f"predictions for frames without ground truth: {', '.join(unknown)}")
    return EvalResult(num_frames=len(gt_by_frame),
                      classes={category: _evaluate_class(gt_by_frame, pred_by_frame, category)
                               for category in classes})


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

PROTOCOL = ("official KITTI object devkit (evaluate_object.cpp, 2019): precision at 41 sampled "
            "recall points; ap_r40 averages points 1..40, ap_r11 points 0, 4, ..., 40")


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _named(names: Sequence[str], values: Sequence[float]) -> dict[str, float | None]:
    return {name: _finite_or_none(value) for name, value in zip(names, values, strict=True)}


def to_json(result: EvalResult) -> dict:
    """A JSON-ready dict of ``result``; NaN values become None.

    Layout: ``{"frames", "protocol", "classes": {name: {"iou_thresholds",
    "num_gt": {level: n}, "num_pred", "ap_r40" and "ap_r11": {"bev"|"3d": {"0.7": {level:
    AP}}}, "pose_errors": {"matching", "pairs", "translation_m", "yaw_deg",
    "size_m": {"length", "width", "height"}}}}}``.
    """
    classes = {}
    for name, entry in result.classes.items():
        errors = entry.errors
        classes[name] = {
            "iou_thresholds": list(entry.iou_thresholds),
            "num_gt": dict(zip(DIFFICULTIES, entry.num_gt, strict=True)),
            "num_pred": entry.num_pred,
            **{f"ap_r{positions}": {
                metric: {str(iou): _named(DIFFICULTIES, entry.ap[(positions, metric, iou)])
                         for iou in entry.iou_thresholds}
                for metric in METRICS} for positions in RECALL_POSITIONS},
            "pose_errors": {
                "matching": f"devkit matching at BEV IoU > {ERROR_MATCH_IOU}, hard level, "
                            "all scores",
                "pairs": errors.pairs,
                "translation_m": _finite_or_none(errors.translation_m),
                "yaw_deg": _finite_or_none(errors.yaw_deg),
                "size_m": _named(("length", "width", "height"), errors.size_m),
            },
        }
    return {"frames": result.num_frames, "protocol": PROTOCOL, "classes": classes}


def _cell(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def format_table(result: EvalResult, width: int = 100, recall_positions: int = 40) -> str:
    """Two plain-text tables: AP per class, metric, IoU and level; pose errors per class.

    Args:
        result: what :func:`evaluate` returned.
        width: the text width in characters.
        recall_positions: 40 for AP|R40, 11 for AP|R11.
    """
    ap_table = Table(title=f"KITTI AP|R{recall_positions} (%, official devkit) over "
                           f"{result.num_frames} frames")
    for column in ("class", "metric", "IoU", *DIFFICULTIES):
        ap_table.add_column(column, justify="left" if column == "class" else "right")
    errors_table = Table(title=f"Median errors of pairs matched at BEV IoU > {ERROR_MATCH_IOU}"
                               " (hard level)")
    for column in ("class", "GT e/m/h", "pred", "pairs", "transl. m", "yaw deg",
                   "length m", "width m", "height m"):
        errors_table.add_column(column, justify="left" if column == "class" else "right")
    for name, entry in result.classes.items():
        for metric in METRICS:
            for iou in entry.iou_thresholds:
                ap_table.add_row(name, metric.upper(), f"{iou:g}",
                                 *(_cell(v, 2) for v in entry.ap[(recall_positions, metric, iou)]))
        errors = entry.errors
        errors_table.add_row(name, "/".join(str(n) for n in entry.num_gt), str(entry.num_pred),
                             str(errors.pairs), _cell(errors.translation_m, 3),
                             _cell(errors.yaw_deg, 2), *(_cell(v, 3) for v in errors.size_m))
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    console.print(ap_table)
    console.print(errors_table)
    return buffer.getvalue()
