"""Frame-level API: detections plus sensors in, verified 9D labels out.

    import autolabel
    results = autolabel.label_frame(image, calib, detections, points=lidar_rect)
    [(r.label.category, r.label.center, r.accepted, r.reasons) for r in results]

:func:`label_frames` turns every detection of a chunk of frames into several hypotheses
(:mod:`autolabel.init`), fits them in batches of at most ``max_fit_objects`` hypotheses
(:mod:`autolabel.batching` gathers a batch's observations, :mod:`autolabel.fit` fits it),
keeps the best hypothesis per detection and verifies it (:mod:`autolabel.verify`). Its two
halves are :func:`prepare_frame` (CPU work, one frame, in any process) and
:func:`fit_frames` (a chunk of prepared frames, on the device), so that
:func:`label_dataset` and the CLI can build the next frames' hypotheses in worker processes
while a batch is fitted. Inputs are arrays and records; reading files is the job of
:mod:`autolabel.io` and the CLI.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from autolabel.batching import FitObject, build_batch, free_edges
from autolabel.camera_only import RoadConfig, camera_hypothesis, detection_grounds
from autolabel.classes import DEFAULT_SIZE_LOG_STD
from autolabel.extent import ExtentConfig, enclose_points
from autolabel.fit import FitConfig, FitOutput, ObjectBatch, fit
from autolabel.geometry import rotation_to_yaw
from autolabel.image.evidence import (
    FrameEvidence,
    ImageEvidenceConfig,
    read_frame,
    viewpoint_cost,
)
from autolabel.init import (
    GroundPlane,
    Hypothesis,
    InitConfig,
    frame_hypotheses,
    yaw_hypotheses,
)
from autolabel.io.detections import Detection
from autolabel.io.kitti import Calib
from autolabel.label import ObjectLabel
from autolabel.lidar.rays import FreeRayConfig
from autolabel.losses import size_prior_loss
from autolabel.occlusion import occluder_masks
from autolabel.render import Rendered, RenderSettings, detection_windows, render
from autolabel.stream import AHEAD_BATCHES, WorkerLost, map_ahead
from autolabel.surfels import (
    extract_surface_points,
    pose_surfels,
    project_to_surface,
    surfel_spacing,
)
from autolabel.verify import (
    Observation,
    VerifyConfig,
    box_iou_2d,
    length_seen,
    mask_iou,
    plausibility,
    verify,
    visible_share,
)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything that decides a label, in one place.

    Attributes:
        fit, verify, init: settings of the stages.
        yaw_hypotheses: initial yaws per detection: 1 (the initial one), 2 (and its
            opposite heading) or 4 (every quarter turn).
        shape_hypotheses: how many of a detection's hypotheses, the lowest losses after the
            pose stage, go on to the shape stage (which costs about 2.5 times as much a
            step); ``yaw_hypotheses`` or more: all, fitted in one run.
        max_points: observed points per object kept for the fit (a seeded subsample).
        free_space_band: with LiDAR and a ground plane, the heights (metres) above an
            object's ground where the LiDAR's rays tell of free space around it, for both
            free-space terms: only returns whose rays pass the object's initial position in
            this band enter the rendered free-space loss
            (:func:`autolabel.lidar.ground.ray_heights`), and the free-ray samples lie in it.
            Rays through car windows or over the bonnet, or grazing the road near the wheels,
            pulled roofs down (by a median 2 cm on kitti_dev, and a car 0.37 m too short
            where far returns through the windows fell inside the band by their own height).
        free_rays: where the fit's free-ray term (:class:`autolabel.losses.FreeRayLoss`)
            takes its samples of the places the LiDAR saw through around each object
            (:mod:`autolabel.lidar.rays`); None: no such term.
        max_fit_objects: hypotheses optimised at once; a chunk of frames with more is fitted
            in several pieces (each detection's hypotheses together), which bounds memory:
            about 1.5 GB peak for the whole process at 128 on CPU, 0.97 GB at 32
            (benchmarks/results/memory.json).
        image: which predictions of the image model the fit uses (needs the frame's image).
        extent: how a LiDAR label's box grows to enclose the object's points
            (:mod:`autolabel.extent`); None: the fitted shape's box as it is. Depth-map
            points are too noisy for it and are not used.
        road: how frames without LiDAR or depth estimate their road from their detections
            (camera-only hypotheses, :mod:`autolabel.camera_only`).
        device: 'auto' (CUDA when present), 'cpu' or 'cuda'.
        seed: seeds subsampling and surfel extraction.
    """

    fit: FitConfig = FitConfig()
    verify: VerifyConfig = VerifyConfig()
    init: InitConfig = InitConfig()
    yaw_hypotheses: int = 4
    shape_hypotheses: int = 1
    max_points: int = 400
    free_space_band: tuple[float, float] = (0.3, 0.9)
    free_rays: FreeRayConfig | None = FreeRayConfig()
    max_fit_objects: int = 128
    image: ImageEvidenceConfig = ImageEvidenceConfig()
    extent: ExtentConfig | None = ExtentConfig()
    road: RoadConfig = RoadConfig()
    device: str = "auto"
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class FrameInput:
    """One frame's inputs.

    Attributes:
        frame_id: name of the frame. image_size: (height, width) pixels.
        calib: calibration (P2 projects the rectified camera frame).
        detections: the 2D detections to label.
        points: (N, 3) LiDAR points in the rectified camera frame, or None.
        depth: (H, W) depth map in metres (0 = unknown), or None.
        image: (H, W, 3) uint8 pixels, or None; read only by the image model
            (``PipelineConfig.image``).
    """

    frame_id: str
    image_size: tuple[int, int]
    calib: Calib
    detections: Sequence[Detection]
    points: np.ndarray | None = None
    depth: np.ndarray | None = None
    image: np.ndarray | None = None


