"""Labels on any KITTI-format folder, evaluated against its label_2, every method side by side.

    .venv/bin/python benchmarks/kitti.py --root ../shared/data/kitti_dev --jitter 3

Detections are the ground-truth 2D boxes of cars (each edge jittered by N(0, PX^2) pixels,
seeded) unless ``--detections FILE`` gives a detections JSON (COCO results or per-image
layout). Every method in :data:`METHODS` labels the same detections; each is evaluated with
KITTI AP|R40 (BEV and 3D at IoU 0.7 and 0.5, easy/moderate/hard), median translation, yaw
and size errors and its acceptance rate (the fraction of labels its own verification accepts;
the L-shape baseline has none and accepts every label), and timed (objects per second,
labeling only, frames preloaded), with the precision of the accepted labels (BEV IoU >= 0.5
with a ground-truth car). The tables are printed and the results written as JSON with one key
per method under ``"methods"`` (default ``benchmarks/results/kitti_dev.json``).

``--sensors none`` labels from the boxes and the image alone (the LiDAR scans are hidden from
the labelers; they still select the well-observed cars of the yaw errors): the L-shape
baseline falls back to its box-only boxes, and the render method runs with
:data:`benchmarks.common.WEAK_ACCEPTED` (camera-only hypotheses; the image model's viewpoint
also chooses between the yaw hypotheses; weak labels accepted by their score, so that the
accepted precision says what the score's threshold accepts). Its results go to
``kitti_dev_boxes_only.json`` by default.

``--more-seeds S...`` labels again from the ground-truth boxes jittered with each of these
seeds and records every method's moderate AP|R40 per seed with their mean, minimum and
maximum under ``"jitter_seeds"``: on a few dozen cars one draw of 3 px jitter moves the AP by
several points, more than most changes of the fitter do.

``--box-extent box`` (the default) fits the projection of the label's 3D box to each
detection box, as ``autolabel fit --box-extent box`` does: KITTI's 2D labels, from which the
default detections are made, are their 3D boxes projected. ``shape`` compares the fitted
shape's outline instead (detectors that box the visible pixels).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autolabel.evaluate import to_json  # noqa: E402
from autolabel.fit import BOX_EXTENTS  # noqa: E402
from autolabel.io.detections import read_detections  # noqa: E402
from benchmarks.common import (  # noqa: E402
    SENSORS,
    as_seen,
    boxes_bound,
    detections_from_labels,
    evaluate_methods,
    load_kitti,
    lshape,
    method_record,
    render_and_compare,
    report,
    run_labeler,
    write_json,
)

RESULTS = ROOT / "benchmarks" / "results"


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True,
                        help="KITTI-layout folder with image_2, calib, label_2 (and velodyne).")
    parser.add_argument("--detections", type=Path, default=None,
                        help="Detections JSON; default: ground-truth Car 2D boxes.")
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="Std. dev. (pixels) of the noise on ground-truth box edges.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the box jitter.")
    parser.add_argument("--more-seeds", type=int, nargs="*", default=[],
                        help="Further jitter seeds to label and evaluate again (the moderate "
                             "AP per seed and its spread are recorded).")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (0: torch's default); see docs/decisions.md")
    parser.add_argument("--sensors", choices=tuple(SENSORS), default="lidar",
                        help="What the labelers see besides the boxes: the LiDAR scans, or "
                             "none (boxes and image only).")
    parser.add_argument("--box-extent", choices=BOX_EXTENTS, default="box",
                        help="What the detections' boxes bound (autolabel fit --box-extent): "
                             "KITTI's 2D labels, the default detections, are their 3D boxes "
                             "projected.")
    parser.add_argument("--out", type=Path, default=None,
                        help="Where to write the JSON results; default benchmarks/results/"
                             "kitti_dev.json, kitti_dev_boxes_only.json with --sensors none.")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or RESULTS / ("kitti_dev.json" if args.sensors == "lidar"
                                 else "kitti_dev_boxes_only.json")

    frames = load_kitti(args.root)
    seen = [as_seen(frame, args.sensors) for frame in frames]
    if args.detections is not None:
        detections = read_detections(args.detections)
        source = f"file {args.detections}"
    else:
        detections = jittered_detections(frames, args.jitter, args.seed)
        source = (f"ground-truth Car 2D boxes, edges jittered by N(0, {args.jitter:g}^2) px, "
                  f"seed {args.seed}")
    config = boxes_bound(SENSORS[args.sensors], args.box_extent)
    methods = {"lshape": lshape, "render": functools.partial(render_and_compare, config=config)}
    runs = {name: run_labeler(labeler, seen, detections, name)
            for name, labeler in methods.items()}
    results = evaluate_methods(frames, runs)
    records = {name: method_record(results[name], runs[name], frames) for name in runs}
    print(report(results, records))
    document = {"benchmark": "kitti", "root": str(args.root), "frames": len(frames),
                "sensors": args.sensors, "detections": source, "box_extent": args.box_extent,
                "methods": records}
    if args.more_seeds and args.detections is None:
        seeds = [args.seed] + [seed for seed in args.more_seeds if seed != args.seed]
        per_seed = [results] + [
            evaluate_methods(frames, {name: run_labeler(labeler, seen, jittered_detections(
                frames, args.jitter, seed), f"{name}, seed {seed}")
                for name, labeler in methods.items()}) for seed in seeds[1:]]
        document["jitter_seeds"] = seed_spread(seeds, per_seed)
        print(seed_table(document["jitter_seeds"]))
    write_json(out, document)
    print(f"wrote {out}")
    return document


def jittered_detections(frames, jitter: float, seed: int) -> dict:
    """Per image, the frames' ground-truth car boxes with edges jittered by N(0, jitter^2) px
    (seeded), as detections."""
    rng = np.random.default_rng(seed)
    return {frame.image_name: detections_from_labels(frame.labels, frame.image_size, jitter, rng)
            for frame in frames}


SPREAD_METRICS = (("bev", "0.7"), ("3d", "0.7"), ("bev", "0.5"), ("3d", "0.5"))


def seed_spread(seeds: Sequence[int], per_seed: Sequence[dict]) -> dict:
    """Each method's moderate Car AP|R40 under each jitter seed, and its mean, min and max.

    Args:
        seeds: the jitter seeds. per_seed: per seed, method name -> evaluation result.
    Returns:
        ``{"seeds", "ap_r40_moderate": {method: {"bev@0.7"...: {"per_seed", "mean", "min",
        "max"}}}}``.
    """
    table = {}
    for name in per_seed[0]:
        table[name] = {}
        for metric, iou in SPREAD_METRICS:
            values = [round(to_json(results[name])["classes"]["Car"]["ap_r40"][metric][iou]
                            ["moderate"], 2) for results in per_seed]
            table[name][f"{metric}@{iou}"] = {"per_seed": values,
                                              "mean": round(float(np.mean(values)), 2),
                                              "min": min(values), "max": max(values)}
    return {"seeds": list(seeds), "ap_r40_moderate": table}


def seed_table(spread: dict) -> str:
    """The seed spread as a text table: mean [min, max] per method and metric."""
    lines = [f"moderate AP|R40 over jitter seeds {spread['seeds']}: mean [min, max]"]
    for name, metrics in spread["ap_r40_moderate"].items():
        cells = [f"{key} {v['mean']:.2f} [{v['min']:.2f}, {v['max']:.2f}]"
                 for key, v in metrics.items()]
        lines.append(f"  {name:8s} " + "   ".join(cells))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
