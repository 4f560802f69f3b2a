"""Per-object errors of the render-and-compare fitter: which cars miss BEV IoU 0.7, by which
error, and a picture of each.

    .venv/bin/python benchmarks/diagnose.py --root ../shared/data/kitti_dev --threads 1 \\
        --rows /tmp/rows.json --pictures /tmp/gallery
    .venv/bin/python benchmarks/diagnose.py --frames 20          # synthetic LiDAR scenes
    .venv/bin/python benchmarks/diagnose.py --root ../shared/data/kitti_dev --threads 1 \\
        --more-seeds 1 2 3 4                                     # which cars fail every draw

With ``--root`` it fits every frame of a KITTI-layout folder as ``benchmarks/kitti.py``
does (``PipelineConfig()`` with ``box_extent='box'``), on detections made as it makes them
(the ground-truth Car 2D boxes, each edge jittered by N(0, PX^2) pixels, seeded). Without it, it
fits the synthetic LiDAR frames ``0 .. N-1`` with the benchmark settings of
``benchmarks/synthetic.py`` (setting ``lidar``) on their detections file.

It writes one row per ground-truth car of a KITTI level (easy to hard), paired with the label
of the detection whose 2D box overlaps the car's 2D box most (IoU at least 0.5)::

    {"frame", "index", "level", "occlusion", "points", "distance_m", "box_overlap",
     "bev_iou", "detection", "iou_3d", "longitudinal_m", "lateral_m", "vertical_m",
     "along_ray_m", "across_ray_m", "ray_xz", "length_m", "width_m", "height_m", "yaw_deg",
     "score", "accepted", "hypothesis", "losses", "evidence", "truth", "predicted",
     "slid_onto"}

``index`` counts the frame's cars in file order; ``points`` are the LiDAR points in the true
box; ``distance_m`` is the camera z of its centre; ``box_overlap`` is the largest fraction of
its 2D box that another labelled object's 2D box covers. Position errors are predicted minus
true, in the true box's frame (longitudinal along its heading, lateral across it, vertical
up), and in the bird's-eye view along the camera ray through the true centre (``ray_xz``, its
unit direction in camera x, z; positive = too far) and across it (positive = to the camera's
right). Size errors are predicted minus true; ``yaw_deg`` is the wrapped heading error.
``truth`` and ``predicted`` are ``(x, y, z, l, w, h, yaw)`` boxes. ``slid_onto`` is, for a
gross miss (BEV IoU under 0.5), the index of a nearer car whose BEV box the prediction
overlaps more than the car's own (the fit slid onto an occluder), else None. A row without a
detection has ``bev_iou`` 0 and nothing from ``detection`` on.

The summary (printed, and written as JSON) counts the moderate cars under BEV IoU 0.7 and 0.5
by the cause that costs each most (:func:`main_cause`), gives the success rate (BEV IoU over
0.7) of the cars of every level by distance, occlusion and LiDAR points, the median signed
errors of the moderate cars, and how well the verification score predicts BEV IoU 0.5.
``--pictures DIR`` draws every car under 0.7 (``benchmarks/gallery.py``).

With ``--root``, ``--sensors none`` hides the LiDAR scans from the fit (camera-only labels;
the rows still count each car's points; files named ``..._boxes_only``), and ``--more-seeds``
fits the folder again on further draws of the jitter (rows
cached per draw) and adds ``persistence`` to the summary (:func:`persistence`): for every
moderate car that misses BEV or 3D IoU 0.7 or turns its heading by more than 90 degrees in
any draw, in how many draws it does, and its mean errors over the draws. One draw of 3 px
moves a car across 0.7 often enough that a single run does not say which failures are the
fitter's and which the jitter's.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autolabel.classes import DONT_CARE  # noqa: E402
from autolabel.evaluate import (  # noqa: E402
    bev_iou,
    box2d_coverage,
    iou_3d,
    kitti_difficulty,
    labels_to_boxes,
)
from autolabel.geometry import camera_centres, points_in_box  # noqa: E402
from autolabel.io.detections import (  # noqa: E402
    DETECTIONS_FILE,
    Detection,
    read_detections,
)
from autolabel.label import ObjectLabel  # noqa: E402
from autolabel.pipeline import LabelResult, PipelineConfig  # noqa: E402
from benchmarks.common import (  # noqa: E402
    SENSORS,
    Frame,
    as_seen,
    box_iou_matrix,
    boxes_bound,
    detections_from_labels,
    fit_frame,
    load_kitti,
    write_json,
)
from benchmarks.gallery import plot_score_curve, write_gallery  # noqa: E402
from benchmarks.synthetic import CACHE, METHODS, SCENES, cache_folder, ensure_scenes  # noqa: E402

MODERATE = 1
THRESHOLDS = (0.7, 0.5)  # BEV IoU: a success is above the first; a gross miss under the second
SUCCESS_IOU, GROSS_MISS_IOU = THRESHOLDS
MATCH_IOU_2D = 0.5  # a car's detection overlaps its 2D box at least this much
OBSERVED_POINTS = 20  # a car with this many LiDAR points is well observed
BENCHMARK_CONFIG: PipelineConfig = METHODS["render"].keywords["config"]
# Success-rate breakdowns: name -> (row key, bucket edges, bucket names).
BREAKDOWNS = {"distance": ("distance_m", (30.0,), ("< 30 m", ">= 30 m")),
              "occlusion": ("occlusion", (1, 2), ("0", "1", "2")),
              "points": ("points", (20, 100), ("< 20", "20-99", ">= 100"))}
SIGNED_ERRORS = ("vertical_m", "height_m", "length_m", "width_m", "along_ray_m",
                 "across_ray_m", "yaw_deg")
# Mean errors :func:`persistence` reports of a car over the draws.
PERSISTENT_ERRORS = ("length_m", "width_m", "height_m", "vertical_m", "along_ray_m")
FLIP_DEGREES = 90.0  # a heading off by more than this faces the wrong way
# Errors :func:`main_cause` removes one at a time from the box: name -> index in the 7-vector.
_BOX_ERRORS = {"length": 3, "width": 4, "yaw": 6}


def _wrapped_degrees(radians: float) -> float:
    return math.degrees(math.atan2(math.sin(radians), math.cos(radians)))


def ray_components(offset_xz: np.ndarray, ray_xz: np.ndarray) -> tuple[float, float]:
    """A BEV offset split along a camera ray and across it.

    Args:
        offset_xz: (2,) metres in camera (x, z). ray_xz: (2,) unit direction of the ray.
    Returns:
        (along, across): along is positive away from the camera; across is positive to the
        right of the ray seen from above (camera +x for a ray straight ahead).

    >>> ray_components(np.array([1.0, 2.0]), np.array([0.0, 1.0]))
    (2.0, 1.0)
    """
    right = np.array([ray_xz[1], -ray_xz[0]])
    return float(offset_xz @ ray_xz), float(offset_xz @ right)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _box_errors(truth: ObjectLabel, predicted: ObjectLabel, ray_xz: np.ndarray
                ) -> dict[str, float]:
    """Signed errors of ``predicted`` against ``truth`` (see the module docstring)."""
    offset = predicted.center - truth.center
    local = truth.rotation.T @ offset  # object frame: x forward, y left, z up
    along, across = ray_components(offset[[0, 2]], ray_xz)
    return {"longitudinal_m": float(local[0]), "lateral_m": float(local[1]),
            "vertical_m": float(local[2]), "along_ray_m": along, "across_ray_m": across,
            **{f"{axis}_m": float(predicted.size[i] - truth.size[i])
               for i, axis in enumerate(("length", "width", "height"))},
            "yaw_deg": _wrapped_degrees(predicted.yaw - truth.yaw)}


def slid_onto(iou_column: np.ndarray, distances: np.ndarray, index: int) -> int | None:
    """The nearer car a gross miss slid onto, if any.

    Args:
        iou_column: (C,) BEV IoU of car ``index``'s prediction with each car of the frame.
        distances: (C,) the cars' distances. index: the car.
    Returns:
        The index of the car nearer than car ``index`` that the prediction overlaps most,
        when the prediction overlaps it more than car ``index`` itself and its IoU with car
        ``index`` is under ``GROSS_MISS_IOU``; else None.
    """
    own = iou_column[index]
    nearer = [j for j in range(len(iou_column))
              if distances[j] < distances[index] and iou_column[j] > own]
    if own >= GROSS_MISS_IOU or not nearer:
        return None
    return max(nearer, key=lambda j: iou_column[j])


def _paired_detections(cars: Sequence[ObjectLabel], detections: Sequence[Detection]
                       ) -> list[int | None]:
    """Per car, the detection whose 2D box overlaps its own most (None under MATCH_IOU_2D)."""
    if not detections:
        return [None] * len(cars)
    overlap = box_iou_matrix(np.array([car.box2d for car in cars]),
                             np.array([d.box2d for d in detections]))
    best = overlap.argmax(axis=1)
    return [int(j) if overlap[i, j] >= MATCH_IOU_2D else None for i, j in enumerate(best)]


def _box_overlaps(labels: Sequence[ObjectLabel], cars: Sequence[ObjectLabel]) -> list[float]:
    """Per car, the largest fraction of its 2D box covered by another labelled object's."""
    objects = [label for label in labels if label.category != DONT_CARE]
    overlaps = []
    for car in cars:
        others = np.array([o.box2d for o in objects if o is not car]).reshape(-1, 4)
        coverage = box2d_coverage(car.box2d[None], others)
        overlaps.append(float(coverage.max()) if coverage.size else 0.0)
    return overlaps