@dataclasses.dataclass
class LabelResult:
    """One detection's label with everything that explains it.

    Attributes:
        label: the 9D label; its ``score`` is the verification score.
        accepted: whether verification accepted it. reasons: why (not).
        source: where the 3D evidence came from: 'lidar', 'depth' or 'box' (weak).
        latent: (D,) the fitted shape code. losses: final value of each loss term.
        evidence: the verification terms. detection_score: the detector's score.
        hypothesis: index of the kept initial yaw. iterations: optimiser steps.
        seconds: this object's share of the fitting time.
    """

    label: ObjectLabel
    accepted: bool
    reasons: tuple[str, ...]
    source: str
    latent: np.ndarray
    losses: dict[str, float]
    evidence: dict[str, float]
    detection_score: float
    hypothesis: int
    iterations: int
    seconds: float

    def extras(self) -> dict:
        """The JSON-ready fields that go next to the label in the per-frame JSON."""
        return {"accepted": self.accepted, "reasons": list(self.reasons),
                "source": self.source, "weak": self.source == "box",
                "latent": self.latent.tolist(), "losses": self.losses,
                "evidence": self.evidence, "detection_score": self.detection_score,
                "hypothesis": self.hypothesis, "iterations": self.iterations,
                "seconds": self.seconds}


