"""`autolabel fit --workers N`: frames read and prepared by worker processes ahead of the fit
give the labels of a run without workers, byte for byte; a corrupt frame read by a worker is
recorded and the others labelled; a re-run does only the unfinished frame."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autolabel.synth import SynthConfig
from autolabel.synth.lidar import LidarConfig
from autolabel.synth.noise import DetectionNoise
from autolabel.synth.scene import SceneConfig
from cli.main import app
from tests.scenes import write_scene

FRAMES = tuple(f"{i:06d}" for i in range(4))
SCENE = SynthConfig(
    scene=SceneConfig(min_cars=1, max_cars=3),
    lidar=LidarConfig(azimuth_step=math.radians(0.4)),
    detections=DetectionNoise(box_jitter=1.0, mask_noise=1, miss_rate=0.0, false_positives=0.0),
    viz=False)
# Two batches of two frames.
RENDER = ("--method", "render", "--iterations", "5", "--batch", "2")

runner = CliRunner()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic KITTI frames of one to three cars with LiDAR and detections.json."""
    return write_scene(tmp_path_factory.mktemp("scene"), 11, len(FRAMES), SCENE)


def fit(root: Path, out: Path, *extra: str):
    return runner.invoke(app, ["fit", "--images", str(root / "image_2"), "--detections",
                               str(root / "detections.json"), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def without_workers(scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of a run that reads and prepares every frame in its own process."""
    out = tmp_path_factory.mktemp("without_workers")
    result = fit(scene, out, *RENDER, "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "worker process" not in result.output
    return out


def objects(out: Path, frame: str) -> list[dict]:
    """The frame's labels as written to its JSON, without the timing (it varies)."""
    record = json.loads((out / "json" / f"{frame}.json").read_text())
    for entry in record["objects"]:
        entry["extras"].pop("seconds", None)
    return record["objects"]


def test_two_workers_give_the_labels_of_a_run_without_workers_byte_for_byte(
        scene, without_workers, tmp_path):
    result = fit(scene, tmp_path, *RENDER, "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "2 worker process(es) read the frames" in result.output
    assert "labeled 4 frames (0 already done, 0 failed)" in result.output
    assert sum(len(objects(without_workers, frame)) for frame in FRAMES) >= 5
    for frame in FRAMES:
        ours = (tmp_path / "label_2" / f"{frame}.txt").read_bytes()
        assert ours == (without_workers / "label_2" / f"{frame}.txt").read_bytes(), frame
        assert objects(tmp_path, frame) == objects(without_workers, frame), frame


def test_a_corrupt_frame_read_by_a_worker_is_recorded_and_a_rerun_labels_only_it(scene,
                                                                                  tmp_path):
    root = tmp_path / "scene"
    shutil.copytree(scene, root)
    bad = root / "image_2" / "000001.png"
    bad.write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    lshape = ("--method", "lshape", "--batch", "2", "--workers", "1")  # they read the frames
    result = fit(root, out, *lshape)
    assert result.exit_code == 1, result.output
    assert f"failed frame 000001: {bad}" in result.output
    assert sorted(json.loads((out / "failures.json").read_text())) == ["000001"]
    assert sorted(p.stem for p in (out / "json").glob("*.json")) == ["000000", "000002",
                                                                     "000003"]
    finished = {p: p.stat().st_mtime_ns for p in out.rglob("*.*")
                if p.name != "failures.json"}
    shutil.copy(scene / "image_2" / "000001.png", bad)  # repaired
    again = fit(root, out, *lshape)
    assert again.exit_code == 0, again.output
    assert "labeled 1 frames (3 already done, 0 failed)" in again.output
    assert json.loads((out / "failures.json").read_text()) == {}
    assert (out / "json" / "000001.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in finished} == finished


def test_workers_with_ray_is_a_one_line_error(scene, tmp_path):
    pytest.importorskip("ray")
    result = fit(scene, tmp_path / "out", "--ray", "local", "--workers", "2")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: --workers is for a run in one process; on Ray "
                                     "each worker reads its own batches")