def _points_inside(points: np.ndarray | None, label: ObjectLabel) -> int:
    if points is None:
        return 0
    return int(points_in_box(torch.as_tensor(points, dtype=torch.float64),
                             torch.as_tensor(label.center), torch.as_tensor(label.rotation),
                             torch.as_tensor(label.size)).sum())


def _paired_fields(car: ObjectLabel, result: LabelResult, ray_xz: np.ndarray) -> dict:
    """The row fields of a car paired with its detection's label."""
    pair = labels_to_boxes([car, result.label])
    return {"iou_3d": round(float(iou_3d(pair[:1], pair[1:])[0, 0]), 4),
            **{k: round(v, 4) for k, v in _box_errors(car, result.label, ray_xz).items()},
            "ray_xz": [round(float(v), 6) for v in ray_xz],
            "score": round(float(result.label.score), 4), "accepted": result.accepted,
            "hypothesis": result.hypothesis,
            "losses": {k: round(v, 5) for k, v in result.losses.items()},
            "evidence": {k: round(v, 5) for k, v in result.evidence.items()},
            "truth": pair[0].tolist(), "predicted": pair[1].tolist()}


def frame_rows(frame: Frame, detections: Sequence[Detection],
               results: Sequence[LabelResult]) -> list[dict]:
    """One row per car of a KITTI level in ``frame`` (see the module docstring).

    Args:
        frame: the frame with its ground truth. detections: what was fitted.
        results: one result per detection, in order.
    """
    cars = [label for label in frame.labels if label.category == "Car"]
    if not cars:
        return []
    levels = kitti_difficulty(np.array([c.box2d[3] - c.box2d[1] for c in cars]),
                              np.array([c.occlusion for c in cars]),
                              np.array([c.truncation for c in cars]))
    truth = labels_to_boxes(cars)
    predicted = labels_to_boxes([result.label for result in results])
    bev = bev_iou(truth, predicted).numpy()  # (cars, detections)
    distances = truth[:, 2].numpy()
    camera_xz = camera_centres(torch.as_tensor(frame.calib.P2)[None])[0, [0, 2]].numpy()
    overlaps = _box_overlaps(frame.labels, cars)
    rows = []
    for index, (car, detection) in enumerate(zip(cars, _paired_detections(cars, detections),
                                                 strict=True)):
        if levels[index] < 0:
            continue
        row = {"frame": frame.frame_id, "index": index, "level": int(levels[index]),
               "occlusion": int(car.occlusion), "points": _points_inside(frame.points, car),
               "distance_m": round(float(car.center[2]), 2),
               "box_overlap": round(overlaps[index], 4), "bev_iou": 0.0}
        if detection is not None:
            ray_xz = _unit(car.center[[0, 2]] - camera_xz)
            row.update(bev_iou=round(float(bev[index, detection]), 4),
                       detection=[round(float(v), 2) for v in detections[detection].box2d],
                       **_paired_fields(car, results[detection], ray_xz),
                       slid_onto=slid_onto(bev[:, detection], distances, index))
        rows.append(row)
    return rows


