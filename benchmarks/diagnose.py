"""Per-object errors of the render-and-compare fitter on the synthetic LiDAR scenes: which cars
miss BEV IoU 0.7, and by which error.

    .venv/bin/python benchmarks/diagnose.py --frames 20
    .venv/bin/python benchmarks/diagnose.py --rows /tmp/rows.json          # summary only

Runs the fitter with its benchmark settings (``benchmarks/synthetic.py``, setting ``lidar``)
on frames ``0 .. N-1`` and writes one row per ground-truth car of a KITTI level (easy to
hard), paired with the prediction of highest BEV IoU in its frame::

    {"frame", "index", "level", "points", "distance_m", "bev_iou", "iou_3d",
     "longitudinal_m", "lateral_m", "vertical_m", "length_m", "width_m", "height_m",
     "yaw_deg", "score", "accepted", "hypothesis", "losses"}

Position errors are predicted minus true, in the true box's frame (longitudinal along its
heading, lateral across it, vertical up); size errors are predicted minus true; ``yaw_deg``
is the wrapped heading error. A row without a prediction has ``bev_iou`` 0 and no errors.

The summary counts the moderate cars under BEV IoU 0.7 and gives each the error that costs
it most, judged by the IoU the prediction would have with that error alone removed.
"""

from __future__ import annotations

import argparse
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

from autolabel.evaluate import bev_iou, iou_3d, kitti_difficulty, labels_to_boxes  # noqa: E402
from autolabel.geometry import points_in_box  # noqa: E402
from autolabel.io.detections import read_detections  # noqa: E402
from autolabel.label import ObjectLabel  # noqa: E402
from autolabel.pipeline import FrameInput, LabelResult, PipelineConfig, label_frames  # noqa: E402
from autolabel.synth.writer import DETECTIONS_FILE  # noqa: E402
from benchmarks.common import Frame, _shipped_prior, load_kitti, write_json  # noqa: E402
from benchmarks.synthetic import CACHE, METHODS, SCENES, cache_folder, ensure_scenes  # noqa: E402

MODERATE = 1
BENCHMARK_CONFIG: PipelineConfig = METHODS["render"].keywords["config"]
# Errors the summary removes one at a time: name -> indices into the 7-vector box.
_ERRORS = {"position": (0, 2), "length": (3,), "width": (4,), "yaw": (6,)}


def _wrapped_degrees(radians: float) -> float:
    return math.degrees(math.atan2(math.sin(radians), math.cos(radians)))


def _box_errors(truth: ObjectLabel, predicted: ObjectLabel) -> dict[str, float]:
    offset = truth.rotation.T @ (predicted.center - truth.center)  # object frame: x, y, z
    return {"longitudinal_m": float(offset[0]), "lateral_m": float(offset[1]),
            "vertical_m": float(offset[2]),
            **{f"{axis}_m": float(predicted.size[i] - truth.size[i])
               for i, axis in enumerate(("length", "width", "height"))},
            "yaw_deg": _wrapped_degrees(predicted.yaw - truth.yaw)}


def frame_rows(frame: Frame, results: Sequence[LabelResult]) -> list[dict]:
    """One row per car of a KITTI level in ``frame`` (see the module docstring)."""
    cars = [label for label in frame.labels if label.category == "Car"]
    levels = kitti_difficulty(np.array([c.box2d[3] - c.box2d[1] for c in cars]),
                              np.array([c.occlusion for c in cars]),
                              np.array([c.truncation for c in cars]))
    predicted = [result.label for result in results]
    bev = (bev_iou(labels_to_boxes(cars), labels_to_boxes(predicted)).numpy()
           if cars and predicted else np.zeros((len(cars), 0)))
    points = torch.as_tensor(frame.points, dtype=torch.float64)
    rows = []
    for index, (car, level) in enumerate(zip(cars, levels, strict=True)):
        if level < 0:
            continue
        inside = points_in_box(points, torch.as_tensor(car.center), torch.as_tensor(car.rotation),
                               torch.as_tensor(car.size))
        row = {"frame": frame.frame_id, "index": index, "level": int(level),
               "points": int(inside.sum()), "distance_m": round(float(car.center[2]), 2),
               "bev_iou": 0.0}
        if bev.shape[1] and bev[index].max() > 0:
            best = int(bev[index].argmax())
            result = results[best]
            pair = labels_to_boxes([car, result.label])
            row.update(bev_iou=round(float(bev[index, best]), 4),
                       iou_3d=round(float(iou_3d(pair[:1], pair[1:])[0, 0]), 4),
                       **{k: round(v, 4) for k, v in _box_errors(car, result.label).items()},
                       score=round(float(result.label.score), 4), accepted=result.accepted,
                       hypothesis=result.hypothesis,
                       losses={k: round(v, 5) for k, v in result.losses.items()},
                       truth=pair[0].tolist(), predicted=pair[1].tolist())
        rows.append(row)
    return rows