@dataclasses.dataclass
class FrameResult:
    """One frame's labels and frame-level facts.

    Attributes:
        frame_id: the frame. labels: one :class:`LabelResult` per detection, in order.
        ground_plane: the plane estimated from the frame's points, or None.
        seconds: the frame's share of the time its batch took (hypotheses and fit).
    """

    frame_id: str
    labels: list[LabelResult]
    ground_plane: GroundPlane | None
    seconds: float

    def extras(self) -> dict:
        """The JSON-ready frame-level fields of the per-frame JSON."""
        plane = self.ground_plane
        return {"ground_plane": None if plane is None else {"normal": plane.normal.tolist(),
                                                            "offset": float(plane.offset)},
                "seconds": round(self.seconds, 4)}


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _camera_hypotheses(frame: FrameInput, initial: Sequence[Hypothesis],
                       plane: GroundPlane | None, occluders: Sequence[np.ndarray | None],
                       alphas: np.ndarray, config: InitConfig,
                       road: RoadConfig, amodal: bool) -> list[Hypothesis]:
    """``initial`` with every weak (box-only) hypothesis replaced by the camera-only one at
    the predicted observation angle (``alphas``: (D,) radians), on its ground, else the
    frame's plane, else the road estimated from the frame's detections around the level
    road below the camera (``config.camera_height``; :func:`detection_grounds`); ``amodal``:
    the boxes bound the whole objects (:func:`free_edges`)."""
    free = [free_edges(d.box2d, frame.image_size, occluder, amodal)
            for d, occluder in zip(frame.detections, occluders, strict=True)]
    if plane is not None:
        grounds = [plane] * len(initial)
    else:
        grounds = detection_grounds(np.array([d.box2d for d in frame.detections]), alphas,
                                    np.array([config.mean_size(d.category)
                                              for d in frame.detections]),
                                    frame.calib.P2, np.array(free), config.camera_height, road)
    return [camera_hypothesis(d.box2d, d.category, frame.calib.P2, float(alpha),
                              h.ground or ground, edges, config)
            if h.weak else h
            for h, d, ground, edges, alpha in zip(initial, frame.detections, grounds, free,
                                                  alphas, strict=True)]


def _hypotheses(frame: FrameInput, config: PipelineConfig, evidence: FrameEvidence | None,
                occluding: Sequence[Detection]) -> tuple[list[FitObject], GroundPlane | None]:
    """The frame's hypotheses and ground plane; ``evidence``: the image model's reading of
    its detections, or None; ``occluding``: the frame's detections with the masks that
    decide what hides what."""
    if not frame.detections:
        return [], None
    initial, plane = frame_hypotheses(frame.points, frame.calib, frame.detections,
                                      frame.image_size, config.init, depth=frame.depth)
    occluders = occluder_masks(occluding, [float(np.linalg.norm(h.center)) for h in initial])
    if evidence is not None and config.image.camera_only:
        initial = _camera_hypotheses(frame, initial, plane, occluders, evidence.alphas,
                                     config.init, config.road, config.fit.box_extent == "box")
    keep = {1: [0], 2: [0, 2], 4: [0, 1, 2, 3]}[config.yaw_hypotheses]
    objects = []
    for d, hypothesis in enumerate(initial):
        variants = yaw_hypotheses(hypothesis)
        nocs = (None if evidence is None or evidence.nocs is None or hypothesis.weak
                else (evidence.nocs[d], evidence.nocs_valid[d]))
        objects.extend(FitObject(0, d, k, variants[k], plane, occluders[d],
                               None if evidence is None else evidence.viewpoints[d], nocs)
                       for k in keep)
    return objects, plane


@dataclasses.dataclass
class PreparedFrame:
    """A frame with its initial hypotheses, what :func:`fit_frames` takes.

    Attributes:
        frame: the inputs. objects: the hypotheses of its detections, in order (their
            ``frame`` is 0). plane: the ground plane from its points, or None.
        seconds: the time it took to make them.
    """

    frame: FrameInput
    objects: list[FitObject]
    plane: GroundPlane | None
    seconds: float