def _corrected_boxes(row: dict) -> dict[str, torch.Tensor]:
    """The row's predicted box with one error removed, per error: the centre's offset along
    the camera ray ('ray slip'), across it ('across ray'), length, width or yaw; (1, 7)
    each."""
    truth, predicted = torch.tensor([row["truth"]]), torch.tensor([row["predicted"]])
    ray = torch.tensor(row["ray_xz"])
    right = torch.stack([ray[1], -ray[0]])
    boxes = {}
    for name, offset in (("ray slip", row["along_ray_m"] * ray),
                         ("across ray", row["across_ray_m"] * right)):
        boxes[name] = predicted.clone()
        boxes[name][0, [0, 2]] -= offset
    for name, column in _BOX_ERRORS.items():
        boxes[name] = predicted.clone()
        boxes[name][0, column] = truth[0, column]
    return boxes


def main_cause(row: dict) -> str:
    """Why the row's car is missed: 'missed' without a detection, 'slid onto occluder' when
    the prediction slid onto a nearer car, else the error whose removal alone raises the BEV
    IoU most (see :func:`_corrected_boxes`)."""
    if "predicted" not in row:
        return "missed"
    if row["slid_onto"] is not None:
        return "slid onto occluder"
    truth = torch.tensor([row["truth"]])
    gains = {name: float(bev_iou(truth, box)[0, 0])
             for name, box in _corrected_boxes(row).items()}
    return max(gains, key=gains.get)


