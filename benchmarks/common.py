"""Helpers shared by the benchmarks: loading KITTI-layout folders, detections from ground
truth, timing a labeler over frames, and reporting several methods side by side.

A *labeler* is any callable ``(frame, detections) -> FrameLabels`` (one label per detection and
whether each is accepted); the benchmarks run every registered labeler on the same frames and
detections, evaluate each with :func:`autolabel.evaluate.evaluate`, and write one JSON
document with a key per method. :func:`lshape` is the classical baseline every benchmark runs.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from autolabel.evaluate import (
    ERROR_MATCH_IOU,
    EvalResult,
    bev_iou,
    evaluate,
    format_table,
    labels_to_boxes,
    to_json,
)
from autolabel.geometry import points_in_box
from autolabel.init import InitConfig, label_frame_lshape
from autolabel.io.atomic import write_text_atomic
from autolabel.io.detections import Detection
from autolabel.io.files import IMAGE_SUFFIXES, frame_file  # noqa: E402
from autolabel.io.kitti import (
    Calib,
    list_frames,
    read_calib,
    read_image,
    read_labels,
    read_velodyne,
)
from autolabel.label import ObjectLabel
from autolabel.pipeline import FrameInput, LabelResult, PipelineConfig, label_frames
from autolabel.prior import load_prior
from autolabel.verify import VerifyConfig, box_iou_2d

# The default settings but with weak labels (those without LiDAR or depth: camera-only
# hypotheses, the image model's viewpoint choosing between the yaw hypotheses) accepted when
# their score passes, so that the accepted labels' precision says what the score's threshold
# accepts. The benchmarks' camera-only runs use it.
WEAK_ACCEPTED = PipelineConfig(verify=VerifyConfig(accept_weak=True))
# What the real-data benchmarks' labelers see besides the boxes: the LiDAR scans, or nothing
# (the scans hidden; boxes and image only).
SENSORS = {"lidar": PipelineConfig(), "none": WEAK_ACCEPTED}


def boxes_bound(config: PipelineConfig, box_extent: str) -> PipelineConfig:
    """``config`` with detection boxes compared with ``box_extent`` ('shape' or 'box', see
    :class:`autolabel.fit.FitConfig`). KITTI's 2D labels are their 3D boxes projected (on
    kitti_dev's unoccluded cars the two agree to a median 0.3 px), so detections made from
    them bound the 'box'."""
    return dataclasses.replace(config, fit=dataclasses.replace(config.fit,
                                                               box_extent=box_extent))


@dataclasses.dataclass(frozen=True, eq=False)
class Frame:
    """One frame of a KITTI-layout folder, loaded.

    Attributes:
        frame_id: e.g. ``000008``.
        image_name: the image's file name, e.g. ``000008.png`` (detections are keyed by it).
        image_size: (height, width) pixels.
        calib: the frame's calibration.
        points: (N, 3) LiDAR points in the rectified camera frame, or None without a scan.
        labels: ground truth, every class and DontCare.
        depth: (H, W) dense depth map (camera-frame z, metres, 0 = no value), or None.
        image: (H, W, 3) uint8 pixels.
    """

    frame_id: str
    image_name: str
    image_size: tuple[int, int]
    calib: Calib
    points: np.ndarray | None
    labels: list[ObjectLabel]
    depth: np.ndarray | None = None
    image: np.ndarray | None = None


def as_seen(frame: Frame, sensors: str) -> Frame:
    """The frame as a labeler with ``sensors`` (a key of :data:`SENSORS`) sees it: without
    its LiDAR scan for ``"none"``."""
    return frame if sensors == "lidar" else dataclasses.replace(frame, points=None)


@dataclasses.dataclass(frozen=True)
class FrameLabels:
    """A labeler's output for one frame.

    Attributes:
        labels: one label per detection, in detection order.
        accepted: per label, whether the method's own verification accepts it (a method
            without verification accepts every label).
        reprojection: per label, the IoU its verification's reprojection gate judged (on the
            edges the detection constrains), or None for a method without verification.
    """

    labels: list[ObjectLabel]
    accepted: list[bool]
    reprojection: list[float] | None = None

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.accepted):
            raise ValueError(f"{len(self.accepted)} accepted flags for {len(self.labels)} "
                             "labels")


Labeler = Callable[[Frame, Sequence[Detection]], FrameLabels]


def lshape(frame: Frame, detections: Sequence[Detection],
           init: InitConfig = InitConfig()) -> FrameLabels:
    """The classical baseline (``autolabel.init``): L-shape boxes on the object's LiDAR
    cluster, or on its back-projected depth pixels when the frame has a depth map and no
    LiDAR, else boxes from the 2D box and the class's mean size. It has no verification
    step, so it accepts every label."""
    labels = label_frame_lshape(frame.points, frame.calib, detections, frame.image_size,
                                config=init, depth=frame.depth if frame.points is None else None)
    return FrameLabels(labels, [True] * len(labels))


def fit_frame(frame: Frame, detections: Sequence[Detection],
              config: PipelineConfig = PipelineConfig()) -> list[LabelResult]:
    """The render-and-compare fitter (``autolabel.pipeline``) with the shipped prior, on
    LiDAR, else the frame's depth map, else the 2D boxes alone: one result per detection, in
    detection order."""
    inputs = FrameInput(frame.frame_id, frame.image_size, frame.calib, list(detections),
                        frame.points, frame.depth if frame.points is None else None,
                        frame.image)
    return label_frames([inputs], _shipped_prior(), config)[0].labels


def render_and_compare(frame: Frame, detections: Sequence[Detection],
                       config: PipelineConfig = PipelineConfig()) -> FrameLabels:
    """:func:`fit_frame` with its default settings as a labeler; labels carry its
    verification verdict."""
    results = fit_frame(frame, detections, config)
    return FrameLabels([r.label for r in results], [r.accepted for r in results],
                       [r.evidence["box_iou"] for r in results])


@functools.cache
def _shipped_prior():
    return load_prior()


def image_file(root: Path, frame_id: str) -> Path:
    """The image of ``frame_id`` in ``root/image_2`` (any of the accepted suffixes)."""
    path = frame_file(root / "image_2", frame_id, IMAGE_SUFFIXES)
    if path is not None:
        return path
    raise FileNotFoundError(f"{root / 'image_2'}: no image for frame {frame_id}")


def load_kitti(root: str | Path, frame_ids: Sequence[str] | None = None) -> list[Frame]:
    """The frames of a KITTI-layout folder with ``image_2``, ``calib`` and ``label_2``
    (``velodyne`` optional per frame), read with ``autolabel.io.kitti``.

    Args:
        root: the folder. frame_ids: which frames, in this order; None for every frame.
    """
    root = Path(root)
    frames = []
    frame_ids = list_frames(root) if frame_ids is None else frame_ids
    for frame_id in track(frame_ids, description="loading frames", transient=True):
        image = image_file(root, frame_id)
        calib = read_calib(root / "calib" / f"{frame_id}.txt")
        scan = root / "velodyne" / f"{frame_id}.bin"
        points = calib.velo_to_rect(read_velodyne(scan)[:, :3]) if scan.is_file() else None
        pixels = read_image(image)
        frames.append(Frame(frame_id, image.name, pixels.shape[:2], calib, points,
                            read_labels(root / "label_2" / f"{frame_id}.txt"), image=pixels))
    return frames


def detections_from_labels(labels: Sequence[ObjectLabel], image_size: tuple[int, int],
                           jitter: float, rng: np.random.Generator,
                           classes: Sequence[str] = ("Car",)) -> list[Detection]:
    """Detections made from ground-truth 2D boxes, each edge moved by N(0, jitter^2) pixels.

    Boxes are clipped to the image and kept at least 2 px wide and tall; every detection has
    score 1.0 and no mask.

    Args:
        labels: ground truth of one frame. image_size: (height, width).
        jitter: standard deviation of the edge noise, pixels (0: exact boxes).
        rng: the source of the noise (seeded by the caller).
        classes: which ground-truth classes become detections.
    """
    height, width = image_size
    wanted = {name.lower() for name in classes}
    detections = []
    for label in labels:
        if label.category.lower() not in wanted:
            continue
        box = label.box2d + (rng.normal(0.0, jitter, 4) if jitter > 0 else 0.0)
        box = np.clip(box, 0.0, [width, height, width, height])
        box[2:] = np.maximum(box[2:], box[:2] + 2.0)
        detections.append(Detection(box, label.category, 1.0))
    return detections


@dataclasses.dataclass(frozen=True)
class MethodRun:
    """One labeler's predictions and timing over a benchmark's frames.

    Attributes:
        predictions: frame id -> labels. objects: detections labelled.
        accepted: labels the method accepted. seconds: labeling time.
        accepted_insane: accepted labels that fail verification's sanity gates on range or
            reprojection (:func:`insane`); 0 for a method that checks them.
        verdicts: frame id -> per label, whether the method accepted it.
    """

    predictions: dict[str, list[ObjectLabel]]
    objects: int
    accepted: int
    seconds: float
    accepted_insane: int = 0
    verdicts: dict[str, list[bool]] = dataclasses.field(default_factory=dict)

    @property
    def objects_per_second(self) -> float:
        return self.objects / self.seconds if self.seconds > 0 else math.nan

    @property
    def acceptance_rate(self) -> float:
        """Fraction of the labels that the method accepted (NaN without labels)."""
        labels = sum(len(labels) for labels in self.predictions.values())
        return self.accepted / labels if labels else math.nan


def run_labeler(labeler: Labeler, frames: Sequence[Frame],
                detections: Mapping[str, Sequence[Detection]], name: str) -> MethodRun:
    """Run ``labeler`` on every frame, timing the labeling only (frames are already loaded)."""
    predictions, verdicts, seconds, objects, accepted, accepted_insane = {}, {}, 0.0, 0, 0, 0
    for frame in track(frames, description=f"labeling ({name})", transient=True):
        frame_detections = detections.get(frame.image_name, [])
        start = time.perf_counter()
        output = labeler(frame, frame_detections)
        seconds += time.perf_counter() - start
        predictions[frame.frame_id] = output.labels
        verdicts[frame.frame_id] = list(output.accepted)
        objects += len(frame_detections)
        accepted += sum(output.accepted)
        judged = output.reprojection or [None] * len(output.labels)
        accepted_insane += sum(ok and insane(label, detection, overlap)
                               for label, ok, detection, overlap
                               in zip(output.labels, output.accepted, frame_detections, judged,
                                      strict=True))
    return MethodRun(predictions, objects, accepted, seconds, accepted_insane, verdicts)


def insane(label: ObjectLabel, detection: Detection, overlap: float | None = None,
           gates: VerifyConfig = VerifyConfig()) -> bool:
    """Whether a label lies beyond verification's range or overlaps its detection less than
    verification's reprojection gate allows: ``overlap`` as the method judged it, or (None)
    the IoU of the label's image box with the detection."""
    if overlap is None:
        overlap = box_iou_matrix(label.box2d, np.asarray(detection.box2d))[0, 0]
    return bool(np.linalg.norm(label.center) > gates.max_distance
                or overlap < gates.min_box_iou)


