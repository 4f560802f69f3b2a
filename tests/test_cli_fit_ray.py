"""`autolabel fit --ray` on a local Ray cluster of two CPUs: the labels equal a single-process
run's, a corrupt frame is recorded and the others labelled, a re-run skips finished frames,
Ray adds no noise to the output, and a batch no worker finished keeps its finished frames."""

from __future__ import annotations

import json
import shutil

from autolabel.distributed import BatchLost
from cli.fit_run import recovered
from tests.scenes import RENDER_OPTIONS, SMALL_FRAMES, fit_scene, frame_objects

# Every line `autolabel fit --ray` prints starts with one of these: no Ray start-up noise.
LINES = ("LiDAR from ", "labeling (render)", "labeled ", "evidence: ", "failed frame",
         "2 CPU worker(s) on Ray (local), peak memory per worker ")


def test_two_workers_write_the_labels_of_a_single_process_run(ray_local, small_scene,
                                                              labelled_in_one_process, tmp_path):
    single = labelled_in_one_process
    result = fit_scene(small_scene, tmp_path, *RENDER_OPTIONS, "--ray", "local",
                       "--ray-workers", "2")
    assert result.exit_code == 0, result.output
    assert "labeled 4 frames (0 already done, 0 failed)" in result.output
    lines = result.output.strip().splitlines()
    assert all(line.startswith(LINES) for line in lines), result.output
    assert any(line.startswith(LINES[-1]) for line in lines), result.output
    assert sum(len(frame_objects(single, frame)) for frame in SMALL_FRAMES) >= 5
    for frame in SMALL_FRAMES:
        ours = (tmp_path / "label_2" / f"{frame}.txt").read_bytes()
        assert ours == (single / "label_2" / f"{frame}.txt").read_bytes(), frame
        assert frame_objects(tmp_path, frame) == frame_objects(single, frame), frame


def test_a_corrupt_frame_is_recorded_the_others_labelled_and_a_rerun_skips_them(
        ray_local, small_scene, tmp_path):
    root = tmp_path / "scene"
    shutil.copytree(small_scene, root)
    bad = root / "image_2" / "000002.png"
    bad.write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    result = fit_scene(root, out, *RENDER_OPTIONS, "--ray", "local")
    assert result.exit_code == 1, result.output
    assert f"failed frame 000002: {bad}" in result.output
    assert sorted(json.loads((out / "failures.json").read_text())) == ["000002"]
    assert sorted(p.stem for p in (out / "json").glob("*.json")) == ["000000", "000001",
                                                                     "000003"]
    finished = {p: p.stat().st_mtime_ns for p in out.rglob("*.txt")}
    again = fit_scene(root, out, *RENDER_OPTIONS, "--ray", "local", "--skip-failed")
    assert again.exit_code == 0, again.output
    assert "labeled 0 frames (3 already done, 0 failed, 1 skipped as failed before)" in \
        again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.txt")} == finished


def test_more_workers_than_the_cluster_has_cpus_is_one_line_exit_2(ray_local, small_scene,
                                                                   tmp_path):
    result = fit_scene(small_scene, tmp_path / "out", *RENDER_OPTIONS, "--ray", "local",
                       "--ray-workers", "3")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == "error: --ray-workers 3: the Ray cluster has 2 CPU(s)"
    assert not (tmp_path / "out" / "label_2").exists()


def test_a_batch_no_worker_finished_keeps_its_frames_on_disk_and_fails_the_rest(
        labelled_in_one_process):
    outcomes = recovered(["000001", "999999"], BatchLost("worker died: killed"),
                         labelled_in_one_process)
    assert [(o.frame_id, o.evidence, o.failure) for o in outcomes] == [
        ("000001", "lidar", None), ("999999", None, "worker died: killed")]