def _rate(successes: int, cars: int) -> float | None:
    return round(successes / cars, 4) if cars else None


def success_rates(rows: Sequence[dict], key: str, edges: Sequence[float],
                  names: Sequence[str]) -> dict[str, dict]:
    """Cars and successes (BEV IoU over SUCCESS_IOU) per bucket of ``row[key]``.

    Args:
        rows: the rows. key: which field buckets them.
        edges: the (len(names) - 1) ascending bucket edges; a value equal to an edge goes up.
        names: the buckets' names.
    Returns:
        name -> ``{"cars", "successes", "rate"}`` (rate None for an empty bucket).
    """
    counts = {name: [0, 0] for name in names}
    for row in rows:
        count = counts[names[bisect.bisect_right(edges, row[key])]]
        count[0] += 1
        count[1] += row["bev_iou"] > SUCCESS_IOU
    return {name: {"cars": cars, "successes": successes, "rate": _rate(successes, cars)}
            for name, (cars, successes) in counts.items()}


def score_curve(rows: Sequence[dict], iou: float = GROSS_MISS_IOU) -> list[dict]:
    """Precision and recall of "BEV IoU >= ``iou``" when keeping the rows whose score is at
    least each distinct score, highest first.

    Args:
        rows: rows with a ``score``.
    Returns:
        ``[{"threshold", "precision", "recall"}]``; recall is 0 when no row is good.
    """
    if not rows:
        return []
    scores = np.array([row["score"] for row in rows])
    order = np.argsort(-scores, kind="stable")
    scores = scores[order]
    good = np.array([row["bev_iou"] >= iou for row in rows])[order]
    hits = np.cumsum(good)
    last = np.append(scores[1:] != scores[:-1], True)  # the last row of each distinct score
    kept = np.arange(1, len(scores) + 1)
    return [{"threshold": float(s), "precision": round(float(h / k), 4),
             "recall": round(float(h / max(good.sum(), 1)), 4)}
            for s, h, k in zip(scores[last], hits[last], kept[last], strict=True)]


def score_quality(rows: Sequence[dict]) -> dict:
    """How well the verification verdict and score predict BEV IoU >= GROSS_MISS_IOU: the
    precision of the accepted labels, the acceptance of the well-observed cars (at least
    OBSERVED_POINTS points) and the :func:`score_curve`."""
    paired = [row for row in rows if "score" in row]
    accepted = [row for row in paired if row["accepted"]]
    good = sum(row["bev_iou"] >= GROSS_MISS_IOU for row in accepted)
    observed = [row for row in rows if row["points"] >= OBSERVED_POINTS]
    observed_accepted = sum(row.get("accepted", False) for row in observed)
    return {"labels": len(paired), "accepted": len(accepted),
            "accepted_with_bev_iou_0.5": good, "precision": _rate(good, len(accepted)),
            f"cars_with_{OBSERVED_POINTS}_points": len(observed),
            "of_them_accepted": observed_accepted,
            "acceptance": _rate(observed_accepted, len(observed)),
            "pr_curve": score_curve(paired)}