def main_cause(row: dict) -> str:
    """The error whose removal alone raises the row's BEV IoU most ('missed' without a
    prediction)."""
    if "predicted" not in row:
        return "missed"
    truth, predicted = torch.tensor([row["truth"]]), torch.tensor([row["predicted"]])
    gains = {}
    for name, indices in _ERRORS.items():
        corrected = predicted.clone()
        corrected[0, list(indices)] = truth[0, list(indices)]
        gains[name] = float(bev_iou(truth, corrected)[0, 0])
    return max(gains, key=gains.get)


def summary(rows: Sequence[dict], threshold: float = 0.7) -> str:
    """Counts of moderate cars under ``threshold`` BEV IoU by main cause, and medians of the
    signed errors of all moderate cars."""
    moderate = [row for row in rows if row["level"] <= MODERATE]
    failing = [row for row in moderate if row["bev_iou"] < threshold]
    causes = Counter(main_cause(row) for row in failing)
    lines = [f"{len(moderate)} moderate cars, {len(failing)} under BEV IoU {threshold}: "
             + ", ".join(f"{name} {count}" for name, count in causes.most_common())]
    paired = [row for row in moderate if "predicted" in row]
    for key in ("longitudinal_m", "lateral_m", "vertical_m", "length_m", "width_m", "height_m",
                "yaw_deg"):
        values = np.array([row[key] for row in paired])
        lines.append(f"  {key:15s} median {np.median(values):+.3f}  median |.| "
                     f"{np.median(np.abs(values)):.3f}  90th |.| "
                     f"{np.percentile(np.abs(values), 90):.3f}")
    lines.append("failing cars (frame/index, points, distance, IoU, main cause, errors):")
    for row in sorted(failing, key=lambda r: r["bev_iou"]):
        errors = " ".join(f"{k.split('_')[0][:4]}={row[k]:+.2f}" for k in
                          ("longitudinal_m", "lateral_m", "length_m", "width_m", "yaw_deg")
                          if k in row)
        lines.append(f"  {row['frame']}/{row['index']:<2d} {row['points']:5d} pts "
                     f"{row['distance_m']:5.1f} m  IoU {row['bev_iou']:.2f}  "
                     f"{main_cause(row):8s} {errors}")
    return "\n".join(lines)


def run(frames: int, seed: int, config: PipelineConfig = BENCHMARK_CONFIG) -> list[dict]:
    """Fit the synthetic LiDAR frames ``0 .. frames-1`` with ``config`` and return every
    frame's rows."""
    folder = cache_folder(seed, SCENES, CACHE)
    loaded = load_kitti(folder, ensure_scenes(folder, seed, frames))
    detections = read_detections(folder / DETECTIONS_FILE)
    rows = []
    for frame in track(loaded, description="fitting"):
        inputs = FrameInput(frame.frame_id, frame.image_size, frame.calib,
                            list(detections.get(frame.image_name, [])), frame.points)
        results = label_frames([inputs], _shipped_prior(), config)[0].labels
        rows.extend(frame_rows(frame, results))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--rows", type=Path, default=Path("diagnose_rows.json"),
                        help="Rows file: written by a run, or read when it exists and "
                             "--frames is not given.")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rows.is_file() and "--frames" not in (argv if argv is not None else sys.argv):
        rows = json.loads(args.rows.read_text())
    else:
        rows = run(args.frames, args.seed)
        write_json(args.rows, rows)
    print(summary(rows))


if __name__ == "__main__":
    main()
