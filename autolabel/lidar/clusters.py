"""A detection's object points among a frame's LiDAR points: DBSCAN clusters in its frustum,
scored against the box, and shared out so that no point belongs to two objects."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from autolabel.geometry import pixels_in_box, project_points


@dataclasses.dataclass(frozen=True)
class ProjectedPoints:
    """A frame's points projected into its image once, for the frusta of all its detections.

    Attributes:
        pixels: (N, 2) (u, v). depth: (N,) the projection's ``w`` (see
            :func:`autolabel.geometry.project_points`).
    """

    pixels: torch.Tensor
    depth: torch.Tensor

    @classmethod
    def of(cls, points: np.ndarray, projection: np.ndarray) -> ProjectedPoints:
        """Points (N, 3) in the camera frame seen through the (3, 4) camera matrix."""
        return cls(*project_points(torch.as_tensor(np.asarray(points, dtype=np.float64)),
                                   torch.as_tensor(np.asarray(projection, dtype=np.float64))))

    def in_box(self, box2d: np.ndarray) -> np.ndarray:
        """(N,) bool: which points project inside the box (x1, y1, x2, y2 pixels) and lie
        in front of the camera."""
        box = torch.as_tensor(np.asarray(box2d, dtype=np.float64))
        return pixels_in_box(self.pixels, self.depth, box).numpy()


def dbscan(points: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """DBSCAN cluster labels of points, the same labels as open3d's ``cluster_dbscan``.

    Two points are neighbours when they are strictly closer than ``eps``; a point is a core
    point when it has at least ``min_points`` neighbours, itself included. A cluster is a
    connected set of core points (linked through neighbouring core points) together with
    every other point that neighbours one of them (its border points); the rest is noise.
    Clusters are numbered in the order of their lowest-index core point, and a border point
    that neighbours core points of several clusters goes to the lowest-numbered one: open3d
    grows its clusters one after another from the lowest unlabelled core point and never
    relabels a point, so these are its labels exactly.

    Args:
        points: (N, 3). eps: metres. min_points: core-point count.
    Returns:
        (N,) int64 labels, 0 ... C-1 for the clusters and -1 for noise.

    >>> dbscan(np.array([[0.0, 0, 0], [0.3, 0, 0], [0.6, 0, 0], [5.0, 0, 0]]), 0.5, 3)
    array([ 0,  0,  0, -1])
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    count = len(points)
    labels = np.full(count, -1, dtype=np.int64)
    # The k-d tree counts pairs exactly eps apart (and, by its own rounding, a hair beyond)
    # as neighbours; the exact test below keeps the squared distances under eps squared,
    # summed in the same order as open3d, so that ties at eps fall the same way.
    pairs = cKDTree(points).query_pairs(eps * (1 + 1e-9), output_type="ndarray")
    gap = points[pairs[:, 0]] - points[pairs[:, 1]]
    pairs = pairs[gap[:, 0] ** 2 + gap[:, 1] ** 2 + gap[:, 2] ** 2 < eps * eps]
    core = 1 + np.bincount(pairs.ravel(), minlength=count) >= min_points
    core_index = np.flatnonzero(core)
    if len(core_index) == 0:
        return labels
    linked = pairs[core[pairs[:, 0]] & core[pairs[:, 1]]]
    graph = coo_matrix((np.ones(len(linked), dtype=bool), (linked[:, 0], linked[:, 1])),
                       shape=(count, count))
    component = connected_components(graph, directed=False)[1][core_index]
    _, first, which = np.unique(component, return_index=True, return_inverse=True)
    labels[core_index] = np.argsort(np.argsort(first))[which]
    reach = pairs[core[pairs[:, 0]] != core[pairs[:, 1]]]
    reach = np.where(core[reach[:, :1]], reach, reach[:, ::-1])  # as (core, border)
    claim = np.full(count, count, dtype=np.int64)
    np.minimum.at(claim, reach[:, 1], labels[reach[:, 0]])
    border = claim < count
    labels[border] = claim[border]
    return labels