def _failures(rows: Sequence[dict], threshold: float) -> dict:
    causes = Counter(main_cause(row) for row in rows if row["bev_iou"] < threshold)
    return {"count": sum(causes.values()), "causes": dict(causes.most_common())}


def summarize(rows: Sequence[dict]) -> dict:
    """The JSON summary of the rows (see the module docstring)."""
    moderate = [row for row in rows if row["level"] <= MODERATE]
    paired = [row for row in moderate if "predicted" in row]
    return {"cars": len(rows), "moderate_cars": len(moderate),
            "moderate_failures": {str(t): _failures(moderate, t) for t in THRESHOLDS},
            "success_rate_every_level": {name: success_rates(rows, *spec)
                             for name, spec in BREAKDOWNS.items()},
            "median_signed_errors_moderate": {
                key: round(float(np.median([row[key] for row in paired])), 4) if paired else None
                for key in SIGNED_ERRORS},
            "score": score_quality(rows)}


def persistence(rows_by_draw: Sequence[Sequence[dict]]) -> dict:
    """How the moderate cars fare over several draws of the detections' jitter.

    Args:
        rows_by_draw: each draw's rows (:func:`frame_rows`) of the same cars.
    Returns:
        ``draws``; ``moderate_cars``; ``mean_over_0.7``, the mean count of moderate cars over
        BEV and 3D IoU 0.7 a draw (a success, as in the summary); ``cars``, one entry per
        moderate car that is not over BEV or 3D IoU 0.7 or flips its heading in at least one
        draw: ``frame``, ``index``, ``points``,
        ``distance_m``, the draws it is ``under_bev_0.7``, ``under_3d_0.7`` and ``flipped``
        in, and its ``mean_errors`` (metres) over the draws it was labelled in; most 3D misses
        first.
    """
    cars: dict[tuple[str, int], list[dict]] = {}
    for rows in rows_by_draw:
        for row in rows:
            if row["level"] <= MODERATE:
                cars.setdefault((row["frame"], row["index"]), []).append(row)
    draws = len(rows_by_draw)
    over = {metric: sum(row.get(key, 0.0) > SUCCESS_IOU for rows in cars.values()
                        for row in rows) / max(draws, 1)
            for metric, key in (("bev", "bev_iou"), ("3d", "iou_3d"))}
    entries = []
    for (frame, index), rows in cars.items():
        labelled = [row for row in rows if "predicted" in row]
        entry = {"frame": frame, "index": index, "points": rows[0]["points"],
                 "distance_m": rows[0]["distance_m"],
                 "under_bev_0.7": sum(row["bev_iou"] <= SUCCESS_IOU for row in rows),
                 "under_3d_0.7": sum(row.get("iou_3d", 0.0) <= SUCCESS_IOU for row in rows),
                 "flipped": sum(abs(row["yaw_deg"]) > FLIP_DEGREES for row in labelled),
                 "mean_errors": {key: round(float(np.mean([row[key] for row in labelled])), 3)
                                 for key in PERSISTENT_ERRORS} if labelled else {}}
        if entry["under_bev_0.7"] or entry["under_3d_0.7"] or entry["flipped"]:
            entries.append(entry)
    entries.sort(key=lambda e: (-e["under_3d_0.7"], -e["under_bev_0.7"], -e["flipped"],
                                e["frame"], e["index"]))
    return {"draws": draws, "moderate_cars": len(cars),
            "mean_over_0.7": {metric: round(count, 2) for metric, count in over.items()},
            "cars": entries}


def format_persistence(summary: dict) -> str:
    """:func:`persistence` as text."""
    draws, mean = summary["draws"], summary["mean_over_0.7"]
    lines = [f"over {draws} draws: {mean['bev']:.1f} / {mean['3d']:.1f} of "
             f"{summary['moderate_cars']} moderate cars over BEV / 3D IoU {SUCCESS_IOU} a draw",
             "moderate cars that miss or flip (draws under BEV 0.7, under 3D 0.7, flipped; "
             "mean errors):"]
    for car in summary["cars"]:
        errors = " ".join(f"{key.split('_')[0][:5]}={value:+.2f}"
                          for key, value in car["mean_errors"].items())
        lines.append(f"  {car['frame']}/{car['index']:<2d} {car['points']:5d} pts "
                     f"{car['distance_m']:5.1f} m  {car['under_bev_0.7']}/{draws} "
                     f"{car['under_3d_0.7']}/{draws} {car['flipped']}/{draws}  {errors}")
    return "\n".join(lines)


