"""KITTI-style evaluation of 3D labels: exact oriented-box IoU, difficulty levels, AP|R40.

Boxes are compared as upright boxes with a yaw about the camera's y axis, as KITTI does: the
bird's-eye view (BEV) is the camera x-z plane, where a box is a rotated rectangle, and the 3D
overlap is the BEV intersection area times the overlap of the vertical extents. A label with
pitch or roll is evaluated as the upright box with the heading of its forward axis
(:func:`autolabel.geometry.rotation_to_yaw`); exact IoU of generally rotated boxes is not
implemented because KITTI ground truth has yaw only.

Per class, ground truths and predictions are matched per frame at each IoU threshold (KITTI's
strict ``IoU > threshold``) and difficulty, and the average precision over 40 recall positions
(AP|R40) is reported in percent for BEV and 3D. The semantics follow the official devkit
(``cpp/evaluate_object.cpp`` of the KITTI object benchmark):

* difficulty: a ground truth is *easy* / *moderate* / *hard* when its 2D box is at least
  40 / 25 / 25 px tall, its occlusion at most 0 / 1 / 2 and its truncation at most
  0.15 / 0.3 / 0.5; the levels are cumulative (moderate includes easy, hard includes both);
* ignored ground truths: objects of the class that are too hard for the level, and objects of
  the neighbouring class (``Van`` when evaluating ``Car``, ``Person_sitting`` for
  ``Pedestrian``), may be matched but count neither as found nor as missed, and the
  prediction matched to them is not a false positive;
* predictions of other classes are not evaluated, and class names compare case-insensitively;
* IoU thresholds: 0.7 and 0.5 for vehicles and unknown classes, 0.5 and 0.25 for
  ``Pedestrian``, ``Person_sitting`` and ``Cyclist``;
* ``DontCare`` regions: the devkit applies them to the 2D-box metric only (their 3D fields are
  placeholders that overlap nothing), so by default they do not affect BEV and 3D results.

Deviations from the devkit, each deliberate:

* AP|R40 is computed exactly as defined by Simonelli et al. (ICCV 2019): the mean over
  r = 1/40 ... 40/40 of the highest precision among all operating points (every distinct
  score) whose recall is at least r. The devkit instead samples score thresholds at the
  true-positive scores whose recall is nearest to each position; with fewer than 40 valid
  ground truths it gets fewer positions than 40 and caps AP at (n - 1) / 40, so a perfect
  prediction of 18 cars would score 42.5 there and 100 here. For large sets both agree.
* Matching is greedy by score: per frame, predictions in descending score order each take
  the unmatched ground truth of highest IoU above the threshold, a valid one in preference to
  an ignored one. One matching then gives every operating point. The devkit re-matches at
  each sampled threshold, giving each ground truth (in file order) the overlapping detection
  of highest IoU; the two differ only when detections compete for a ground truth.
* Predictions whose 2D box is lower than the level's minimum height are dropped before
  matching. The devkit lets them absorb a ground truth, which then counts neither as found
  nor as missed.
* With ``dontcare_in_image=True`` the devkit's 2D rule is applied to BEV and 3D as well: an
  unmatched prediction whose 2D box lies inside a ``DontCare`` region by more than the IoU
  threshold (intersection over the prediction's 2D box area) is ignored instead of counting
  as a false positive. Useful for labels made from a 2D detector that finds the far or
  crowded objects KITTI's annotators left unlabelled; not comparable with published numbers.
* A level with no valid ground truth has AP NaN (``null`` in JSON); the devkit reports 0.
* Predictions without a score (ground-truth files used as predictions) have score 1.0.

Pose errors of matched pairs are the medians over the pairs matched at BEV IoU > 0.5 at the
*hard* level (which includes easy and moderate): centre distance in metres, absolute wrapped
yaw difference in degrees, and absolute length, width and height differences in metres.
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
RECALL_POSITIONS = 40
ERROR_MATCH_IOU = 0.5
DONT_CARE = "dontcare"

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
# Difficulty, matching, average precision
# --------------------------------------------------------------------------------------------

def kitti_difficulty(height: np.ndarray, occlusion: np.ndarray, truncation: np.ndarray
                     ) -> np.ndarray:
    """The easiest KITTI level each object qualifies for.

    Args:
        height: (N,) 2D box height in pixels. occlusion: (N,) 0..3. truncation: (N,) 0..1.
    Returns:
        (N,) int: 0 easy, 1 moderate, 2 hard, -1 none. An object counts at its level and
        every harder one.

    >>> kitti_difficulty(np.array([40.0, 39.9, 30, 30]), np.array([0, 0, 2, 3]),
    ...                  np.array([0.15, 0.0, 0.5, 0.0])).tolist()
    [0, 1, 2, -1]
    """
    height, occlusion, truncation = (np.asarray(a) for a in (height, occlusion, truncation))
    level = np.full(height.shape, -1, dtype=np.int64)
    for index in reversed(range(len(DIFFICULTIES))):
        qualifies = ((height >= MIN_HEIGHT[index]) & (occlusion <= MAX_OCCLUSION[index])
                     & (truncation <= MAX_TRUNCATION[index]))
        level[qualifies] = index
    return level


def iou_thresholds_for(category: str) -> tuple[float, float]:
    """KITTI's strict and loose IoU thresholds for a class (0.7/0.5, or 0.5/0.25 for people).

    >>> iou_thresholds_for("Car"), iou_thresholds_for("cyclist")
    ((0.7, 0.5), (0.5, 0.25))
    """
    if category.lower() in _SMALL_OBJECT_CLASSES:
        return _SMALL_OBJECT_IOU_THRESHOLDS
    return _VEHICLE_IOU_THRESHOLDS


def match_greedy(iou: np.ndarray, scores: np.ndarray, threshold: float,
                 preferred: np.ndarray) -> np.ndarray:
    """Greedy matching by score of one frame's predictions to its ground truths.

    Predictions in descending score order (ties in input order) each take the unmatched
    ground truth of highest IoU above ``threshold`` (strictly), choosing among ``preferred``
    ones first.

    Args:
        iou: (P, G). scores: (P,). threshold: IoU a match must exceed.
        preferred: (G,) bool, the ground truths to try first (the valid ones).
    Returns:
        (P,) int index of the matched ground truth, -1 for none.

    >>> match_greedy(np.array([[0.9, 0.8], [0.95, 0.0]]), np.array([0.5, 0.9]), 0.7,
    ...              np.array([True, True])).tolist()
    [1, 0]
    """
    matched = np.full(iou.shape[0], -1, dtype=np.int64)
    taken = np.zeros(iou.shape[1], dtype=bool)
    for p in np.argsort(-scores, kind="stable"):
        candidates = (iou[p] > threshold) & ~taken
        if not candidates.any():
            continue
        pool = candidates & preferred
        if not pool.any():
            pool = candidates
        g = int(np.argmax(np.where(pool, iou[p], -1.0)))
        matched[p] = g
        taken[g] = True
    return matched


def average_precision_r40(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> float:
    """AP|R40 in percent from scored predictions that are true or false positives.

    AP = mean over r in {1/40, ..., 40/40} of the highest precision at any operating point
    (score threshold) whose recall is at least r, 0 where recall r is never reached.

    Args:
        scores: (P,) prediction scores. is_tp: (P,) bool; False means a false positive
            (ignored predictions must be left out). num_gt: number of valid ground truths.
    Returns:
        AP in percent, NaN when ``num_gt`` is 0.

    >>> average_precision_r40(np.array([0.9, 0.8]), np.array([True, False]), 1)
    100.0
    """
    if num_gt == 0:
        return math.nan
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    sorted_scores = np.asarray(scores)[order]
    true_positives = np.cumsum(np.asarray(is_tp)[order])
    # An operating point keeps every prediction at or above a score: the last of equal scores.
    last = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    true_positives = true_positives[last]
    precision = true_positives / (np.flatnonzero(last) + 1)
    best_from_here = np.maximum.accumulate(precision[::-1])[::-1]
    positions = np.arange(1, RECALL_POSITIONS + 1)
    # First operating point with recall >= k / 40, compared in integers: tp * 40 >= k * n.
    first = np.searchsorted(true_positives * RECALL_POSITIONS, positions * num_gt)
    reached = first < len(true_positives)
    interpolated = np.where(reached, best_from_here[np.minimum(first, len(precision) - 1)], 0.0)
    return float(100.0 * interpolated.mean())


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
        ap: ``(metric, iou) -> (easy, moderate, hard)`` AP|R40 in percent, metric ``bev`` or
            ``3d``; NaN for a level without valid ground truth.
        num_gt: valid ground truths per level (easy, moderate, hard).
        num_pred: predictions of the class.
        errors: pose errors of the matched pairs.
    """

    category: str
    iou_thresholds: tuple[float, ...]
    ap: dict[tuple[str, float], tuple[float, float, float]]
    num_gt: tuple[int, int, int]
    num_pred: int
    errors: PoseErrors

    def ap_at(self, metric: str, iou: float, difficulty: str = "moderate") -> float:
        """AP|R40 in percent for ``metric`` (``bev``/``3d``), IoU threshold and level."""
        return self.ap[(metric, iou)][DIFFICULTIES.index(difficulty)]


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Evaluation of a set of frames.

    Attributes:
        num_frames: frames with ground truth (frames without predictions count as empty).
        classes: per requested class, in the requested order.
        dontcare_in_image: whether DontCare regions were applied to BEV and 3D in 2D.
    """

    num_frames: int
    classes: dict[str, ClassResult]
    dontcare_in_image: bool = False


@dataclasses.dataclass
class _Frame:
    """One frame's boxes of one class, ready for matching."""

    gt_level: np.ndarray      # (G,) difficulty level; -1 for too hard or the neighbour class
    gt_boxes: Tensor          # (G, 7)
    pred_scores: np.ndarray   # (P,)
    pred_height: np.ndarray   # (P,) 2D box height in pixels
    pred_box2d: np.ndarray    # (P, 4)
    pred_boxes: Tensor        # (P, 7)
    dontcare: np.ndarray      # (D, 4) DontCare regions in the image
    iou: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # metric -> (P, G)