def yaw_errors_of_observed(frames: Sequence[Frame], predictions: Mapping[str, list[ObjectLabel]],
                           min_points: int = 50, category: str = "Car") -> dict:
    """Median yaw errors for ground-truth objects with at least ``min_points`` LiDAR points.

    Each such object is paired with the prediction of highest BEV IoU in its frame when that
    IoU exceeds ``ERROR_MATCH_IOU``. Two errors are reported, in degrees: the heading error
    (wrapped difference) and the axis error (modulo 180 degrees, blind to a heading flip,
    which a LiDAR box fit cannot see).

    Returns:
        ``{"min_points", "objects", "pairs", "heading_deg", "axis_deg"}`` (medians, None when
        there is no pair).
    """
    heading, objects = [], 0
    for frame in frames:
        ours = [label for label in frame.labels if label.category.lower() == category.lower()]
        if frame.points is None or not ours:
            continue
        points = torch.as_tensor(frame.points, dtype=torch.float64)
        observed = [label for label in ours
                    if int(points_in_box(points, torch.as_tensor(label.center),
                                         torch.as_tensor(label.rotation),
                                         torch.as_tensor(label.size)).sum()) >= min_points]
        objects += len(observed)
        predicted = predictions.get(frame.frame_id, [])
        if not observed or not predicted:
            continue
        iou = bev_iou(labels_to_boxes(observed), labels_to_boxes(predicted)).numpy()
        for row, label in enumerate(observed):
            best = int(np.argmax(iou[row]))
            if iou[row, best] > ERROR_MATCH_IOU:
                difference = predicted[best].yaw - label.yaw
                heading.append(abs(math.degrees(math.atan2(math.sin(difference),
                                                           math.cos(difference)))))
    axis = [min(value, 180.0 - value) for value in heading]
    return {"min_points": min_points, "objects": objects, "pairs": len(heading),
            "heading_deg": float(np.median(heading)) if heading else None,
            "axis_deg": float(np.median(axis)) if axis else None}