def format_summary(summary: dict, rows: Sequence[dict]) -> str:
    """The summary as text, followed by the failing moderate cars, worst first."""
    lines = [f"{summary['cars']} cars, {summary['moderate_cars']} moderate"]
    for threshold, failures in summary["moderate_failures"].items():
        causes = ", ".join(f"{name} {count}" for name, count in failures["causes"].items())
        lines.append(f"  under BEV IoU {threshold}: {failures['count']} ({causes})")
    lines.append(f"success (BEV IoU > {SUCCESS_IOU}), every level:")
    for name, buckets in summary["success_rate_every_level"].items():
        lines.append(f"  by {name:9s} " + "  ".join(
            f"{bucket}: {b['successes']}/{b['cars']}" for bucket, b in buckets.items()))
    lines.append("median signed errors (moderate): " + "  ".join(
        f"{key} {value:+.3f}" for key, value in summary["median_signed_errors_moderate"].items()
        if value is not None))
    score = summary["score"]
    lines.append(f"accepted {score['accepted']}/{score['labels']}, of them "
                 f"{score['accepted_with_bev_iou_0.5']} with BEV IoU >= {GROSS_MISS_IOU} "
                 f"(precision {score['precision']}); cars with >= {OBSERVED_POINTS} points "
                 f"accepted {score['of_them_accepted']}/"
                 f"{score[f'cars_with_{OBSERVED_POINTS}_points']}")
    lines.append("failing moderate cars (frame/index, points, distance, IoU, cause, errors):")
    failing = [row for row in rows if row["level"] <= MODERATE and row["bev_iou"] < SUCCESS_IOU]
    for row in sorted(failing, key=lambda r: r["bev_iou"]):
        errors = " ".join(f"{k.split('_')[0][:5]}={row[k]:+.2f}" for k in
                          ("along_ray_m", "across_ray_m", "length_m", "width_m", "yaw_deg")
                          if k in row)
        lines.append(f"  {row['frame']}/{row['index']:<2d} {row['points']:5d} pts "
                     f"{row['distance_m']:5.1f} m  IoU {row['bev_iou']:.2f}  "
                     f"{main_cause(row):18s} {errors}")
    return "\n".join(lines)


def fit_rows(frames: Sequence[Frame], detections: dict[str, list[Detection]],
             config: PipelineConfig = PipelineConfig(), sensors: str = "lidar"
             ) -> list[dict]:
    """Fit every frame's detections (keyed by image name) with ``config``, the frames as a
    labeler with ``sensors`` sees them (:func:`benchmarks.common.as_seen`); every frame's
    rows, which count each car's points whatever the fit saw."""
    rows = []
    for frame in track(frames, description="fitting"):
        found = list(detections.get(frame.image_name, []))
        rows.extend(frame_rows(frame, found, fit_frame(as_seen(frame, sensors), found, config)))
    return rows


def kitti_rows(root: Path, jitter: float, seed: int, sensors: str = "lidar") -> list[dict]:
    """Rows of every frame of ``root``, fitted as ``benchmarks/kitti.py --sensors SENSORS``
    fits them (the detection boxes bound the projected 3D boxes) on the ground-truth Car
    boxes jittered as it jitters them."""
    frames = load_kitti(root)
    rng = np.random.default_rng(seed)
    detections = {frame.image_name: detections_from_labels(frame.labels, frame.image_size,
                                                           jitter, rng)
                  for frame in frames}
    return fit_rows(frames, detections, boxes_bound(SENSORS[sensors], "box"), sensors)


def synthetic_rows(folder: Path, frames: int, seed: int) -> list[dict]:
    """Rows of the synthetic LiDAR frames ``0 .. frames-1`` in ``folder``, fitted with the
    benchmark settings."""
    loaded = load_kitti(folder, ensure_scenes(folder, seed, frames))
    return fit_rows(loaded, read_detections(folder / DETECTIONS_FILE), BENCHMARK_CONFIG)


def code_fingerprint() -> str:
    """SHA-1 of the labeller's and the benchmarks' Python sources: rows cached by another
    version of the code are not reused."""
    digest = hashlib.sha1()
    for path in sorted([*(ROOT / "autolabel").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
                        *(ROOT / "shape_priors").glob("*.py")]):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cached_rows(path: Path, source: str, code: str) -> list[dict] | None:
    """The rows of ``path`` when it holds rows of ``source`` made by ``code``."""
    if not path.is_file():
        return None
    document = json.loads(path.read_text())
    same = document.get("source") == source and document.get("code") == code
    return document["rows"] if same else None