def prepare_frame(frame: FrameInput, config: PipelineConfig = PipelineConfig()
                  ) -> PreparedFrame:
    """The frame's initial hypotheses (ground plane, clusters, yaw hypotheses, occluders)
    and, when enabled and the frame has its image, the image model's evidence: the CPU side
    of labelling it, which needs no prior or device. Detections without a mask get the
    predicted one when ``config.image.masks``; the prepared frame keeps no pixels."""
    start = time.perf_counter()
    evidence, occluding = None, frame.detections
    if frame.image is not None and config.image.enabled and frame.detections:
        evidence = read_frame(frame.image, frame.detections,
                              config.fit.render.window_margin, config.image)
        if evidence.masks is not None:  # masks or occluders
            occluding = [d if d.mask is not None else dataclasses.replace(d, mask=mask)
                         for d, mask in zip(frame.detections, evidence.masks, strict=True)]
            if config.image.masks:
                frame = dataclasses.replace(frame, detections=occluding)
    frame = dataclasses.replace(frame, image=None)
    objects, plane = _hypotheses(frame, config, evidence, occluding)
    return PreparedFrame(frame, objects, plane, time.perf_counter() - start)


def _choice_costs(objects: Sequence[FitObject], output: FitOutput,
                  config: ImageEvidenceConfig) -> Tensor:
    """(B,) what decides between a detection's hypotheses: the fit's total loss, plus the
    weighted viewpoint cost of the fitted heading where the image model read the crop
    (``weak_viewpoint_weight`` for weak hypotheses, else ``viewpoint_weight``); infinite
    where the fit broke down."""
    total = output.total
    weights = {i: config.weak_viewpoint_weight if o.initial.weak else config.viewpoint_weight
               for i, o in enumerate(objects) if o.viewpoint is not None}
    rows = [i for i, weight in weights.items() if weight > 0]
    if rows:
        index = torch.as_tensor(rows, device=total.device)
        viewpoints = torch.as_tensor(np.stack([objects[i].viewpoint for i in rows]),
                                     device=total.device)
        cost = viewpoint_cost(viewpoints, rotation_to_yaw(output.rotation[index]),
                              output.center[index], config.probability_floor)
        scale = torch.tensor([weights[i] for i in rows], dtype=total.dtype,
                             device=total.device)
        total = total.index_add(0, index, scale * cost.to(total.dtype))
    return torch.where(output.finite, total, math.inf)


def _best_hypotheses(objects: Sequence[FitObject], output: FitOutput, keep: int,
                     config: ImageEvidenceConfig) -> list[int]:
    """Indices of the ``keep`` hypotheses of every detection with the lowest
    :func:`_choice_costs` (those whose fit broke down last), in order."""
    total = _choice_costs(objects, output, config).cpu().tolist()
    chosen: list[int] = []
    for _, group in itertools.groupby(range(len(objects)),
                                      key=lambda i: (objects[i].frame, objects[i].detection)):
        chosen += sorted(sorted(group, key=lambda i: total[i])[:keep])
    return chosen


def _fit_in_stages(prior, batch: ObjectBatch, objects: list[FitObject], config: PipelineConfig
                   ) -> tuple[FitOutput, list[FitObject], ObjectBatch]:
    """Fit the hypotheses; only the ``shape_hypotheses`` best of each detection after the
    pose stage go on to the shape stage (the costly one), from where the pose stage left
    them. Returns the output of the hypotheses fitted to the end, which ones, their batch."""
    settings = config.fit
    if not settings.fit_shape or config.shape_hypotheses >= config.yaw_hypotheses:
        return fit(prior, batch, settings, config.seed), objects, batch
    posed = fit(prior, batch, dataclasses.replace(
        settings, iterations=settings.pose_iterations, fit_shape=False), config.seed)
    chosen = _best_hypotheses(objects, posed, config.shape_hypotheses, config.image)
    index = torch.as_tensor(chosen, device=batch.center.device)
    start = dataclasses.replace(batch.rows(index), center=posed.center[index],
                                yaw=rotation_to_yaw(posed.rotation[index]),
                                size=posed.size[index])
    shaped = fit(prior, start, dataclasses.replace(
        settings, iterations=settings.iterations - settings.pose_iterations,
        pose_iterations=0), config.seed)
    shaped = dataclasses.replace(shaped, iterations=posed.iterations + shaped.iterations,
                                 seconds=posed.seconds + shaped.seconds)
    return shaped, [objects[i] for i in chosen], start


