"""Tests for cli/synth.py: the `autolabel synth` command."""

from __future__ import annotations

from typer.testing import CliRunner

from autolabel.io.detections import read_detections
from autolabel.io.kitti import list_frames, read_labels
from cli.main import app

FAST = ["--azimuth-step", "0.5", "--max-cars", "3"]


def test_synth_writes_a_kitti_folder_with_detections_and_depth(tmp_path):
    out = tmp_path / "synth"
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--frames", "2", "--seed",
                                      "9", "--depth", "--no-viz", *FAST])
    assert result.exit_code == 0, result.output
    assert "wrote 2 frames" in result.output
    assert list_frames(out) == ["000000", "000001"]
    for folder, suffix in (("velodyne", "bin"), ("calib", "txt"), ("depth", "png")):
        assert sorted(p.name for p in (out / folder).iterdir()) == [f"00000{i}.{suffix}"
                                                                   for i in range(2)]
    assert not (out / "viz").exists()
    assert sorted(read_detections(out / "detections.json")) == ["000000.png", "000001.png"]
    read_labels(out / "label_2" / "000001.txt")


def test_synth_start_extends_a_data_set_and_the_merged_detections(tmp_path):
    out = tmp_path / "synth"
    runner = CliRunner()
    assert runner.invoke(app, ["synth", "--out", str(out), "--frames", "1", *FAST]).exit_code == 0
    result = runner.invoke(app, ["synth", "--out", str(out), "--frames", "1", "--start", "1",
                                 *FAST])
    assert result.exit_code == 0, result.output
    assert list_frames(out) == ["000000", "000001"]
    assert sorted(read_detections(out / "detections.json")) == ["000000.png", "000001.png"]


def test_synth_rejects_more_min_cars_than_max_cars_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--min-cars", "5",
                                      "--max-cars", "2"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: field '--min-cars': is 5, more than --max-cars 2")


def test_synth_rejects_an_output_path_that_is_a_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    result = CliRunner().invoke(app, ["synth", "--out", str(target), "--frames", "1"])
    assert result.exit_code == 2
    assert "exists and is not a folder" in result.output
