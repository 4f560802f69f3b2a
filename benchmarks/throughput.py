"""End-to-end throughput of `autolabel fit`: objects per second and peak memory over N generated
frames, in one process (reading in it, ``--workers 0``, and streamed: read and prepared by
worker processes ahead of the fit, ``--workers W``) and on Ray with 1 and 2 workers, per device.

    .venv/bin/python benchmarks/throughput.py --frames 32
    .venv/bin/python benchmarks/throughput.py --frames 500 --devices cuda --stream-workers 4 \
        --ray-workers 1
    .venv/bin/python benchmarks/throughput.py --frames 20 --ray-workers --out /tmp/t.json
    python3 benchmarks/throughput.py --scenes DIR --frames 30 --repeat 5 --devices cuda \
        --ray-workers    # a machine without open3d: an existing folder, each frame 5 times

The frames are ``0 .. N-1`` of the default synthetic data set (:mod:`benchmarks.synthetic`:
LiDAR and instance masks, cached under ``benchmarks/cache/synthetic/``). Each row runs the
whole command (``python -m cli.main --threads 1 fit --batch B ...``: torch, the prior,
reading, fitting, writing) in a fresh process into an empty output folder and times it from
start to exit, so Ray rows include starting the local cluster and its workers and streamed
rows their worker processes. Objects are the labels written. Peak memory: the command's
process from the operating system (``wait4``: the largest of it and the worker processes it
started and reaped, so a streamed row's workers are not added), plus for Ray the peak of each
worker as the command reports it (Ray's own daemons are not counted). A device without
hardware here is written as "not measured". Results go to
``benchmarks/results/throughput.json`` (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autolabel.io.atomic import write_text_atomic  # noqa: E402
from autolabel.io.detections import merge_detections  # noqa: E402

WORKER_PEAKS = re.compile(r"peak memory per worker ([\d., ]+) GB")


def available(device: str) -> bool:
    """Whether torch here can run on ``device`` (cpu or cuda)."""
    import torch

    return device == "cpu" or torch.cuda.is_available()


def run_fit(scenes: Path, device: str, batch: int, workers: int = 0,
            ray_workers: int | None = None) -> dict:
    """One end-to-end `autolabel fit` on ``device``: in one process with ``workers`` processes
    reading ahead (``ray_workers`` None), or on a local Ray cluster with ``ray_workers``
    workers; its speed and peak memory."""
    extra = (["--workers", str(workers)] if ray_workers is None
             else ["--ray", "local", "--ray-workers", str(ray_workers)])
    with tempfile.TemporaryDirectory() as scratch:
        out, log = Path(scratch) / "out", Path(scratch) / "log.txt"
        command = [sys.executable, "-m", "cli.main", "--threads", "1", "fit",
                   "--images", str(scenes / "image_2"), "--detections",
                   str(scenes / "detections.json"), "--out", str(out), "--device", device,
                   "--batch", str(batch), *extra]
        start = time.perf_counter()
        with log.open("wb") as sink:
            process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        text = log.read_text()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"autolabel fit failed:\n{text}")
        records = [json.loads(path.read_text()) for path in (out / "json").glob("*.json")]
    objects = sum(len(record["objects"]) for record in records)
    command_mb = round(usage.ru_maxrss / 1024, 1)
    found = WORKER_PEAKS.search(text)
    workers_mb = [round(float(v) * 1024, 1) for v in found.group(1).split(",")] if found else []
    return {"device": device, "workers": workers, "ray_workers": ray_workers,
            "frames": len(records),
            "objects": objects, "seconds": round(seconds, 1),
            "objects_per_second": round(objects / seconds, 3),
            "frames_per_second": round(len(records) / seconds, 3),
            "peak_memory_mb": {"command": command_mb, "workers": workers_mb,
                               "total": round(command_mb + sum(workers_mb), 1)}}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=32, help="Generated frames to label.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic data set.")
    parser.add_argument("--scenes", type=Path, default=None,
                        help="Label this data set's folder (image_2, calib, velodyne, "
                        "detections/<id>.json; synthetic.py's cache layout) instead of the "
                        "generated one: for a machine that cannot generate (no open3d).")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Label each of the frames this many times, under new names: a "
                        "long run on a fast device from few frames.")
    parser.add_argument("--batch", type=int, default=4, help="--batch of every run (the "
                        "batches are what Ray spreads over its workers).")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"],
                        help="Devices to measure; one without hardware is 'not measured'.")
    parser.add_argument("--stream-workers", type=int, nargs="*", default=[1],
                        help="--workers of the streamed one-process rows (besides the one "
                        "that reads in the fitting process, --workers 0).")
    parser.add_argument("--ray-workers", type=int, nargs="*", default=[1, 2],
                        help="Ray workers of the Ray rows; none for no Ray rows.")
    parser.add_argument("--conditions", default="", help="What else ran on the machine.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "throughput.json", help="Where to write the JSON results.")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, not {args.repeat}")
    folder = args.scenes or _generated(args.seed, args.frames)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scenes = _first_frames(folder, args.frames, args.repeat, Path(scratch))
        for device in args.devices:
            if not available(device):
                rows.append({"device": device, "result": "not measured (no such device here)"})
                print(json.dumps(rows[-1]), flush=True)
                continue
            runs = ([{"workers": w} for w in [0, *args.stream_workers]]
                    + [{"ray_workers": w} for w in args.ray_workers])
            for run in runs:
                rows.append(run_fit(scenes, device, args.batch, **run))
                print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "throughput", "frames": args.frames, "repeat": args.repeat,
              "scenes": str(args.scenes) if args.scenes else "generated", "seed": args.seed,
              "batch": args.batch, "cpu_cores": os.cpu_count(), "conditions": args.conditions,
              "command": "python -m cli.main --threads 1 fit --images ... --detections ... "
                         f"--out ... --device D --batch {args.batch} "
                         "(--workers W | --ray local --ray-workers W)", "rows": rows}
    write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return result


def _generated(seed: int, frames: int) -> Path:
    """The cache folder of the synthetic data set with ``seed``, its first ``frames`` frames
    generated where missing (imported here: generating needs open3d)."""
    from benchmarks.synthetic import CACHE, SCENES, cache_folder, ensure_scenes

    folder = cache_folder(seed, SCENES, CACHE)
    ensure_scenes(folder, seed, frames, SCENES)
    return folder


def _first_frames(folder: Path, count: int, repeat: int, scratch: Path) -> Path:
    """A folder with links to the data set's first ``count`` frames (image, calib, LiDAR,
    detections), each ``repeat`` times under the names ``<copy><id>``, and their merged
    detections.json."""
    scenes = scratch / "scenes"
    ids = sorted(path.stem for path in (folder / "image_2").glob("*.png"))[:count]
    if len(ids) < count:
        raise SystemExit(f"{folder / 'image_2'}: {len(ids)} frames, fewer than --frames {count}")
    links = [(frame, f"{copy:02d}{frame}" if repeat > 1 else frame)
             for copy in range(repeat) for frame in ids]
    for name, suffix in (("image_2", ".png"), ("calib", ".txt"), ("velodyne", ".bin"),
                         ("detections", ".json")):
        (scenes / name).mkdir(parents=True)
        for frame, link in links:
            os.symlink((folder / name / f"{frame}{suffix}").resolve(),
                       scenes / name / f"{link}{suffix}")
    merge_detections(scenes, [link for _, link in links])
    return scenes


if __name__ == "__main__":
    main()