def constrained_box_iou(box: np.ndarray, detection: np.ndarray, free: np.ndarray) -> float:
    """IoU of a label's image box with its detection on the edges the detection constrains:
    on a free edge (cut by the image border or by a nearer object, where the detection shows
    only the visible part) the label's edge is taken as the detection's.

    >>> detection = np.array([0.0, 0.0, 10.0, 4.0])  # only the top of an occluded car
    >>> constrained_box_iou(np.array([0.0, 0.0, 10.0, 20.0]), detection, np.zeros(4, bool))
    0.2
    >>> constrained_box_iou(np.array([0.0, 0.0, 10.0, 20.0]), detection,
    ...                     np.array([False, False, False, True]))
    1.0
    """
    judged = np.where(free, detection, box)
    return float(box_iou_2d(torch.as_tensor(judged[None], dtype=torch.float64),
                            torch.as_tensor(np.asarray(detection, np.float64)[None]))[0])


@dataclasses.dataclass(frozen=True)
class _Measured:
    """Everything the labels and their verification take from a fitted batch, read back
    from the device once for the batch (read per object and value, each read waits for the
    device). Per hypothesis:

    * ``center`` (B, 3) and ``size`` (B, 3): the label boxes, the fitted boxes grown to
      enclose their LiDAR points (:mod:`autolabel.extent`); ``rotation`` (B, 3, 3);
      ``latent`` (B, D);
    * ``finite`` (B,), ``free_edges`` (B, 4), ``has_mask`` (B,) bool; ``points`` (B,) how
      many observed points were fitted;
    * ``inlier_fraction``, ``image_iou`` (box IoU, or mask IoU where there is a mask),
      ``plausibility``, ``length_seen``, ``visible`` (B,) each (see :mod:`autolabel.verify`);
    * ``size_z2`` (B,): mean squared z-score of the fitted log-size about the class mean
      under the generic spread (:data:`autolabel.classes.DEFAULT_SIZE_LOG_STD`), what the
      score's size typicality judges: a class's own narrower spread (KITTI's cars) steadies
      the fit, but a well-fitted car 0.3 m wider than KITTI's mean is no less right;
    * ``losses``: term name -> (B,) final values.
    """

    center: np.ndarray
    size: np.ndarray
    rotation: np.ndarray
    latent: np.ndarray
    finite: np.ndarray
    free_edges: np.ndarray
    has_mask: np.ndarray
    points: np.ndarray
    inlier_fraction: np.ndarray
    image_iou: np.ndarray
    plausibility: np.ndarray
    length_seen: np.ndarray
    visible: np.ndarray
    size_z2: np.ndarray
    losses: dict[str, np.ndarray]


def _measure(objects: Sequence[FitObject], output: FitOutput, batch: ObjectBatch, prior,
             config: PipelineConfig) -> _Measured:
    """:class:`_Measured` of a fitted batch of ``objects``."""
    center, size = output.center, output.size
    if config.extent is not None:
        lidar = torch.tensor([o.initial.source == "lidar" for o in objects],
                             device=batch.points_valid.device)
        center, size = enclose_points(batch.points, batch.points_valid & lidar[:, None],
                                      center, output.rotation, size, config.extent)
    image_iou = torch.where(batch.has_mask,
                            mask_iou(output.silhouette, batch.mask, batch.mask_weight),
                            box_iou_2d(output.extent, batch.box2d))
    seen = length_seen(batch.points, batch.points_valid, output.center, output.rotation,
                       output.size)
    visible = (torch.ones_like(seen) if batch.mask_weight is None
               else visible_share(output.silhouette, batch.mask_weight))

    def host(values: Tensor) -> np.ndarray:
        return values.cpu().numpy()

    def metres(values: Tensor) -> np.ndarray:
        return host(values).astype(np.float64)

    return _Measured(
        center=metres(center), size=metres(size), rotation=metres(output.rotation),
        latent=host(output.latent), finite=host(output.finite),
        free_edges=host(batch.free_edges), has_mask=host(batch.has_mask),
        points=host(batch.points_valid.sum(-1)),
        inlier_fraction=metres(output.inlier_fraction), image_iou=metres(image_iou),
        plausibility=metres(plausibility(output.mahalanobis.cpu(), prior.latent_size)),
        length_seen=metres(seen), visible=metres(visible),
        size_z2=metres(size_prior_loss(output.size.log(), batch.size_log_mean,
                                       batch.size_log_mean.new_tensor(DEFAULT_SIZE_LOG_STD))),
        losses={name: metres(values) for name, values in output.losses.items()})


