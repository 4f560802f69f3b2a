"""Tests for `autolabel eval` (cli/eval.py) on small label_2 folders written in the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def kitti_line(x: float, z: float, category: str = "Car", score: float | None = None,
               occlusion: int = 0) -> str:
    """A label_2 line of a 1.5 x 1.6 x 4 m box at camera (x, 1.65 m bottom, z), 100 px tall."""
    line = (f"{category} 0.00 {occlusion} 0.00 500.00 150.00 600.00 250.00 1.50 1.60 4.00 "
            f"{x:.2f} 1.65 {z:.2f} 0.00")
    return line if score is None else f"{line} {score:.4f}"


def write_folder(root: Path, frames: dict[str, list[str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for frame, lines in frames.items():
        (root / f"{frame}.txt").write_text("".join(line + "\n" for line in lines))
    return root


@pytest.fixture
def gt_folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "gt", {
        "000000": [kitti_line(0.0, 10.0), kitti_line(5.0, 20.0),
                   "DontCare -1 -1 -10 700.00 160.00 760.00 190.00 -1 -1 -1 -1000 -1000 -1000 -10"],
        "000001": [kitti_line(-3.0, 15.0), kitti_line(8.0, 30.0, category="Van")],
    })


def test_eval_of_ground_truth_against_itself_prints_100_and_writes_json(gt_folder, tmp_path):
    out = tmp_path / "result.json"
    result = runner.invoke(app, ["eval", "--gt", str(gt_folder), "--pred", str(gt_folder),
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    # As the devkit: 3 valid cars give 3 score thresholds of precision 1, the other 38 of the
    # 41 sampled entries are 0: AP|R40 = entries 1..2 of 40 = 5 %, AP|R11 = entry 0 of 11.
    rows = [line for line in result.stdout.splitlines() if "Car" in line and "0.7" in line]
    assert len(rows) == 2 and all(row.count(" 5.00") == 3 for row in rows)
    data = json.loads(out.read_text())
    assert data["frames"] == 2
    assert data["classes"]["Car"]["num_gt"] == {"easy": 3, "moderate": 3, "hard": 3}
    assert data["classes"]["Car"]["ap_r40"]["3d"]["0.7"]["moderate"] == pytest.approx(5.0)
    assert data["classes"]["Car"]["ap_r11"]["3d"]["0.7"]["moderate"] == pytest.approx(100 / 11)


def test_recall_positions_option_shows_ap_r11_and_rejects_other_values(gt_folder):
    result = runner.invoke(app, ["eval", "--gt", str(gt_folder), "--pred", str(gt_folder),
                                 "--recall-positions", "11"])
    assert result.exit_code == 0, result.output
    assert "AP|R11" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "Car" in line and "0.7" in line]
    assert len(rows) == 2 and all(row.count("9.09") == 3 for row in rows)
    result = runner.invoke(app, ["eval", "--gt", str(gt_folder), "--pred", str(gt_folder),
                                 "--recall-positions", "41"])
    assert result.exit_code == 2
    assert "--recall-positions" in result.stderr


def test_frame_missing_from_predictions_counts_as_no_detections(gt_folder, tmp_path):
    pred = write_folder(tmp_path / "pred", {"000000": [kitti_line(0.0, 10.0, score=0.9),
                                                       kitti_line(5.0, 20.0, score=0.8)]})
    out = tmp_path / "result.json"
    result = runner.invoke(app, ["eval", "--gt", str(gt_folder), "--pred", str(pred),
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    ap = json.loads(out.read_text())["classes"]["Car"]["ap_r40"]["bev"]["0.7"]["easy"]
    # Two of three cars found at precision 1: two score thresholds, so only entry 1 of the
    # devkit's 40 R40 entries is 1 (the others 0).
    assert ap == pytest.approx(1 / 40 * 100)


def test_prediction_file_without_ground_truth_frame_is_a_one_line_error_naming_it(gt_folder,
                                                                                   tmp_path):
    pred = write_folder(tmp_path / "pred", {"000000": [], "000123": [kitti_line(0, 10, score=1)]})
    result = runner.invoke(app, ["eval", "--gt", str(gt_folder), "--pred", str(pred)])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "000123.txt" in result.stderr and "no ground-truth file" in result.stderr


def test_malformed_prediction_line_is_a_one_line_error_naming_file_and_line(gt_folder,
                                                                          tmp_path):
    pred = write_folder(tmp_path / "pred", {"000001": ["Car 0.00 0 0.00 1 2 3"]})
    result = runner.invoke(app, ["eval", "--gt", str(gt_folder), "--pred", str(pred)])
    assert result.exit_code == 2
    assert "000001.txt: line 1: expected 15 fields" in result.stderr
    assert "Traceback" not in result.output


def test_missing_prediction_folder_is_an_error_naming_the_option(gt_folder, tmp_path):
    result = runner.invoke(app, ["eval", "--gt", str(gt_folder), "--pred",
                                 str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "nowhere: no such folder (given as --pred)" in result.stderr


def test_ground_truth_folder_without_label_files_is_an_error(tmp_path):
    empty = write_folder(tmp_path / "empty", {})
    result = runner.invoke(app, ["eval", "--gt", str(empty), "--pred", str(empty)])
    assert result.exit_code == 2
    assert "no label files" in result.stderr


def test_classes_option_takes_a_comma_separated_list(gt_folder):
    result = runner.invoke(app, ["eval", "--gt", str(gt_folder), "--pred", str(gt_folder),
                                 "--classes", "Car, Pedestrian"])
    assert result.exit_code == 0, result.output
    pedestrian_rows = [line for line in result.stdout.splitlines() if "Pedestrian" in line]
    assert len(pedestrian_rows) == 5  # 4 AP rows at IoU 0.5 / 0.25 (all n/a), 1 error row
    assert any("0.25" in row and row.count("n/a") == 3 for row in pedestrian_rows)


def test_empty_classes_option_is_an_error(gt_folder):
    result = runner.invoke(app, ["eval", "--gt", str(gt_folder), "--pred", str(gt_folder),
                                 "--classes", " , "])
    assert result.exit_code == 2
    assert "--classes" in result.stderr
