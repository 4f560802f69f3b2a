"""The tensors a chunk of hypotheses is fitted on: each hypothesis's observations (its points,
the sensor's depth and the instance mask in its render window, the free space around it, the
image model's NOCS map) and its neighbours' footprints, gathered into one
:class:`autolabel.fit.ObjectBatch` (:func:`build_batch`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from autolabel.fit import ObjectBatch
from autolabel.geometry import project_points
from autolabel.init import GroundPlane, Hypothesis, border_edges
from autolabel.lidar.ground import ray_heights
from autolabel.lidar.rays import free_samples
from autolabel.occlusion import occluded_edges
from autolabel.render import detection_windows

if TYPE_CHECKING:
    from autolabel.pipeline import FrameInput, PipelineConfig


def window_samples(image: np.ndarray, window: np.ndarray, size: int) -> np.ndarray:
    """Nearest-pixel samples of an image at the pixel centres of square windows.

    Args:
        image: (H, W) array. window: (B, 4) regions (x0, y0, x1, y1) in image coordinates
            (integers are pixel centres). size: S.
    Returns:
        (B, S, S) samples; 0 outside the image.

    >>> window_samples(np.arange(16.0).reshape(4, 4), np.array([[0.0, 0.0, 4.0, 4.0]]), 2)
    array([[[ 5.,  7.],
            [13., 15.]]])
    """
    steps = (np.arange(size) + 0.5) / size
    columns = np.floor(window[:, 0:1] + steps * (window[:, 2:3] - window[:, 0:1]) + 0.5)
    rows = np.floor(window[:, 1:2] + steps * (window[:, 3:4] - window[:, 1:2]) + 0.5)
    columns, rows = columns.astype(int), rows.astype(int)
    height, width = image.shape
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((columns >= 0) & (columns < width))[
        :, None, :]
    values = image[rows.clip(0, height - 1)[:, :, None], columns.clip(0, width - 1)[:, None, :]]
    return np.where(inside, values, 0)


def sparse_depth_windows(points: np.ndarray, projection: np.ndarray, window: np.ndarray,
                         size: int, use: np.ndarray | None = None) -> np.ndarray:
    """Nearest point depth per window pixel, 0 where no point lands.

    Args:
        points: (N, 3) camera frame. projection: (3, 4). window: (B, 4). size: S.
        use: (B, N) bool, which points each window takes; None: all.
    Returns:
        (B, S, S) float32 metres.
    """
    out = np.zeros((len(window), size, size), dtype=np.float32)
    if len(points) == 0:
        return out
    pixels, depth = project_points(torch.as_tensor(points, dtype=torch.float64),
                                   torch.as_tensor(projection, dtype=torch.float64))
    pixels, depth = pixels.numpy(), depth.numpy()
    ahead = depth > 0.5
    for b, (x0, y0, x1, y1) in enumerate(window):
        column = np.floor((pixels[:, 0] - x0) / (x1 - x0) * size).astype(int)
        row = np.floor((pixels[:, 1] - y0) / (y1 - y0) * size).astype(int)
        keep = ahead & (column >= 0) & (column < size) & (row >= 0) & (row < size)
        if use is not None:
            keep &= use[b]
        flat = row[keep] * size + column[keep]
        nearest = np.full(size * size, np.inf)
        np.minimum.at(nearest, flat, depth[keep])
        out[b] = np.where(np.isfinite(nearest), nearest, 0).reshape(size, size)
    return out


@dataclasses.dataclass
class FitObject:
    """One hypothesis of one detection, before batching (``plane``: the frame's ground;
    ``viewpoint``: the image model's (K,) observation-angle bin probabilities, or None;
    ``nocs``: its (S, S, 3) NOCS map and (S, S) bool validity in the render window, or
    None)."""

    frame: int
    detection: int
    hypothesis: int
    initial: Hypothesis
    plane: GroundPlane | None
    occluder: np.ndarray | None = None
    viewpoint: np.ndarray | None = None
    nocs: tuple[np.ndarray, np.ndarray] | None = None


def free_edges(box2d: np.ndarray, image_size: tuple[int, int] | None,
               occluder: np.ndarray | None, amodal: bool = False) -> np.ndarray:
    """(4,) bool: the edges of a detection box that do not bound the object, cut by the
    image border or against a nearer object's mask ``occluder`` (or None). An ``amodal`` box
    bounds the whole object whatever hides it (a projected 3D box, ``box_extent="box"``:
    KITTI's 2D labels of occluded cars, too, lie within a median 0.5 px of their 3D boxes'
    projections), so only the image border cuts it.

    >>> nearer = np.zeros((100, 100), dtype=bool); nearer[:, 42:] = True  # a car to the right
    >>> box = np.array([0.0, 40.0, 41.5, 60.0])  # touching the left border
    >>> free_edges(box, (100, 100), nearer).tolist(), free_edges(box, (100, 100), nearer,
    ...                                                          True).tolist()
    ([True, False, True, False], [True, False, False, False])
    """
    cut = border_edges(box2d, image_size)
    return cut if amodal else cut | occluded_edges(box2d, occluder)


def _observed_points(hypothesis: Hypothesis, limit: int, rng: np.random.Generator):
    points = np.asarray(hypothesis.points, dtype=np.float64).reshape(-1, 3)
    if len(points) > limit:
        points = points[rng.choice(len(points), limit, replace=False)]
    padded = np.zeros((limit, 3))
    padded[: len(points)] = points
    valid = np.zeros(limit, dtype=bool)
    valid[: len(points)] = True
    return padded, valid


def _free_space_rays(points: np.ndarray, origin: np.ndarray, objects: Sequence[FitObject],
                     band: tuple[float, float]) -> np.ndarray:
    """(B, N) bool: the returns whose rays each object's free-space loss follows, those that
    pass the object's initial position between ``band`` metres above its ground (every
    return for an object without a ground)."""
    keep = np.ones((len(objects), len(points)), dtype=bool)
    done: dict[int, int] = {}  # a detection's hypotheses share place and ground
    for row, obj in enumerate(objects):
        plane = obj.initial.ground or obj.plane
        if plane is None:
            continue
        if obj.detection in done:
            keep[row] = keep[done[obj.detection]]
            continue
        reach = float(np.hypot(*(obj.initial.center - origin)[[0, 2]]))
        height = ray_heights(points, origin, plane, reach)
        keep[row] = (height > band[0]) & (height < band[1])
        done[obj.detection] = row
    return keep


def _obstacles(objects: Sequence[FitObject], neighbours: Sequence[FitObject]
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per hypothesis, the bird's-eye footprints of the other detections of its frame.

    The footprints are the initial boxes from their points of the other detections among
    ``neighbours`` (box-only ones are too uncertain to push anything), as
    (x, z, length, width, yaw) rows.

    Returns:
        (B, K, 5) footprints and (B, K) validity, K at least 1.
    """
    footprint = {(o.frame, o.detection): np.array([o.initial.center[0], o.initial.center[2],
                                                   o.initial.size[0], o.initial.size[1],
                                                   o.initial.yaw])
                 for o in neighbours if o.hypothesis == 0 and not o.initial.weak}
    others = [[box for (frame, detection), box in footprint.items()
               if frame == o.frame and detection != o.detection] for o in objects]
    count = max(1, max(len(boxes) for boxes in others))
    rows = np.zeros((len(objects), count, 5))
    valid = np.zeros((len(objects), count), dtype=bool)
    for i, boxes in enumerate(others):
        if boxes:
            rows[i, :len(boxes)] = boxes
            valid[i, :len(boxes)] = True
    return rows, valid


