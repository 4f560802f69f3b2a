"""Checks on real KITTI ground truth (../shared/data/kitti_dev): geometry and `autolabel eval`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from autolabel.geometry import box_corners, projected_box2d
from autolabel.io.kitti import read_calib, read_labels, write_labels
from cli.main import app

KITTI_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_dev"
LABELS = KITTI_DEV / "label_2"

pytestmark = pytest.mark.skipif(
    not LABELS.is_dir(), reason=f"KITTI dev data not found at {KITTI_DEV} (shared data folder)")


def run_eval(pred: Path, out: Path) -> dict:
    result = CliRunner().invoke(app, ["eval", "--gt", str(LABELS), "--pred", str(pred),
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())["classes"]["Car"]


def test_projected_3d_box_of_every_untruncated_car_matches_its_2d_box_within_4_pixels():
    checked = 0
    for path in sorted(LABELS.glob("*.txt")):
        projection = torch.as_tensor(read_calib(KITTI_DEV / "calib" / path.name).P2)
        for label in read_labels(path):
            if label.category != "Car" or label.truncation > 0:
                continue
            corners = box_corners(torch.as_tensor(label.center), torch.as_tensor(label.rotation),
                                  torch.as_tensor(label.size))
            projected = projected_box2d(corners, projection).numpy()
            # Measured on kitti_dev: at most 3.3 px (000008), typically below 1 px.
            assert np.abs(projected - label.box2d).max() < 4.0, (path.name, label.box2d)
            checked += 1
    assert checked == 16


def test_eval_of_ground_truth_against_itself_gives_ap_100_for_car_bev_and_3d(tmp_path):
    car = run_eval(LABELS, tmp_path / "self.json")
    assert car["num_gt"] == {"easy": 5, "moderate": 11, "hard": 11}
    for metric in ("bev", "3d"):
        for iou in ("0.7", "0.5"):
            assert car["ap_r40"][metric][iou] == {"easy": 100.0, "moderate": 100.0,
                                                  "hard": 100.0}
    assert car["pose_errors"]["translation_m"] == 0.0


def test_eval_against_boxes_moved_half_a_metre_in_depth_gives_lower_ap(tmp_path):
    moved = tmp_path / "moved"
    for path in sorted(LABELS.glob("*.txt")):
        labels = [copy.deepcopy(label) for label in read_labels(path)]
        for label in labels:
            if label.category != "DontCare":
                label.center = label.center + np.array([0.0, 0.0, 0.5])
        write_labels(moved / path.name, labels)
    car = run_eval(moved, tmp_path / "moved.json")
    # Measured: at IoU 0.7, 5 of the 11 moderate cars stay above the threshold (IoU 0.72-0.79)
    # among 13 counted predictions: AP = 18/40 * 5/13 = 17.31 % (easy 8.89 %); at IoU 0.5
    # every car is still found and AP stays 100.
    for metric in ("bev", "3d"):
        assert car["ap_r40"][metric]["0.7"]["moderate"] == pytest.approx(17.31, abs=0.01)
        assert car["ap_r40"][metric]["0.7"]["easy"] == pytest.approx(8.89, abs=0.01)
        assert car["ap_r40"][metric]["0.5"]["moderate"] == pytest.approx(100.0)
    assert car["pose_errors"]["translation_m"] == pytest.approx(0.5, abs=0.01)
