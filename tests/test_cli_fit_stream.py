"""`autolabel fit --workers N`: frames read and prepared by worker processes ahead of the fit
give the labels of a run without workers, byte for byte; a corrupt frame read by a worker is
recorded and the others labelled; a re-run does only the unfinished frame."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.scenes import RENDER_OPTIONS, SMALL_FRAMES, fit_scene, frame_objects


def test_two_workers_give_the_labels_of_a_run_without_workers_byte_for_byte(
        small_scene, labelled_in_one_process, tmp_path):
    result = fit_scene(small_scene, tmp_path, *RENDER_OPTIONS, "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "2 worker process(es) read the frames" in result.output
    assert "labeled 4 frames (0 already done, 0 failed)" in result.output
    expected = labelled_in_one_process
    assert sum(len(frame_objects(expected, frame)) for frame in SMALL_FRAMES) >= 5
    for frame in SMALL_FRAMES:
        ours = (tmp_path / "label_2" / f"{frame}.txt").read_bytes()
        assert ours == (expected / "label_2" / f"{frame}.txt").read_bytes(), frame
        assert frame_objects(tmp_path, frame) == frame_objects(expected, frame), frame


def test_a_corrupt_frame_read_by_a_worker_is_recorded_and_a_rerun_labels_only_it(small_scene,
                                                                                  tmp_path):
    root = tmp_path / "scene"
    shutil.copytree(small_scene, root)
    bad = root / "image_2" / "000001.png"
    bad.write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    lshape = ("--method", "lshape", "--batch", "2", "--workers", "1")  # they read the frames
    result = fit_scene(root, out, *lshape)
    assert result.exit_code == 1, result.output
    assert f"failed frame 000001: {bad}" in result.output
    assert sorted(json.loads((out / "failures.json").read_text())) == ["000001"]
    assert sorted(p.stem for p in (out / "json").glob("*.json")) == ["000000", "000002",
                                                                     "000003"]
    finished = {p: p.stat().st_mtime_ns for p in out.rglob("*.*")
                if p.name != "failures.json"}
    shutil.copy(small_scene / "image_2" / "000001.png", bad)  # repaired
    again = fit_scene(root, out, *lshape)
    assert again.exit_code == 0, again.output
    assert "labeled 1 frames (3 already done, 0 failed)" in again.output
    assert json.loads((out / "failures.json").read_text()) == {}
    assert (out / "json" / "000001.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in finished} == finished


def test_workers_with_ray_is_a_one_line_error(small_scene, tmp_path):
    pytest.importorskip("ray")
    result = fit_scene(small_scene, tmp_path / "out", *RENDER_OPTIONS, "--ray", "local",
                       "--workers", "2")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: --workers is for a run in one process; on Ray "
                                     "each worker reads its own batches")