def build_batch(frames: Sequence[FrameInput], objects: Sequence[FitObject],
                config: PipelineConfig, device: torch.device,
                neighbours: Sequence[FitObject] | None = None) -> ObjectBatch:
    """Tensors of the hypotheses ``objects`` of a chunk of frames (see :class:`ObjectBatch`);
    their obstacles are the other detections among ``neighbours`` (default: ``objects``)."""
    size = config.fit.render.window_size
    rng = np.random.default_rng(config.seed)
    projection = np.stack([frames[o.frame].calib.P2 for o in objects])
    box2d = np.stack([frames[o.frame].detections[o.detection].box2d for o in objects])
    window = detection_windows(torch.as_tensor(box2d), config.fit.render.window_margin).numpy()
    amodal = config.fit.box_extent == "box"
    free = np.stack([free_edges(box, frames[o.frame].image_size, o.occluder, amodal)
                     for box, o in zip(box2d, objects, strict=True)])
    observed = np.zeros((len(objects), size, size), dtype=np.float32)
    mask = np.zeros((len(objects), size, size), dtype=np.float32)
    has_mask = np.zeros(len(objects), dtype=bool)
    mask_weight = np.ones((len(objects), size, size), dtype=np.float32)
    for f, frame in enumerate(frames):
        rows = [i for i, o in enumerate(objects) if o.frame == f]
        if not rows:
            continue
        if frame.depth is not None:
            observed[rows] = window_samples(np.asarray(frame.depth, np.float32), window[rows],
                                            size)
        elif frame.points is not None:
            observed[rows] = sparse_depth_windows(
                frame.points, frame.calib.P2, window[rows], size,
                _free_space_rays(frame.points, frame.calib.lidar_origin(),
                                 [objects[i] for i in rows], config.free_space_band))
        for i in rows:
            detection_mask = frame.detections[objects[i].detection].mask
            if detection_mask is not None:
                mask[i] = window_samples(detection_mask.astype(np.float32), window[i:i + 1],
                                         size)[0]
                has_mask[i] = True
            if objects[i].occluder is not None:
                mask_weight[i] -= window_samples(objects[i].occluder.astype(np.float32),
                                                 window[i:i + 1], size)[0]
    obstacles, obstacles_valid = _obstacles(objects,
                                            objects if neighbours is None else neighbours)
    points, points_valid = zip(*(_observed_points(o.initial, config.max_points, rng)
                                 for o in objects), strict=True)
    grounds = [o.initial.ground for o in objects]
    free_points, free_valid = _free_ray_samples(frames, objects, config)
    nocs, nocs_valid = _nocs_targets(objects, size)
    ground = np.array([np.append(plane.normal, plane.offset) if plane is not None
                       else np.zeros(4) for plane in grounds])
    categories = [frames[o.frame].detections[o.detection].category for o in objects]
    log_mean = np.log(np.stack([config.init.mean_size(name) for name in categories]))
    log_std = np.stack([config.init.size_log_std(name) for name in categories])

    def tensor(array, dtype=torch.float32):
        return torch.as_tensor(np.array(array), dtype=dtype, device=device)

    return ObjectBatch(
        projection=tensor(projection), box2d=tensor(box2d),
        free_edges=tensor(free, torch.bool), window=tensor(window),
        points=tensor(np.stack(points)), points_valid=tensor(np.stack(points_valid), torch.bool),
        observed_depth=tensor(observed), mask=tensor(mask), has_mask=tensor(has_mask, torch.bool),
        mask_weight=tensor(mask_weight),
        ground=tensor(ground), has_ground=tensor([plane is not None for plane in grounds],
                                                torch.bool),
        obstacles=tensor(obstacles), obstacles_valid=tensor(obstacles_valid, torch.bool),
        size_log_mean=tensor(log_mean),
        size_log_std=tensor(log_std),
        center=tensor([o.initial.center for o in objects]),
        yaw=tensor([o.initial.yaw for o in objects]),
        size=tensor([o.initial.size for o in objects]),
        free_points=None if free_points is None else tensor(free_points),
        free_valid=None if free_valid is None else tensor(free_valid, torch.bool),
        nocs=None if nocs is None else tensor(nocs),
        nocs_valid=None if nocs_valid is None else tensor(nocs_valid, torch.bool),
    )