def _result(frame: FrameInput, obj: FitObject, i: int, measured: _Measured, iterations: int,
            config: PipelineConfig, seconds: float) -> LabelResult:
    detection = frame.detections[obj.detection]
    finite = bool(measured.finite[i])
    if finite:
        label = ObjectLabel(detection.category, np.asarray(detection.box2d, np.float64),
                            measured.center[i], measured.rotation[i], measured.size[i])
    else:
        label = obj.initial.to_label(detection.category, detection.box2d, None)
    bottom = label.center - label.rotation[:, 2] * label.size[2] / 2
    label = label.with_image_box(frame.calib.P2, frame.image_size)
    free = measured.free_edges[i]
    verdict = verify(Observation(
        image_iou=float(measured.image_iou[i]),
        box_iou=constrained_box_iou(label.box2d, detection.box2d, free),
        inlier_fraction=float(measured.inlier_fraction[i]),
        plausibility=float(measured.plausibility[i]),
        points=int(measured.points[i]), size_z2=float(measured.size_z2[i]),
        distance=float(np.linalg.norm(label.center)),
        in_view=label.share_in_view(frame.calib.P2, frame.image_size) if finite else 0.0,
        ground_gap=(None if obj.initial.ground is None
                    else float(obj.initial.ground.height(bottom))),
        finite=finite, weak=obj.initial.weak, has_mask=bool(measured.has_mask[i]),
        bound_edges=int((~free).sum()),
        length_seen=float(measured.length_seen[i]), visible=float(measured.visible[i])),
        config.verify)
    label = dataclasses.replace(label, score=verdict.score)
    return LabelResult(
        label=label, accepted=verdict.accepted, reasons=verdict.reasons,
        source=obj.initial.source, latent=measured.latent[i],
        losses={name: float(values[i]) for name, values in measured.losses.items()},
        evidence=verdict.evidence, detection_score=float(detection.score),
        hypothesis=obj.hypothesis, iterations=iterations, seconds=seconds)


def _fit_chunks(objects: Sequence[FitObject], limit: int) -> Iterator[list[FitObject]]:
    """Consecutive runs of at most ``limit`` hypotheses (at least one detection's), never
    splitting a detection's hypotheses, in order."""
    chunk: list[FitObject] = []
    for detection in itertools.groupby(objects, key=lambda o: (o.frame, o.detection)):
        hypotheses = list(detection[1])
        if chunk and len(chunk) + len(hypotheses) > limit:
            yield chunk
            chunk = []
        chunk.extend(hypotheses)
    if chunk:
        yield chunk


