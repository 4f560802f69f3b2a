"""Tests for benchmarks/diagnose.py and benchmarks/gallery.py on constructed rows and frames:
the ray decomposition, a fit that slid onto a nearer car, the score's precision-recall curve,
one picture per failing car, and which cars fail over several draws (no fitting)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autolabel.io.detections import Detection
from autolabel.io.kitti import Calib
from autolabel.label import ObjectLabel
from autolabel.pipeline import LabelResult
from benchmarks import diagnose
from benchmarks.common import Frame, load_kitti, write_json
from benchmarks.diagnose import (
    PERSISTENT_ERRORS,
    _cached_rows,
    code_fingerprint,
    format_persistence,
    frame_rows,
    main_cause,
    persistence,
    ray_components,
    score_curve,
    success_rates,
)
from benchmarks.gallery import write_gallery

KITTI_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_dev"
# The camera centre is at x = -0.5 m: P2 = K [I | t] with t = (0.5, 0, 0).
P2 = np.array([[700.0, 0, 600, 350], [0, 700, 180, 0], [0, 0, 1, 0]])
IMAGE_SIZE = (375, 1242)


def _car(x: float, z: float, yaw: float = 0.0) -> ObjectLabel:
    """A 4 x 1.8 x 1.5 m car on the ground 1.65 m below the camera, at camera (x, z)."""
    label = ObjectLabel.upright("Car", [0, 0, 1, 1], [x, 0.9, z], yaw, [4.0, 1.8, 1.5])
    return label.with_image_box(P2, IMAGE_SIZE)


def _result(label: ObjectLabel, score: float = 0.9) -> LabelResult:
    """A pipeline result carrying ``label`` as its fit."""
    return LabelResult(dataclasses.replace(label, score=score), True, (), "lidar",
                       np.zeros(1), {}, {}, 1.0, 0, 0, 0.0)


def _frame(cars: list[ObjectLabel], points: np.ndarray | None = None) -> Frame:
    return Frame("000000", "000000.png", IMAGE_SIZE, Calib(P2=P2), points, cars)


def _rows(cars: list[ObjectLabel], predicted: list[ObjectLabel], points=None) -> list[dict]:
    detections = [Detection(car.box2d, "Car", 1.0) for car in cars]
    return frame_rows(_frame(cars, points), detections, [_result(p) for p in predicted])


def test_ray_components_of_a_hand_computed_offset():
    # Ray (0.6, 0.8); 2 m along it plus 1 m to its right (0.8, -0.6) is (2.0, 1.0).
    along, across = ray_components(np.array([2.0, 1.0]), np.array([0.6, 0.8]))
    assert along == pytest.approx(2.0)
    assert across == pytest.approx(1.0)


def test_row_errors_follow_the_ray_from_the_camera_centre():
    # Camera at x = -0.5; car at (3.5, 3.0): the ray is (4, 3) / 5 = (0.8, 0.6). The
    # prediction moves 1.5 m away along it and 0.5 m to its right (0.6, -0.8).
    car = _car(3.5, 3.0)
    moved = dataclasses.replace(car, center=car.center + [0.8 * 1.5 + 0.6 * 0.5, 0.0,
                                                          0.6 * 1.5 - 0.8 * 0.5])
    (row,) = _rows([car], [moved])
    assert row["ray_xz"] == pytest.approx([0.8, 0.6])
    assert row["along_ray_m"] == pytest.approx(1.5, abs=1e-4)
    assert row["across_ray_m"] == pytest.approx(0.5, abs=1e-4)
    assert row["slid_onto"] is None


def test_fit_that_slid_onto_the_nearer_car_in_front_is_named():
    near, far = _car(0.0, 10.0), _car(0.0, 20.0)
    cloud = np.array([[0.0, 0.9, 20.0]]) + np.linspace(-0.5, 0.5, 30)[:, None]
    rows = _rows([near, far], [near, near], points=cloud)
    assert [row["index"] for row in rows] == [0, 1]
    assert rows[0]["bev_iou"] == pytest.approx(1.0) and rows[0]["slid_onto"] is None
    assert rows[1]["bev_iou"] == 0.0
    assert rows[1]["slid_onto"] == 0
    # The ray from the camera centre (-0.5, 0) to (0, 20): along it, -10 * 20 / |(0.5, 20)|.
    assert rows[1]["along_ray_m"] == pytest.approx(-10.0 * 20.0 / math.hypot(0.5, 20.0),
                                                   abs=1e-4)
    assert rows[1]["points"] == 30
    assert 0.85 < rows[1]["box_overlap"] < 1.0  # the near car hides all but its roof
    assert main_cause(rows[1]) == "slid onto occluder"


def test_short_fit_without_a_car_in_front_is_a_ray_slip():
    far = _car(0.0, 20.0)
    short = dataclasses.replace(far, center=far.center - [0.0, 0.0, 1.0])
    (row,) = _rows([far], [short])
    assert row["bev_iou"] < 0.5 and row["slid_onto"] is None
    assert main_cause(row) == "ray slip"


def test_turned_fit_is_a_yaw_error():
    car = _car(2.0, 15.0)
    turned = dataclasses.replace(car, rotation=_car(2.0, 15.0, yaw=math.pi / 2).rotation)
    (row,) = _rows([car], [turned])
    assert row["yaw_deg"] == pytest.approx(90.0)
    assert main_cause(row) == "yaw"


def test_score_curve_of_a_hand_made_list():
    rows = [{"score": s, "bev_iou": iou}
            for s, iou in ((0.3, 0.1), (0.8, 0.2), (0.9, 0.8), (0.8, 0.6))]
    assert score_curve(rows) == [
        {"threshold": 0.9, "precision": 1.0, "recall": 0.5},
        {"threshold": 0.8, "precision": 0.6667, "recall": 1.0},
        {"threshold": 0.3, "precision": 0.5, "recall": 1.0}]


def test_success_rates_put_an_edge_value_in_the_upper_bucket():
    rows = [{"distance_m": d, "bev_iou": iou} for d, iou in ((10.0, 0.9), (30.0, 0.8),
                                                             (45.0, 0.2), (29.9, 0.7))]
    rates = success_rates(rows, "distance_m", (30.0,), ("near", "far"))
    assert rates == {"near": {"cars": 2, "successes": 1, "rate": 0.5},
                     "far": {"cars": 2, "successes": 1, "rate": 0.5}}


@pytest.mark.skipif(not (KITTI_DEV / "label_2" / "000008.txt").is_file(),
                    reason="needs shared/data/kitti_dev")
def test_gallery_draws_one_picture_per_failing_car(tmp_path):
    (frame,) = load_kitti(KITTI_DEV, ["000008"])
    cars = [label for label in frame.labels if label.category == "Car"]
    predicted = list(cars)
    predicted[3] = dataclasses.replace(cars[3], center=cars[3].center + [0.0, 0.0, 3.0])
    predicted[5] = ObjectLabel.upright("Car", cars[5].box2d, cars[5].center,
                                       cars[5].yaw + math.pi / 2, cars[5].size)
    detections = [Detection(car.box2d, "Car", 1.0) for car in cars]
    rows = frame_rows(frame, detections, [_result(p) for p in predicted])
    failing = {f"000008_{row['index']:02d}.png" for row in rows if row["bev_iou"] < 0.7}
    assert failing == {"000008_03.png", "000008_05.png"}

    paths = write_gallery(rows, KITTI_DEV, tmp_path, main_cause, 0.7)
    assert {path.name for path in paths} == failing
    assert {path.name for path in tmp_path.glob("*.png")} == failing
    width, height = Image.open(paths[0]).size
    assert width > 800 and height > 400
    index = (tmp_path / "index.md").read_text()
    assert index.index(paths[0].name) < index.index(paths[1].name)  # worst first


def test_cached_rows_are_reused_only_for_the_same_data_and_code(tmp_path):
    path = tmp_path / "rows.json"
    code = code_fingerprint()
    write_json(path, {"source": "kitti x jitter 3 seed 0", "code": code, "rows": [{"a": 1}]})
    assert _cached_rows(path, "kitti x jitter 3 seed 0", code) == [{"a": 1}]
    assert _cached_rows(path, "kitti x jitter 2 seed 0", code) is None
    assert _cached_rows(path, "kitti x jitter 3 seed 0", "another version") is None
    assert _cached_rows(tmp_path / "none.json", "kitti x jitter 3 seed 0", code) is None
    assert len(code) == 40 and code == code_fingerprint()


def _draw_row(frame: str, index: int, bev: float, iou3d: float, yaw: float = 0.0,
              length: float = 0.0, level: int = 1) -> dict:
    """A hand-made row of one car in one draw."""
    errors = dict.fromkeys(PERSISTENT_ERRORS, 0.0) | {"length_m": length}
    return {"frame": frame, "index": index, "level": level, "points": 30, "distance_m": 20.0,
            "bev_iou": bev, "iou_3d": iou3d, "yaw_deg": yaw, "predicted": [0.0] * 7,
            **errors}


def test_persistence_counts_each_cars_failures_over_the_draws():
    first = [_draw_row("a", 0, 0.60, 0.55, length=1.4), _draw_row("a", 1, 0.90, 0.80),
             _draw_row("b", 0, 0.80, 0.65, yaw=179.0), _draw_row("b", 1, 0.2, 0.1, level=2)]
    second = [_draw_row("a", 0, 0.62, 0.50, length=1.2), _draw_row("a", 1, 0.90, 0.85),
              _draw_row("b", 0, 0.85, 0.75, yaw=-2.0), _draw_row("b", 1, 0.2, 0.1, level=2)]
    summary = persistence([first, second])
    assert summary["draws"] == 2 and summary["moderate_cars"] == 3
    assert summary["mean_over_0.7"] == {"bev": 2.0, "3d": 1.5}
    assert [(car["frame"], car["index"], car["under_bev_0.7"], car["under_3d_0.7"],
             car["flipped"]) for car in summary["cars"]] == [("a", 0, 2, 2, 0),
                                                             ("b", 0, 0, 1, 1)]
    assert summary["cars"][0]["mean_errors"]["length_m"] == pytest.approx(1.3)
    assert "a/0" in format_persistence(summary)


def test_hidden_points_are_not_fitted_but_still_counted(monkeypatch):
    car = _car(0.0, 15.0)
    inside = np.array([[0.0, 0.5, 15.0], [0.5, 0.3, 14.5], [-0.4, 0.6, 15.5]])
    frame = _frame([car], inside)
    seen = []

    def fake_fit(frame, detections, config):
        seen.append(frame.points)
        return [_result(car)]

    monkeypatch.setattr(diagnose, "fit_frame", fake_fit)
    detections = {frame.image_name: [Detection(car.box2d, "Car", 1.0)]}
    (shown,) = diagnose.fit_rows([frame], detections)
    (hidden,) = diagnose.fit_rows([frame], detections, sensors="none")
    assert seen[0] is frame.points and seen[1] is None
    assert shown["points"] == hidden["points"] == 3