def _clusters(points: np.ndarray, eps: float, min_points: int) -> list[np.ndarray]:
    """Member indices of each :func:`dbscan` cluster of ``points``."""
    labels = dbscan(points, eps, min_points)
    return [np.flatnonzero(labels == label) for label in range(labels.max(initial=-1) + 1)]


def _bev_extent(points: np.ndarray) -> float:
    """Diagonal (metres) of the bird's-eye (x, z) bounding box of points (M, 3)."""
    return float(np.linalg.norm(np.ptp(points[:, [0, 2]], axis=0)))


@dataclasses.dataclass(frozen=True, eq=False)
class ClusterCandidate:
    """One candidate set of a detection's object points.

    Attributes:
        indices: (M,) indices into the frame's points.
        score: how well the points explain the detection, in [0, 1] (1 for clusters chosen
            by an instance mask).
    """

    indices: np.ndarray
    score: float


def cluster_candidates(points: np.ndarray, indices: np.ndarray, seen: ProjectedPoints,
                       box2d: np.ndarray, expected_depth: float, *, eps: float,
                       min_points: int, mask_share: float, depth_tolerance: float,
                       mask: np.ndarray | None = None, truncated: bool = False,
                       wide_eps: float = 0.0, wide_reach: float = 0.0,
                       context: np.ndarray | None = None) -> list[ClusterCandidate]:
    """The DBSCAN clusters of a frustum's non-ground points, each scored as the object.

    With an instance mask, the object is every cluster that projects mostly inside it (a
    share of at least ``mask_share`` of its points): a car seen from behind often
    splits into a cluster on its rear face and one on its rear window, with the unlit trunk
    lid between them, and the mask says both are the car while occluders and background
    fall outside it; that union is the only candidate. Without a mask (or when no cluster
    qualifies), each cluster is scored by the overlap (1D IoU) of its horizontal image extent
    with the box's, times (1 + the share of the box's height it covers) / 2, times the
    agreement of its median depth with ``expected_depth`` (a log-normal weight of width
    ``depth_tolerance``). The height share tells a car right in front of the camera,
    which fills its box from top to bottom, from a farther car seen past it. Occluders cover
    only part of the box and sit nearer than its height implies; background seen past the
    object lies farther. A box cut by the image border says nothing about how near the object may be
    (its height is cut too), so for a ``truncated`` box a nearer cluster agrees fully.

    Without a mask, the clusters at a second, wider radius ``wide_eps`` compete too, those
    whose bird's-eye extent is at most ``wide_reach``. A far car's LiDAR rows lie a quarter of
    a metre apart (0.4 degrees at 35 m) and a dark trunk lid returns none: at ``eps`` its
    rear face and rear window are two clusters and the rest noise, and either alone puts the
    box in the wrong place. The reach keeps a chain of background out.

    With ``context``, the non-ground points of a wider frustum around the box, a cluster's
    horizontal extent is that of the ``eps`` cluster it belongs to among them: a hedge, a
    wall or a car beyond, of which the box only cuts a piece, continues past the box's sides,
    while the object the box was drawn around ends at them. On kitti_dev, a few pixels of
    box jitter otherwise handed two occluded cars at 32 m a roadside object 13-16 m nearer,
    and one at 38 m a car 7 m beyond it.

    Args:
        points: (N, 3) the frame's points, camera frame. indices: (K,) the frustum's
            non-ground points among them. seen: ``points`` projected into the image.
            box2d: (4,) pixels.
        expected_depth: metres, e.g. the depth of the box-only hypothesis.
        eps, min_points: DBSCAN's neighbourhood radius (metres) and core-point count.
        mask: (H, W) bool instance mask over the image, or None.
        truncated: the box touches the image border.
        wide_eps: metres, the second radius (none when not above ``eps``).
        wide_reach: metres, the largest bird's-eye bounding-box diagonal of a wide cluster.
        context: (C,) indices among ``points`` of the non-ground points around the frustum
            (which they include), or None.
    Returns:
        Candidates, best first.
    """
    if len(indices) < min_points:
        return []
    frustum = points[indices]
    pixels = seen.pixels.numpy()
    clusters = _clusters(frustum, eps, min_points)
    if mask is not None:
        inside = pixels_in_mask(pixels[indices], mask)
        chosen = [members for members in clusters if inside[members].mean() >= mask_share]
        if chosen:
            return [ClusterCandidate(indices[np.concatenate(chosen)], 1.0)]
    if wide_eps > eps:
        clusters += [members for members in _clusters(frustum, wide_eps, min_points)
                     if _bev_extent(frustum[members]) <= wide_reach]
    continued = (None if context is None
                 else _continued_extents(points, context, pixels[:, 0], eps, min_points))
    candidates = []
    x1, y1, x2, y2 = box2d
    for members in clusters:
        cluster = frustum[members]
        u, v = pixels[indices[members]].T
        left, right = u.min(), u.max()
        if continued is not None:
            left, right = continued(indices[members], left, right)
        overlap = max(0.0, min(right, x2) - max(left, x1))
        coverage = overlap / (max(right, x2) - min(left, x1))
        coverage *= 0.5 + 0.5 * max(0.0, min(v.max(), y2) - max(v.min(), y1)) / max(y2 - y1, 1)
        ratio = np.median(cluster[:, 2]) / expected_depth
        if truncated:
            ratio = max(ratio, 1.0)
        agreement = math.exp(-0.5 * (math.log(max(ratio, 1e-6)) / depth_tolerance) ** 2)
        if coverage * agreement > 0:
            candidates.append(ClusterCandidate(indices[members], coverage * agreement))
    return sorted(candidates, key=lambda candidate: -candidate.score)


