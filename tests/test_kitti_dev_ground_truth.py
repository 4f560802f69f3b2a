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
            # Measured on kitti_dev: at most 3.3 px (000008, car 1; 2.5 px for 000142, car 3),
            # typically below 1 px.
            assert np.abs(projected - label.box2d).max() < 4.0, (path.name, label.box2d)
            checked += 1
    assert checked == 72  # the Car lines with truncation 0 among kitti_dev's 84 cars


def car_columns() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Cars of kitti_dev, read from the label files' columns without autolabel's code.

    Returns:
        valid: (N, 3) bool, valid at easy/moderate/hard by the devkit's limits (2D box
            strictly taller than 40/25/25 px, occlusion at most 0/1/2, truncation at most
            0.15/0.3/0.5).
        iou: (N,) BEV IoU of the box with itself moved 0.5 m along the camera's z axis, in
            closed form: in the box's own frame the shift is 0.5 m * (|sin ry|, |cos ry|)
            along (length, width), so the footprints overlap in (l - a)(w - b) and
            IoU = overlap / (2 l w - overlap).
        height: (N,) 2D box height in pixels.
    """
    rows = [line.split() for path in sorted(LABELS.glob("*.txt"))
            for line in path.read_text().splitlines() if line.startswith("Car ")]
    truncation, occlusion, top, bottom, width, length, yaw = (
        np.array([float(row[i]) for row in rows]) for i in (1, 2, 5, 7, 9, 10, 14))
    height = bottom - top
    valid = np.stack([(height > min_height) & (occlusion <= max_occlusion)
                      & (truncation <= max_truncation) for min_height, max_occlusion,
                      max_truncation in ((40, 0, 0.15), (25, 1, 0.3), (25, 2, 0.5))], axis=1)
    overlap = (length - 0.5 * np.abs(np.sin(yaw))) * (width - 0.5 * np.abs(np.cos(yaw)))
    return valid, overlap / (2 * length * width - overlap), height


def test_eval_of_ground_truth_against_itself_gives_ap_100_above_40_cars(tmp_path):
    car = run_eval(LABELS, tmp_path / "self.json")
    valid, _, _ = car_columns()
    assert car["num_gt"] == {"easy": 19, "moderate": 47, "hard": 51}
    assert valid.sum(axis=0).tolist() == [19, 47, 51]
    # Every prediction scores 1.0 (no score column). With n valid cars the devkit keeps
    # min(n, 41) score thresholds, all of precision 1: AP|R40 = 100 for n > 40 and (n - 1) / 40
    # otherwise, so the 19 easy cars score 18 / 40 = 45 %.
    for metric in ("bev", "3d"):
        for iou in ("0.7", "0.5"):
            assert car["ap_r40"][metric][iou] == {"easy": 45.0, "moderate": 100.0,
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
    valid, iou, height = car_columns()
    assert np.abs(iou - 0.7).min() > 1e-3  # no car sits on the threshold
    # Same heights in 3D, so 3D IoU = BEV IoU; cars are apart, so each moved box can only
    # match its own car, and every score is 1.0: at each level the same matching holds at
    # every threshold, TP = valid cars with IoU > t and FP = moved cars (valid, ignored or
    # not) with IoU <= t whose 2D box is not lower than the level's minimum. The devkit keeps
    # T = min(TP, floor(40 (2 TP - 1) / (2 n)) + 2) thresholds (recall (i + 1) / n of the i-th
    # true positive nearest to k / 40 for k = 0, 1, ..., plus the last), all of precision
    # TP / (TP + FP): AP|R40 = (T - 1) / 40 * precision. At IoU 0.7 this is 14.22 / 36.11 /
    # 35.71 % (TP 14/30/32 of 19/47/51, FP 18/24/24); at 0.5 every car is found.
    expected = {}
    for index, level in enumerate(("easy", "moderate", "hard")):
        n = int(valid[:, index].sum())
        min_height = 40.0 if level == "easy" else 25.0
        true_positives = int((valid[:, index] & (iou > 0.7)).sum())
        false_positives = int(((height >= min_height) & (iou <= 0.7)).sum())
        thresholds = min(true_positives, (40 * (2 * true_positives - 1)) // (2 * n) + 2)
        expected[level] = (100 * (thresholds - 1) / 40
                           * true_positives / (true_positives + false_positives))
    assert expected == pytest.approx({"easy": 14.22, "moderate": 36.11, "hard": 35.71},
                                     abs=0.01)
    for metric in ("bev", "3d"):
        assert car["ap_r40"][metric]["0.7"] == pytest.approx(expected, abs=1e-6)
        assert car["ap_r40"][metric]["0.5"] == pytest.approx({"easy": 45.0, "moderate": 100.0,
                                                              "hard": 100.0})
    assert car["pose_errors"]["translation_m"] == pytest.approx(0.5, abs=0.01)