def _nocs_targets(objects: Sequence[FitObject], size: int
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(B, S, S, 3) the image model's NOCS maps of the hypotheses, resampled to the render
    windows' S x S pixels, and (B, S, S) bool where they hold (none for a hypothesis
    without one); None for both when no hypothesis has one."""
    if all(o.nocs is None for o in objects):
        return None, None
    nocs = np.zeros((len(objects), size, size, 3), dtype=np.float32)
    valid = np.zeros((len(objects), size, size), dtype=bool)
    for row, o in enumerate(objects):
        if o.nocs is None:
            continue
        target, on = (torch.tensor(np.asarray(a, dtype=np.float32)) for a in o.nocs)
        if target.shape[0] != size:  # the image model's crops have another size
            target = torch.nn.functional.interpolate(
                target.permute(2, 0, 1)[None], (size, size), mode="bilinear",
                align_corners=False)[0].permute(1, 2, 0)
            on = torch.nn.functional.interpolate(on[None, None], (size, size))[0, 0]
        nocs[row], valid[row] = target.numpy(), on.numpy() > 0.5
    return nocs, valid


def _free_ray_samples(frames: Sequence[FrameInput], objects: Sequence[FitObject],
                      config: PipelineConfig) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(B, F, 3) places the LiDAR saw through around each hypothesis
    (:func:`autolabel.lidar.rays.free_samples`) and (B, F) validity; None for both when no
    hypothesis has LiDAR and a ground, or ``config.free_rays`` is None.

    A detection's hypotheses (which share its centre and ground) share one draw, so they are
    compared on the same samples; the draw is seeded by ``config.seed`` and the detection's
    index, so it does not depend on how frames are batched."""
    settings = config.free_rays
    if settings is None:
        return None, None
    samples = []
    drawn: dict[tuple[int, int], np.ndarray] = {}
    for o in objects:
        frame, plane = frames[o.frame], o.initial.ground or o.plane
        if frame.points is None or plane is None:
            samples.append(np.zeros((0, 3)))
            continue
        key = (o.frame, o.detection)
        if key not in drawn:
            category = frame.detections[o.detection].category
            radius = 0.5 * float(config.init.mean_size(category)[0]) + settings.reach
            drawn[key] = free_samples(frame.points, frame.calib.lidar_origin(), plane,
                                      o.initial.center, radius, config.free_space_band,
                                      settings.margin, settings.per_ray, settings.count,
                                      np.random.default_rng([config.seed, o.detection]))
        samples.append(drawn[key])
    if not any(len(s) for s in samples):
        return None, None
    width = max(len(s) for s in samples)
    points = np.zeros((len(objects), width, 3))
    valid = np.zeros((len(objects), width), dtype=bool)
    for row, s in enumerate(samples):
        points[row, :len(s)] = s
        valid[row, :len(s)] = True
    return points, valid