def _box2d_array(labels: Sequence[ObjectLabel]) -> np.ndarray:
    return np.array([label.box2d for label in labels], dtype=np.float64).reshape(-1, 4)


def _frame(gt: Sequence[ObjectLabel], pred: Sequence[ObjectLabel], category: str) -> _Frame:
    name = category.lower()
    neighbour = _NEIGHBOUR_CLASS.get(name)
    ours = [label for label in gt if label.category.lower() == name]
    near = [label for label in gt if label.category.lower() == neighbour]
    gt_box2d = _box2d_array(ours)
    level = kitti_difficulty(gt_box2d[:, 3] - gt_box2d[:, 1],
                             np.array([label.occlusion for label in ours]).reshape(-1),
                             np.array([label.truncation for label in ours]).reshape(-1))
    predicted = [label for label in pred if label.category.lower() == name]
    pred_box2d = _box2d_array(predicted)
    return _Frame(
        gt_level=np.concatenate([level, np.full(len(near), -1, dtype=np.int64)]),
        gt_boxes=labels_to_boxes(ours + near),
        pred_scores=np.array([1.0 if label.score is None else label.score
                              for label in predicted], dtype=np.float64),
        pred_height=pred_box2d[:, 3] - pred_box2d[:, 1],
        pred_box2d=pred_box2d,
        pred_boxes=labels_to_boxes(predicted),
        dontcare=_box2d_array([label for label in gt if label.category.lower() == DONT_CARE]),
    )