def _rows(args: argparse.Namespace, root: Path, seed: int, rows_file: Path, code: str
          ) -> tuple[str, list[dict]]:
    """The source description and the rows of one draw, from ``rows_file`` when it holds
    them (same data, jitter, seed and code), else fitted and written there."""
    sensors = "" if args.sensors == "lidar" else f" sensors {args.sensors}"
    source = (f"kitti {root.resolve()} jitter {args.jitter:g} seed {seed}{sensors}"
              if args.root is not None else f"synthetic {root} frames {args.frames}")
    rows = _cached_rows(rows_file, source, code)
    if rows is None:
        rows = (kitti_rows(root, args.jitter, seed, args.sensors) if args.root is not None
                else synthetic_rows(root, args.frames, seed))
        write_json(rows_file, {"source": source, "code": code, "rows": rows})
    return source, rows


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None,
                        help="KITTI-layout folder; default: the synthetic LiDAR scenes.")
    parser.add_argument("--jitter", type=float, default=3.0,
                        help="Std. dev. (pixels) of the noise on ground-truth box edges.")
    parser.add_argument("--frames", type=int, default=20, help="Synthetic frames.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the jitter / scenes.")
    parser.add_argument("--sensors", choices=tuple(SENSORS), default="lidar",
                        help="With --root: what the fit sees besides the boxes, the LiDAR "
                             "scans or none (camera-only labels, as benchmarks/kitti.py "
                             "--sensors none).")
    parser.add_argument("--more-seeds", type=int, nargs="*", default=[],
                        help="With --root: further jitter seeds to fit; the summary adds, per "
                             "moderate car, in how many draws it fails.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--rows", type=Path, default=None,
                        help="Rows file: read when it holds rows of the same source (data, "
                             "jitter, seed) made by the same code, else written by a fresh "
                             "run; default benchmarks/output/diagnose_rows_<data>.json.")
    parser.add_argument("--summary", type=Path, default=None,
                        help="Summary JSON; default benchmarks/results/diagnose_<data>.json.")
    parser.add_argument("--pictures", type=Path, default=None,
                        help="Folder for a picture of every car under BEV IoU 0.7, an "
                             "index.md and the score's precision-recall plot.")
    args = parser.parse_args(argv)
    if args.more_seeds and args.root is None:
        parser.error("--more-seeds needs --root: the synthetic scenes change with the seed")
    if args.sensors != "lidar" and args.root is None:
        parser.error("--sensors needs --root: the synthetic diagnosis fits its LiDAR frames")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.root is not None:
        root = args.root
        name = root.resolve().name + ("" if args.sensors == "lidar" else "_boxes_only")
    else:
        root, name = cache_folder(args.seed, SCENES, CACHE), "synthetic"
    rows_file = args.rows or ROOT / "benchmarks" / "output" / f"diagnose_rows_{name}.json"
    code = code_fingerprint()
    source, rows = _rows(args, root, args.seed, rows_file, code)
    summary = summarize(rows)
    print(format_summary(summary, rows))
    document = {"benchmark": "diagnose", "source": source,
                "frames_with_cars": len({row["frame"] for row in rows}), **summary}
    if args.more_seeds:
        more = [_rows(args, root, seed, rows_file.with_name(
            f"{rows_file.stem}_seed{seed}{rows_file.suffix}"), code)[1]
            for seed in args.more_seeds]
        document["persistence"] = {"seeds": [args.seed, *args.more_seeds],
                                   **persistence([rows, *more])}
        print(format_persistence(document["persistence"]))
    out = args.summary or ROOT / "benchmarks" / "results" / f"diagnose_{name}.json"
    write_json(out, document)
    print(f"wrote {out}")
    if args.pictures is not None:
        pictures = write_gallery(rows, root, args.pictures, main_cause, SUCCESS_IOU)
        plot_score_curve(summary["score"]["pr_curve"], args.pictures / "score_pr.png")
        print(f"wrote {len(pictures)} pictures, index.md and score_pr.png to {args.pictures}")
    return document


if __name__ == "__main__":
    main()