def accepted_precision(frames: Sequence[Frame], run: MethodRun, min_iou: float = 0.5,
                       category: str = "Car") -> dict:
    """How many of a method's accepted labels are right: BEV IoU at least ``min_iou`` with
    a ground-truth object of ``category`` in their frame (any difficulty).

    Returns:
        ``{"min_bev_iou", "accepted", "right", "precision"}`` (precision None when nothing
        was accepted).
    """
    accepted = right = 0
    for frame in frames:
        ours = [label for label, ok in zip(run.predictions.get(frame.frame_id, []),
                                           run.verdicts.get(frame.frame_id, []), strict=True)
                if ok]
        truth = [label for label in frame.labels if label.category.lower() == category.lower()]
        accepted += len(ours)
        if ours and truth:
            iou = bev_iou(labels_to_boxes(ours), labels_to_boxes(truth)).numpy()
            right += int((iou.max(axis=1) >= min_iou).sum())
    return {"min_bev_iou": min_iou, "accepted": accepted, "right": right,
            "precision": round(right / accepted, 4) if accepted else None}


def method_record(result: EvalResult, run: MethodRun, frames: Sequence[Frame]) -> dict:
    """The JSON entry of one method: evaluation (``to_json``), yaw errors of well-observed
    objects (:func:`yaw_errors_of_observed`, by the LiDAR points of ``frames``), object
    count, acceptance rate, the precision of the accepted labels (:func:`accepted_precision`)
    and speed."""
    objects_per_second = run.objects_per_second
    acceptance = run.acceptance_rate
    return {"evaluation": to_json(result),
            "yaw_errors_min_points": yaw_errors_of_observed(frames, run.predictions),
            "objects": run.objects,
            "accepted": run.accepted,
            "accepted_beyond_sanity_gates": run.accepted_insane,
            "acceptance_rate": None if math.isnan(acceptance) else round(acceptance, 4),
            "accepted_precision": accepted_precision(frames, run),
            "seconds": round(run.seconds, 3),
            "objects_per_second": None if math.isnan(objects_per_second)
            else round(objects_per_second, 2)}