def _continued_extents(points: np.ndarray, context: np.ndarray, columns: np.ndarray,
                       eps: float, min_points: int
                       ) -> Callable[[np.ndarray, float, float], tuple[float, float]]:
    """A function (member indices, left, right) -> (left, right): the image columns a
    cluster spans widened to those of the ``context`` cluster holding most of its members
    (``columns``: (N,) the image column of each of ``points``)."""
    labels = dbscan(points[context], eps, min_points)
    owner = np.full(len(points), -1)
    owner[context] = labels
    u = columns[context]
    count = labels.max(initial=-1) + 1
    low = np.full(count, np.inf)
    high = np.full(count, -np.inf)
    kept = labels >= 0
    np.minimum.at(low, labels[kept], u[kept])
    np.maximum.at(high, labels[kept], u[kept])

    def widen(members: np.ndarray, left: float, right: float) -> tuple[float, float]:
        found = owner[members]
        found = found[found >= 0]
        if len(found) == 0:
            return left, right
        main = np.bincount(found).argmax()
        return min(left, low[main]), max(right, high[main])

    return widen


def assign_clusters(candidates: Sequence[Sequence[ClusterCandidate]], max_shared: float = 0.5
                    ) -> list[np.ndarray]:
    """Give each detection of a frame its object points, no point to two objects.

    The frame's points are one pool. Candidates of all detections are taken best score
    first; a detection keeps the first candidate it is offered whose points are not already
    (more than ``max_shared`` of them) another detection's. A nearer car's cluster usually
    explains its own box fully and wins it, so the car it hides takes its next-best cluster
    instead of its occluder's points.

    Args:
        candidates: per detection, its :class:`ClusterCandidate` list.
    Returns:
        Per detection the (M,) indices of its points; empty when every candidate was taken.

    >>> a, b = np.array([0, 1, 2]), np.array([5, 6])
    >>> near = [ClusterCandidate(a, 0.9)]
    >>> far = [ClusterCandidate(a, 0.5), ClusterCandidate(b, 0.2)]
    >>> [chosen.tolist() for chosen in assign_clusters([near, far])]
    [[0, 1, 2], [5, 6]]
    """
    offers = sorted(((candidate.score, d, candidate) for d, options in enumerate(candidates)
                     for candidate in options), key=lambda offer: (-offer[0], offer[1]))
    chosen: list[np.ndarray | None] = [None] * len(candidates)
    taken = np.zeros(0, dtype=np.int64)
    for _, d, candidate in offers:
        if chosen[d] is not None:
            continue
        shared = int(np.isin(candidate.indices, taken).sum())
        if shared > max_shared * len(candidate.indices):
            continue
        chosen[d] = candidate.indices
        taken = np.union1d(taken, candidate.indices)
    return [np.zeros(0, dtype=np.int64) if c is None else c for c in chosen]


