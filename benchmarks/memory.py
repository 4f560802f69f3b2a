"""Peak memory and time of `autolabel fit` against the number of detections on one frame.

    .venv/bin/python benchmarks/memory.py --root ../shared/data/kitti_dev --frame 000008

A detector's raw output holds many boxes an image, most of them low-score. This benchmark
gives one real frame N detections: its ground-truth cars' boxes, then random boxes (10 to 300
pixels wide, inside the image) up to N, every score drawn uniformly from [0, 1] (seeded).
Each N runs `autolabel fit` with the defaults (and the largest N also with smaller
``--batch-objects``) in a fresh process (so the peak covers torch,
the prior, reading and fitting); the peak resident set size comes from the operating system
(``wait4``'s ``ru_maxrss``). Written to ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autolabel.io.atomic import write_text_atomic  # noqa: E402
from autolabel.io.kitti import read_image, read_labels  # noqa: E402


def detections(root: Path, frame: str, count: int, seed: int) -> dict:
    """The frame's detections in the per-image layout: its cars, then random boxes."""
    height, width = read_image(root / "image_2" / f"{frame}.png").shape[:2]
    rng = np.random.default_rng(seed)
    boxes = [label.box2d.tolist() for label in read_labels(root / "label_2" / f"{frame}.txt")
             if label.category == "Car"][:count]
    while len(boxes) < count:
        box_width = rng.uniform(10, 300)
        box_height = box_width * rng.uniform(0.4, 1.2)
        x1 = rng.uniform(0, width - box_width)
        y1 = rng.uniform(0, max(1.0, height - box_height))
        boxes.append([x1, y1, x1 + box_width, min(height, y1 + box_height)])
    scores = rng.uniform(0, 1, size=count)
    return {f"{frame}.png": [{"bbox": [round(v, 2) for v in box], "category": "Car",
                              "score": round(float(score), 4)}
                             for box, score in zip(boxes, scores, strict=True)]}


def peak_of_fit(root: Path, frame: str, count: int, seed: int, extra: Sequence[str]) -> dict:
    """Run `autolabel fit` on the frame with ``count`` detections; its peak memory and time."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "image_2").mkdir()
        shutil.copy(root / "image_2" / f"{frame}.png", work / "image_2")
        for folder, suffix in (("calib", ".txt"), ("velodyne", ".bin")):
            (work / folder).mkdir()
            shutil.copy(root / folder / f"{frame}{suffix}", work / folder)
        (work / "detections.json").write_text(json.dumps(detections(root, frame, count, seed)))
        command = [sys.executable, "-m", "cli.main", "--threads", "1", "fit",
                   "--images", str(work / "image_2"), "--detections",
                   str(work / "detections.json"), "--out", str(work / "out"), *extra]
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        output = process.stdout.read().decode()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"autolabel fit failed with {count} detections:\n{output}")
        record = json.loads((work / "out" / "json" / f"{frame}.json").read_text())
    return {"detections": count, "labelled": len(record["objects"]),
            "left_out": len(record["extras"]["left_out"]),
            "peak_memory_mb": round(usage.ru_maxrss / 1024, 1), "seconds": round(seconds, 1),
            "options": list(extra)}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="KITTI-layout folder.")
    parser.add_argument("--frame", default="000008", help="Frame id to use.")
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100, 1000],
                        help="Detections on the frame, one run each.")
    parser.add_argument("--batch-objects", type=int, nargs="*", default=[8],
                        help="Also run the largest count with each of these --batch-objects.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the boxes and scores.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "memory.json", help="Where to write the JSON results.")
    args = parser.parse_args(argv)
    runs = [(count, []) for count in args.counts]
    runs += [(max(args.counts), ["--batch-objects", str(n)]) for n in args.batch_objects]
    rows = []
    for count, options in runs:
        rows.append(peak_of_fit(args.root, args.frame, count, args.seed, options))
        print(json.dumps(rows[-1]), flush=True)
    result = {"frame": args.frame, "root": str(args.root), "seed": args.seed,
              "command": "autolabel fit --images ... --detections ... --out ... (defaults, "
                         "one torch thread, CPU)", "rows": rows}
    write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