def evaluate_methods(frames: Sequence[Frame], runs: Mapping[str, MethodRun],
                     classes: Sequence[str] = ("Car",)) -> dict[str, EvalResult]:
    """Evaluate every method's predictions against the frames' ground truth."""
    ground_truth = {frame.frame_id: frame.labels for frame in frames}
    return {name: evaluate(ground_truth, run.predictions, classes=classes)
            for name, run in runs.items()}


def box_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of every 2D box of ``boxes_a`` (A, 4) with every one of ``boxes_b`` (B, 4),
    both as (x1, y1, x2, y2) pixels."""
    a = torch.as_tensor(np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4))
    rows, cols = torch.meshgrid(torch.arange(len(a)), torch.arange(len(b)), indexing="ij")
    return box_iou_2d(a[rows.flatten()], b[cols.flatten()]).reshape(rows.shape).numpy()


def detection_ceiling(frames: Sequence[Frame], detections: Mapping[str, Sequence[Detection]],
                      category: str = "Car", min_box_iou: float = 0.5) -> dict:
    """The best a labeler can score with these detections: AP of the exact ground-truth box
    of every labelled object that some detection of its class finds (2D IoU at least
    ``min_box_iou``), and no label for the rest (a missed object cannot be labelled; a false
    detection labelled perfectly would be dropped).

    Returns:
        ``{"labels", "ap_r40"}``: the labels the ceiling keeps and the AP table of
        :func:`autolabel.evaluate.to_json` for ``category``.
    """
    ground_truth, kept, count = {}, {}, 0
    for frame in frames:
        ground_truth[frame.frame_id] = frame.labels
        ours = [label for label in frame.labels if label.category.lower() == category.lower()]
        found = [d.box2d for d in detections.get(frame.image_name, [])
                 if d.category.lower() == category.lower()]
        kept[frame.frame_id] = []
        if not ours or not found:
            continue
        overlap = box_iou_matrix(np.array([label.box2d for label in ours]), np.array(found))
        kept[frame.frame_id] = [dataclasses.replace(label, score=1.0) for label, iou in
                                zip(ours, overlap.max(1), strict=True) if iou >= min_box_iou]
        count += len(kept[frame.frame_id])
    result = to_json(evaluate(ground_truth, kept, classes=(category,)))
    return {"labels": count, "ap_r40": result["classes"][category]["ap_r40"]}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def summary_table(records: Mapping[str, dict], category: str = "Car",
                  level: str = "moderate", width: int = 140) -> str:
    """Methods side by side: AP|R40 at ``level`` (BEV/3D, both IoU thresholds), median
    errors, acceptance (percent of labels) and speed, from :func:`method_record` entries."""
    table = Table(title=f"{category}, AP|R40 (%) at the {level} level, median errors of "
                        "matched pairs")
    first = next(iter(records.values()))["evaluation"]["classes"][category]
    thresholds = [str(t) for t in first["iou_thresholds"]]
    columns = ["method", *(f"{m} @{t}" for m in ("BEV", "3D") for t in thresholds),
               "transl. m", "yaw deg", "size l/w/h m", "yaw>=50pts h/a", "acc. %", "acc. prec. %",
               "obj/s"]
    for column in columns:
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, record in records.items():
        entry = record["evaluation"]["classes"][category]
        errors = entry["pose_errors"]
        size = errors["size_m"]
        observed = record["yaw_errors_min_points"]
        table.add_row(
            name,
            *(_percent(entry["ap_r40"][metric][t][level]) for metric in ("bev", "3d")
              for t in thresholds),
            _percent(errors["translation_m"]), _percent(errors["yaw_deg"]),
            "/".join(_percent(size[k]) for k in ("length", "width", "height")),
            f"{_percent(observed['heading_deg'])}/{_percent(observed['axis_deg'])}",
            _percent(None if record["acceptance_rate"] is None
                     else 100.0 * record["acceptance_rate"]),
            _percent(None if record["accepted_precision"]["precision"] is None
                     else 100.0 * record["accepted_precision"]["precision"]),
            _percent(record["objects_per_second"]),
        )
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(table)
    return buffer.getvalue()


def report(results: Mapping[str, EvalResult], records: Mapping[str, dict]) -> str:
    """The full tables of every method followed by the side-by-side summary."""
    parts = [f"== {name} ==\n{format_table(result)}" for name, result in results.items()]
    return "\n".join(parts) + "\n" + summary_table(records)


def write_json(path: str | Path, document: dict) -> None:
    """Write ``document`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