def pixels_in_mask(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Which pixels (N, 2) as (u, v) fall on a True cell of ``mask`` (H, W); (N,) bool,
    False outside the image.

    >>> pixels_in_mask(np.array([[0.4, 0.2], [1.0, 0.0], [-1.0, 0.0]]), np.eye(2, dtype=bool))
    array([ True, False, False])
    """
    column, row = np.round(pixels).astype(np.int64).T
    height, width = mask.shape
    inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
    hit = np.zeros(len(pixels), dtype=bool)
    hit[inside] = mask[row[inside], column[inside]]
    return hit


def trim_cluster(points: np.ndarray, size: np.ndarray, sensor: np.ndarray | None = None,
                 substantial: float = 0.25, few: int = 20, anchors: int = 256) -> np.ndarray:
    """Cut a cluster that is too big for one object down to its nearest substantial part.

    DBSCAN chains objects that stand close together (a row of parked cars, a car against a
    hedge), and an instance mask can gather a few returns of a nearer object with the car's
    own. When the cluster reaches farther than 1.2 footprint diagonals of ``size`` (in the
    bird's-eye view), only the points within one diagonal of an anchor are kept: the point
    nearest to the sensor whose one-diagonal neighbourhood holds ``few`` points or more, or
    at least ``substantial`` times as many as the fullest such neighbourhood. A handful of
    stray returns in front of a car does not anchor it (on the crowded synthetic frames 15
    returns of a nearer car, seen in the far car's mask, held 658 of the car's own 9 m away);
    a hedge behind a car, however many its returns, does not take the car's place.

    Args:
        points: (M, 3) camera frame. size: (3,) the class's (l, w, h).
        sensor: (3,) sensor position, None for the camera's origin.
        substantial, few: an anchor's neighbourhood holds ``few`` points or at least this
            share of the fullest one's.
        anchors: at most this many points, evenly spread in distance, are tried as anchors.
    Returns:
        (K, 3), K <= M.

    >>> row = np.array([[0.0, 0.0, z] for z in (10.0, 11.0, 12.0, 20.0)])
    >>> trim_cluster(row, np.array([3.88, 1.63, 1.53]))[:, 2].tolist()
    [10.0, 11.0, 12.0]
    >>> stray = np.array([[0.0, 0.0, 5.0]] + [[0.0, 0.0, 10.0 + z / 10] for z in range(20)])
    >>> float(trim_cluster(stray, np.array([3.88, 1.63, 1.53]))[:, 2].min())
    10.0
    """
    if len(points) == 0:
        return points
    sensor = np.zeros(3) if sensor is None else np.asarray(sensor, dtype=np.float64)
    bev = points[:, [0, 2]]
    order = np.argsort(np.linalg.norm(bev - sensor[[0, 2]], axis=1), kind="stable")
    diagonal = float(np.hypot(size[0], size[1]))
    if np.linalg.norm(bev - bev[order[0]], axis=1).max() <= 1.2 * diagonal:
        return points
    tried = order[::math.ceil(len(order) / anchors)]
    counts = (np.linalg.norm(bev[tried, None] - bev[None], axis=-1) <= diagonal).sum(1)
    qualified = (counts >= few) | (counts >= substantial * counts.max())
    anchor = bev[tried[int(np.argmax(qualified))]]
    return points[np.linalg.norm(bev - anchor, axis=1) <= diagonal]
