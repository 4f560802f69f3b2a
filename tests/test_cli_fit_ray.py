"""`autolabel fit --ray` on a local Ray cluster of two CPUs: the labels equal a single-process
run's, a corrupt frame is recorded and the others labelled, a re-run skips finished frames,
Ray adds no noise to the output, and a batch no worker finished keeps its finished frames."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autolabel.distributed import BatchLost
from autolabel.synth import SynthConfig
from autolabel.synth.lidar import LidarConfig
from autolabel.synth.noise import DetectionNoise
from autolabel.synth.scene import SceneConfig
from cli.fit_run import recovered
from cli.main import app
from tests.scenes import write_scene

FRAMES = tuple(f"{i:06d}" for i in range(4))
SCENE = SynthConfig(
    scene=SceneConfig(min_cars=1, max_cars=3),
    lidar=LidarConfig(azimuth_step=math.radians(0.4)),
    detections=DetectionNoise(box_jitter=1.0, mask_noise=1, miss_rate=0.0, false_positives=0.0),
    viz=False)
OPTIONS = ("--method", "render", "--iterations", "5", "--batch", "2")
# Every line `autolabel fit --ray` prints starts with one of these: no Ray start-up noise.
LINES = ("LiDAR from ", "labeling (render)", "labeled ", "evidence: ", "failed frame",
         "2 CPU worker(s) on Ray (local), peak memory per worker ")

runner = CliRunner()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic KITTI frames of one to three cars with LiDAR and detections.json."""
    return write_scene(tmp_path_factory.mktemp("scene"), 11, len(FRAMES), SCENE)


def fit(root: Path, out: Path, *extra: str):
    return runner.invoke(app, ["fit", "--images", str(root / "image_2"), "--detections",
                               str(root / "detections.json"), "--out", str(out), *OPTIONS,
                               *extra])


@pytest.fixture(scope="module")
def single(scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process run's output folder."""
    out = tmp_path_factory.mktemp("single")
    result = fit(scene, out)
    assert result.exit_code == 0, result.output
    return out


def objects(out: Path, frame: str) -> list[dict]:
    """The frame's labels as written to its JSON, without the timing (it varies)."""
    record = json.loads((out / "json" / f"{frame}.json").read_text())
    for entry in record["objects"]:
        entry["extras"].pop("seconds", None)
    return record["objects"]


def test_two_workers_write_the_labels_of_a_single_process_run(ray_local, scene, single,
                                                              tmp_path):
    result = fit(scene, tmp_path, "--ray", "local", "--ray-workers", "2")
    assert result.exit_code == 0, result.output
    assert "labeled 4 frames (0 already done, 0 failed)" in result.output
    lines = result.output.strip().splitlines()
    assert all(line.startswith(LINES) for line in lines), result.output
    assert any(line.startswith(LINES[-1]) for line in lines), result.output
    assert sum(len(objects(single, frame)) for frame in FRAMES) >= 5
    for frame in FRAMES:
        ours = (tmp_path / "label_2" / f"{frame}.txt").read_bytes()
        assert ours == (single / "label_2" / f"{frame}.txt").read_bytes(), frame
        assert objects(tmp_path, frame) == objects(single, frame), frame


def test_a_corrupt_frame_is_recorded_the_others_labelled_and_a_rerun_skips_them(
        ray_local, scene, tmp_path):
    root = tmp_path / "scene"
    shutil.copytree(scene, root)
    bad = root / "image_2" / "000002.png"
    bad.write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    result = fit(root, out, "--ray", "local")
    assert result.exit_code == 1, result.output
    assert f"failed frame 000002: {bad}" in result.output
    assert sorted(json.loads((out / "failures.json").read_text())) == ["000002"]
    assert sorted(p.stem for p in (out / "json").glob("*.json")) == ["000000", "000001",
                                                                     "000003"]
    finished = {p: p.stat().st_mtime_ns for p in out.rglob("*.txt")}
    again = fit(root, out, "--ray", "local", "--skip-failed")
    assert again.exit_code == 0, again.output
    assert "labeled 0 frames (3 already done, 0 failed, 1 skipped as failed before)" in \
        again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.txt")} == finished


def test_more_workers_than_the_cluster_has_cpus_is_one_line_exit_2(ray_local, scene,
                                                                   tmp_path):
    result = fit(scene, tmp_path / "out", "--ray", "local", "--ray-workers", "3")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == "error: --ray-workers 3: the Ray cluster has 2 CPU(s)"
    assert not (tmp_path / "out" / "label_2").exists()


def test_a_batch_no_worker_finished_keeps_its_frames_on_disk_and_fails_the_rest(single):
    outcomes = recovered(["000001", "999999"], BatchLost("worker died: killed"), single)
    assert [(o.frame_id, o.evidence, o.failure) for o in outcomes] == [
        ("000001", "lidar", None), ("999999", None, "worker died: killed")]
