"""Synthetic KITTI folders for the command-line tests, and the small scene that the tests
comparing ways of running `autolabel fit` share (one process, worker processes, Ray)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from typer.testing import CliRunner

from autolabel.synth import SynthConfig, generate_frame, merge_detections, write_frame
from autolabel.synth.lidar import LidarConfig
from autolabel.synth.noise import DetectionNoise
from autolabel.synth.scene import SceneConfig
from cli.main import app

# Four frames of one to three cars, every car detected, a LiDAR of a seventh of KITTI's
# horizontal resolution: fast to fit.
SMALL_FRAMES = tuple(f"{i:06d}" for i in range(4))
SMALL_SEED = 11
SMALL = SynthConfig(
    scene=SceneConfig(min_cars=1, max_cars=3),
    lidar=LidarConfig(azimuth_step=math.radians(0.4)),
    detections=DetectionNoise(box_jitter=1.0, mask_noise=1, miss_rate=0.0, false_positives=0.0),
    viz=False)
# Render-and-compare in two batches of two frames, five steps each.
RENDER_OPTIONS = ("--method", "render", "--iterations", "5", "--batch", "2")

runner = CliRunner()


def write_scene(root: Path, seed: int, frames: int, config: SynthConfig) -> Path:
    """Frames ``0 .. frames-1`` of the data set ``seed`` written to ``root`` as a KITTI folder
    (image_2, velodyne, calib, label_2, ...) with all detections in ``detections.json``."""
    for index in range(frames):
        write_frame(root, generate_frame(seed, index, config), viz=False)
    merge_detections(root, [f"{index:06d}" for index in range(frames)])
    return root


def fit_scene(root: Path, out: Path, *options: str):
    """`autolabel fit` of the KITTI folder ``root`` into ``out`` (a click Result)."""
    return runner.invoke(app, ["fit", "--images", str(root / "image_2"), "--detections",
                               str(root / "detections.json"), "--out", str(out), *options])


def frame_objects(out: Path, frame: str) -> list[dict]:
    """The frame's labels as written to its JSON, without the timing (it varies)."""
    record = json.loads((out / "json" / f"{frame}.json").read_text())
    for entry in record["objects"]:
        entry["extras"].pop("seconds", None)
    return record["objects"]