def _attach_ious(frames: list[_Frame]) -> None:
    """Fill every frame's (P, G) BEV and 3D IoU with one batched computation over all frames."""
    pairs_a, pairs_b = [], []
    for frame in frames:
        rows, cols = torch.meshgrid(torch.arange(len(frame.pred_boxes)),
                                    torch.arange(len(frame.gt_boxes)), indexing="ij")
        pairs_a.append(frame.pred_boxes[rows.flatten()])
        pairs_b.append(frame.gt_boxes[cols.flatten()])
    if not frames:
        return
    bev, iou3d = (value.numpy() for value in
                  _sparse_paired_iou(torch.cat(pairs_a), torch.cat(pairs_b)))
    start = 0
    for frame in frames:
        shape = (len(frame.pred_boxes), len(frame.gt_boxes))
        stop = start + shape[0] * shape[1]
        frame.iou = {"bev": bev[start:stop].reshape(shape), "3d": iou3d[start:stop].reshape(shape)}
        start = stop


def _classify(frame: _Frame, metric: str, threshold: float, level: int,
              dontcare_in_image: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Scores (Q,) and TP flags (Q,) of a frame's non-ignored predictions, the matched
    (prediction, ground truth) index pairs (M, 2) of true positives, and the valid GT count."""
    valid = (frame.gt_level >= 0) & (frame.gt_level <= level)
    kept = np.flatnonzero(frame.pred_height >= MIN_HEIGHT[level])
    matched = match_greedy(frame.iou[metric][kept], frame.pred_scores[kept], threshold, valid)
    false_positive = matched < 0
    true_positive = np.zeros(len(kept), dtype=bool)
    true_positive[~false_positive] = valid[matched[~false_positive]]
    if dontcare_in_image and len(frame.dontcare) and false_positive.any():
        coverage = box2d_coverage(frame.pred_box2d[kept], frame.dontcare)
        false_positive &= ~(coverage > threshold).any(axis=1)
    counted = true_positive | false_positive  # the rest matched ignored ground truths
    pairs = np.stack([kept[true_positive], matched[true_positive]], axis=1)
    return frame.pred_scores[kept][counted], true_positive[counted], pairs, int(valid.sum())


def _pose_errors(frames: list[_Frame], dontcare_in_image: bool) -> PoseErrors:
    pred_rows, gt_rows = [], []
    for frame in frames:
        _, _, pairs, _ = _classify(frame, "bev", ERROR_MATCH_IOU, len(DIFFICULTIES) - 1,
                                   dontcare_in_image)
        pred_rows.append(frame.pred_boxes.numpy()[pairs[:, 0]])
        gt_rows.append(frame.gt_boxes.numpy()[pairs[:, 1]])
    pred = np.concatenate(pred_rows) if pred_rows else np.zeros((0, 7))
    gt = np.concatenate(gt_rows) if gt_rows else np.zeros((0, 7))
    if len(pred) == 0:
        return PoseErrors(0, math.nan, math.nan, (math.nan, math.nan, math.nan))
    translation = np.linalg.norm(pred[:, :3] - gt[:, :3], axis=-1)
    yaw = np.degrees(np.abs(wrap_angle(torch.from_numpy(pred[:, 6] - gt[:, 6])).numpy()))
    size = np.abs(pred[:, 3:6] - gt[:, 3:6])
    return PoseErrors(len(pred), float(np.median(translation)), float(np.median(yaw)),
                      tuple(float(v) for v in np.median(size, axis=0)))


def _evaluate_class(gt_by_frame: Mapping[str, Sequence[ObjectLabel]],
                    pred_by_frame: Mapping[str, Sequence[ObjectLabel]], category: str,
                    dontcare_in_image: bool) -> ClassResult:
    frames = [_frame(gt, pred_by_frame.get(frame_id, ()), category)
              for frame_id, gt in gt_by_frame.items()]
    _attach_ious(frames)
    thresholds = iou_thresholds_for(category)
    ap: dict[tuple[str, float], tuple[float, float, float]] = {}
    num_gt = [0, 0, 0]
    for metric in METRICS:
        for threshold in thresholds:
            values = []
            for level in range(len(DIFFICULTIES)):
                results = [_classify(frame, metric, threshold, level, dontcare_in_image)
                           for frame in frames]
                scores = np.concatenate([r[0] for r in results]) if results else np.zeros(0)
                is_tp = (np.concatenate([r[1] for r in results]) if results
                         else np.zeros(0, dtype=bool))
                num_gt[level] = sum(r[3] for r in results)
                values.append(average_precision_r40(scores, is_tp, num_gt[level]))
            ap[(metric, threshold)] = tuple(values)
    return ClassResult(
        category=category, iou_thresholds=thresholds, ap=ap, num_gt=tuple(num_gt),
        num_pred=sum(len(frame.pred_scores) for frame in frames),
        errors=_pose_errors(frames, dontcare_in_image),
    )


def evaluate(gt_by_frame: Mapping[str, Sequence[ObjectLabel]],
             pred_by_frame: Mapping[str, Sequence[ObjectLabel]],
             classes: Sequence[str] = ("Car",), dontcare_in_image: bool = False) -> EvalResult:
    """KITTI AP|R40 (BEV and 3D, per difficulty) and pose errors of predictions.

    Args:
        gt_by_frame: frame id -> ground-truth labels of every class, DontCare included.
        pred_by_frame: frame id -> predicted labels; a frame absent here has no predictions.
            A missing score counts as 1.0.
        classes: class names to evaluate (compared case-insensitively).
        dontcare_in_image: apply DontCare regions to BEV and 3D by their 2D boxes (see the
            module docstring); off by default, as in the devkit.
    Returns:
        An :class:`EvalResult`.
    Raises:
        ValueError: when predictions name frames that have no ground truth.
    """
    unknown = sorted(set(pred_by_frame) - set(gt_by_frame))
    if unknown:
        raise ValueError(f"predictions for frames without ground truth: {', '.join(unknown)}")
    results = {category: _evaluate_class(gt_by_frame, pred_by_frame, category,
                                         dontcare_in_image)
               for category in classes}
    return EvalResult(num_frames=len(gt_by_frame), classes=results,
                      dontcare_in_image=dontcare_in_image)


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _named(names: Sequence[str], values: Sequence[float]) -> dict[str, float | None]:
    return {name: _finite_or_none(value) for name, value in zip(names, values, strict=True)}


def to_json(result: EvalResult) -> dict:
    """A JSON-ready dict of ``result``; NaN values become None.

    Layout: ``{"frames", "dontcare_in_image", "classes": {name: {"iou_thresholds",
    "num_gt": {level: n}, "num_pred", "ap_r40": {"bev"|"3d": {"0.7": {level: AP}}},
    "pose_errors": {"matching", "pairs", "translation_m", "yaw_deg",
    "size_m": {"length", "width", "height"}}}}}``.
    """
    classes = {}
    for name, entry in result.classes.items():
        ap = {metric: {str(iou): _named(DIFFICULTIES, entry.ap[(metric, iou)])
                       for iou in entry.iou_thresholds}
              for metric in METRICS}
        errors = entry.errors
        classes[name] = {
            "iou_thresholds": list(entry.iou_thresholds),
            "num_gt": dict(zip(DIFFICULTIES, entry.num_gt, strict=True)),
            "num_pred": entry.num_pred,
            "ap_r40": ap,
            "pose_errors": {
                "matching": f"BEV IoU > {ERROR_MATCH_IOU}, hard level",
                "pairs": errors.pairs,
                "translation_m": _finite_or_none(errors.translation_m),
                "yaw_deg": _finite_or_none(errors.yaw_deg),
                "size_m": _named(("length", "width", "height"), errors.size_m),
            },
        }
    return {"frames": result.num_frames, "dontcare_in_image": result.dontcare_in_image,
            "classes": classes}


def _cell(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def format_table(result: EvalResult, width: int = 100) -> str:
    """Two plain-text tables: AP|R40 per class, metric, IoU and level; pose errors per class.

    Args:
        result: what :func:`evaluate` returned.
        width: the text width in characters.
    """
    ap_table = Table(title=f"KITTI AP|R40 (%) over {result.num_frames} frames")
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
                                 *(_cell(v, 2) for v in entry.ap[(metric, iou)]))
        errors = entry.errors
        errors_table.add_row(name, "/".join(str(n) for n in entry.num_gt), str(entry.num_pred),
                             str(errors.pairs), _cell(errors.translation_m, 3),
                             _cell(errors.yaw_deg, 2), *(_cell(v, 3) for v in errors.size_m))
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    console.print(ap_table)
    console.print(errors_table)
    return buffer.getvalue()