def fit_frames(prepared: Sequence[PreparedFrame], prior=None,
               config: PipelineConfig = PipelineConfig()) -> list[FrameResult]:
    """Label every detection of a chunk of prepared frames, their hypotheses fitted together
    in batches of at most ``config.max_fit_objects``.

    Args:
        prepared: the chunk, from :func:`prepare_frame` with the same ``config``.
        prior: a :class:`~autolabel.prior.ShapePrior`; the shipped car prior when None.
        config: all settings.
    Returns:
        Per frame a :class:`FrameResult` with one :class:`LabelResult` per detection.
    """
    if not prepared:
        return []
    if prior is None:
        from autolabel.prior import load_prior
        prior = load_prior()
    start = time.perf_counter()
    device = resolve_device(config.device)
    prior = prior.to(device)
    frames = [item.frame for item in prepared]
    everyone = [dataclasses.replace(o, frame=f) for f, item in enumerate(prepared)
                for o in item.objects]
    results: list[list[LabelResult]] = [[] for _ in frames]
    for objects in _fit_chunks(everyone, config.max_fit_objects):
        batch = build_batch(frames, objects, config, device, neighbours=everyone)
        fit_start = time.perf_counter()
        output, objects, batch = _fit_in_stages(prior, batch, objects, config)
        share = (time.perf_counter() - fit_start) / len({(o.frame, o.detection)
                                                          for o in objects})
        measured = _measure(objects, output, batch, prior, config)
        for i in _best_hypotheses(objects, output, 1, config.image):
            results[objects[i].frame].append(_result(frames[objects[i].frame], objects[i], i,
                                                      measured, output.iterations, config,
                                                      share))
    spent = sum(item.seconds for item in prepared) + time.perf_counter() - start
    return [FrameResult(item.frame.frame_id, labels, item.plane, spent / len(frames))
            for item, labels in zip(prepared, results, strict=True)]


def label_frames(frames: Sequence[FrameInput], prior=None,
                 config: PipelineConfig = PipelineConfig()) -> list[FrameResult]:
    """Label every detection of a chunk of frames, their hypotheses fitted together in
    batches of at most ``config.max_fit_objects``.

    Args:
        frames: the chunk's inputs. prior: a :class:`~autolabel.prior.ShapePrior`; the
            shipped car prior when None. config: all settings.
    Returns:
        Per frame a :class:`FrameResult` with one :class:`LabelResult` per detection.
    """
    return fit_frames([prepare_frame(frame, config) for frame in frames], prior, config)


def label_frame(image: np.ndarray | tuple[int, int], calib: Calib,
                detections: Sequence[Detection], points: np.ndarray | None = None,
                depth: np.ndarray | None = None, prior=None,
                config: PipelineConfig = PipelineConfig(), **options) -> list[LabelResult]:
    """Label one frame's detections.

    Args:
        image: the (H, W, 3) image, or just its (height, width).
        calib: its calibration. detections: 2D detections (box, class, score, mask or None).
        points: (N, 3) LiDAR points in the rectified camera frame (see
            ``Calib.velo_to_rect``), or None. depth: (H, W) metres, or None.
        prior: shape prior (default: the shipped car prior). config: all settings.
        options: fields of :class:`PipelineConfig` to override, e.g. ``device="cpu"``.
    Returns:
        One :class:`LabelResult` per detection, in order.
    """
    size = tuple(image) if isinstance(image, tuple) else tuple(np.shape(image)[:2])
    config = dataclasses.replace(config, **options)
    pixels = None if isinstance(image, tuple) else np.asarray(image)
    frame = FrameInput("frame", size, calib, list(detections), points, depth, pixels)
    return label_frames([frame], prior, config)[0].labels


def label_mesh(prior, latent: np.ndarray, label: ObjectLabel, resolution: int = 65):
    """The fitted shape of a label as a camera-frame mesh (trimesh), filling its 3D box.

    Args:
        prior: the shape prior the label was fitted with. latent: (D,) its shape code.
        label: the label; the decoded shape's tight box is mapped onto the label's box.
        resolution: marching-cubes grid points per axis.
    """
    from shape_priors.extract import extract_meshes

    code = torch.as_tensor(latent, dtype=torch.float32)[None].to(prior.latent_mean.device)
    mesh = extract_meshes(prior.decoder, code, resolution)[0]
    low, high = mesh.bounds
    local = (mesh.vertices - (low + high) / 2) / np.maximum(high - low, 1e-9) * label.size
    mesh.vertices = local @ label.rotation.T + label.center
    return mesh


def render_labels(prior, latents: np.ndarray, labels: Sequence[ObjectLabel],
                  projection: np.ndarray, settings: RenderSettings = RenderSettings(),
                  seed: int = 0) -> Rendered:
    """Render the shapes of labels (their boxes filled by the given codes) into windows.

    Args:
        prior: the shape prior. latents: (B, D) one code per label. labels: B labels.
        projection: (3, 4) camera matrix. settings: renderer knobs; the windows are square
            regions around each label's ``box2d``.
    Returns:
        :class:`~autolabel.render.Rendered` for the B labels.
    """
    device = prior.latent_mean.device

    def tensor(values):
        return torch.as_tensor(np.asarray(values), dtype=torch.float32, device=device)

    latent = tensor(latents).reshape(len(labels), -1)
    size = tensor([label.size for label in labels])
    points, valid = extract_surface_points(prior.sdf, latent, size, seed=seed)
    surfels = project_to_surface(prior.sdf, latent, points, valid)
    camera_points, normals = pose_surfels(surfels, tensor([label.center for label in labels]),
                                          tensor([label.rotation for label in labels]), size)
    window = detection_windows(tensor([label.box2d for label in labels]),
                               settings.window_margin)
    with torch.no_grad():
        return render(camera_points, normals, surfels.points, surfels.valid,
                      surfel_spacing(size, points.shape[1]),
                      tensor(projection).expand(len(labels), 3, 4), window, settings)


def _frame_preparer(config: PipelineConfig, threads: int):
    """:func:`prepare_frame` with ``config`` for a worker process, on ``threads`` torch
    threads (those of the process that asked, so that its hypotheses are the same)."""
    torch.set_num_threads(threads)
    return functools.partial(prepare_frame, config=config)


def _prepared_ahead(frames: Iterable[FrameInput], config: PipelineConfig, workers: int,
                    ahead: int) -> Iterator[PreparedFrame]:
    """:func:`prepare_frame` of every frame, in order, done by ``workers`` processes up to
    ``ahead`` frames ahead; RuntimeError for a frame whose worker process died."""
    make = functools.partial(_frame_preparer, config, torch.get_num_threads())
    for frame, prepared in map_ahead(make, frames, workers, ahead):
        if isinstance(prepared, WorkerLost):
            raise RuntimeError(f"frame {frame.frame_id}: {prepared.reason}")
        yield prepared


def label_dataset(frames: Iterable[FrameInput], prior=None,
                  config: PipelineConfig = PipelineConfig(), batch: int = 4,
                  workers: int = 0) -> Iterator[FrameResult]:
    """Label a stream of frames, ``batch`` frames (all their objects) per optimisation.

    Args:
        frames: any iterable of :class:`FrameInput` (e.g. a generator reading files lazily).
        prior: shape prior (default: the shipped car prior). config: all settings.
        batch: frames fitted together.
        workers: processes that build the hypotheses of the next frames (up to two batches
            ahead) while a batch is fitted; 0: this process, before each batch. The labels
            are the same either way. The processes are spawned, so a script that asks for
            them runs its top level under ``if __name__ == "__main__":``.
    Yields:
        One :class:`FrameResult` per frame, in order, as soon as its batch is done.
    """
    if prior is None:
        from autolabel.prior import load_prior
        prior = load_prior()
    prepared = (_prepared_ahead(frames, config, workers, AHEAD_BATCHES * batch) if workers
                else (prepare_frame(frame, config) for frame in frames))
    chunk: list[PreparedFrame] = []
    for item in prepared:
        chunk.append(item)
        if len(chunk) == batch:
            yield from fit_frames(chunk, prior, config)
            chunk = []
    if chunk:
        yield from fit_frames(chunk, prior, config)
