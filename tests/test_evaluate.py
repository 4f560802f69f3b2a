"""Tests for autolabel.evaluate: oriented-box IoU, difficulty, matching, AP|R40, reporting."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from autolabel.evaluate import (
    average_precision_r40,
    bev_corners,
    bev_iou,
    evaluate,
    format_table,
    iou_3d,
    kitti_difficulty,
    labels_to_boxes,
    match_greedy,
    paired_iou,
    to_json,
)
from autolabel.label import ObjectLabel


def box(x=0.0, y=1.0, z=10.0, length=4.0, width=1.6, height=1.5, yaw=0.0) -> torch.Tensor:
    return torch.tensor([[x, y, z, length, width, height, yaw]], dtype=torch.float64)


def car(x=0.0, z=10.0, yaw=0.0, score=None, category="Car", box_height=100.0, occlusion=0,
        truncation=0.0, size=(4.0, 1.6, 1.5), box2d=None) -> ObjectLabel:
    """A label at (x, 1, z) whose 2D box is ``box_height`` pixels tall."""
    if box2d is None:
        box2d = (500.0, 150.0, 600.0, 150.0 + box_height)
    return ObjectLabel.upright(category, box2d, [x, 1.0, z], yaw, size, occlusion=occlusion,
                               truncation=truncation, score=score)


def monte_carlo_bev_iou(a: torch.Tensor, b: torch.Tensor, samples: int, seed: int) -> float:
    """IoU of two footprints by sampling points uniformly in a square that holds both."""
    rng = np.random.default_rng(seed)
    centre = (a[0, [0, 2]] + b[0, [0, 2]]).numpy() / 2
    reach = max(float(torch.hypot(boxes[0, 3], boxes[0, 4])) / 2 for boxes in (a, b))
    half = float(torch.linalg.vector_norm(a[0, [0, 2]] - b[0, [0, 2]])) / 2 + reach
    points = centre + rng.uniform(-half, half, size=(samples, 2))

    def inside(boxes):
        x, z, length, width, yaw = (float(boxes[0, i]) for i in (0, 2, 3, 4, 6))
        forward = np.array([math.cos(yaw), -math.sin(yaw)])  # heading in the (x, z) plane
        left = np.array([math.sin(yaw), math.cos(yaw)])
        offset = points - np.array([x, z])
        return (np.abs(offset @ forward) <= length / 2) & (np.abs(offset @ left) <= width / 2)

    in_a, in_b = inside(a), inside(b)
    return float((in_a & in_b).sum() / (in_a | in_b).sum())


# ------------------------------------------------------------------------------ IoU


def test_iou_of_identical_boxes_is_one():
    boxes = torch.cat([box(yaw=0.3), box(x=3, z=20, yaw=-2.0, length=3.2), box(yaw=math.pi)])
    assert torch.allclose(torch.diagonal(bev_iou(boxes, boxes)), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(torch.diagonal(iou_3d(boxes, boxes)), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("yaw", [0.0, 0.4, math.pi / 2, -2.5])
def test_iou_of_box_shifted_by_half_length_is_one_third(yaw):
    heading = torch.tensor([math.cos(yaw), 0.0, -math.sin(yaw)], dtype=torch.float64)
    a = box(yaw=yaw)
    b = a.clone()
    b[0, :3] += heading * 2.0  # half of the 4 m length, along the box's own forward axis
    assert bev_iou(a, b).item() == pytest.approx(1 / 3, abs=1e-9)
    assert iou_3d(a, b).item() == pytest.approx(1 / 3, abs=1e-9)


def test_iou_of_square_box_rotated_by_90_degrees_is_one():
    a = box(length=2.0, width=2.0, yaw=0.2)
    b = box(length=2.0, width=2.0, yaw=0.2 + math.pi / 2)
    assert bev_iou(a, b).item() == pytest.approx(1.0, abs=1e-9)
    assert iou_3d(a, b).item() == pytest.approx(1.0, abs=1e-9)


def test_square_rotated_by_45_degrees_overlaps_in_an_octagon_with_iou_one_over_sqrt2():
    # The intersection is a regular octagon of inradius 1: area 8 tan(pi/8) = 8 (sqrt2 - 1),
    # union 8 - 8 (sqrt2 - 1), so IoU = (sqrt2 - 1) / (2 - sqrt2) = 1 / sqrt2.
    a = box(length=2.0, width=2.0)
    b = box(length=2.0, width=2.0, yaw=math.pi / 4)
    assert bev_iou(a, b).item() == pytest.approx(1 / math.sqrt(2), abs=1e-9)


def test_box_raised_by_half_its_height_keeps_bev_iou_one_and_has_3d_iou_one_third():
    a = box(height=1.5)
    b = box(y=1.0 - 0.75, height=1.5)
    bev, iou3d = paired_iou(a, b)
    assert bev.item() == pytest.approx(1.0)
    assert iou3d.item() == pytest.approx(1 / 3)  # overlap 0.75 of 1.5 m: 0.5 / (2 - 0.5)


def test_boxes_stacked_without_vertical_overlap_have_3d_iou_zero_but_bev_iou_one():
    a, b = box(height=1.5), box(y=1.0 - 1.6, height=1.5)
    assert bev_iou(a, b).item() == pytest.approx(1.0)
    assert iou_3d(a, b).item() == 0.0


def test_distant_boxes_have_iou_zero():
    assert bev_iou(box(), box(x=10.0)).item() == 0.0


def test_bev_iou_matches_monte_carlo_estimate_for_random_pairs():
    rng = np.random.default_rng(3)
    for _ in range(5):
        a = box(x=rng.uniform(-1, 1), z=rng.uniform(9, 11), yaw=rng.uniform(-3, 3),
                length=rng.uniform(3, 5), width=rng.uniform(1.4, 2))
        b = box(x=rng.uniform(-1, 1), z=rng.uniform(9, 11), yaw=rng.uniform(-3, 3),
                length=rng.uniform(3, 5), width=rng.uniform(1.4, 2))
        expected = monte_carlo_bev_iou(a, b, samples=400_000, seed=7)
        assert bev_iou(a, b).item() == pytest.approx(expected, abs=0.005)


def test_pairwise_iou_is_symmetric_and_has_shape_n_by_m():
    a = torch.cat([box(), box(x=1.0, yaw=0.5), box(z=12.0, yaw=1.0)])
    b = torch.cat([box(x=0.5, yaw=-0.3), box(z=11.0, yaw=2.0)])
    assert bev_iou(a, b).shape == (3, 2)
    assert torch.allclose(bev_iou(a, b), bev_iou(b, a).T, atol=1e-12)
    assert torch.allclose(iou_3d(a, b), iou_3d(b, a).T, atol=1e-12)


def test_bev_corners_are_counter_clockwise_in_the_x_z_chart():
    corners = bev_corners(box(yaw=1.1, length=4.0, width=1.6)[0])
    x, z = corners[:, 0], corners[:, 1]
    area = 0.5 * (x * torch.roll(z, -1) - torch.roll(x, -1) * z).sum()
    assert area.item() == pytest.approx(4.0 * 1.6)


def test_labels_to_boxes_keeps_centre_size_and_yaw():
    boxes = labels_to_boxes([car(x=2.0, z=15.0, yaw=-1.2)])
    assert boxes[0].tolist() == pytest.approx([2.0, 1.0, 15.0, 4.0, 1.6, 1.5, -1.2])


# ------------------------------------------------------------------------------ difficulty


def test_kitti_difficulty_uses_official_height_occlusion_and_truncation_limits():
    height = np.array([40.0, 39.9, 25.0, 24.9, 100, 100, 100, 100, 100, 100, 100])
    occlusion = np.array([0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0])
    truncation = np.array([0, 0, 0, 0, 0, 0, 0, 0.15, 0.3, 0.5, 0.51])
    expected = [0, 1, 1, -1, 1, 2, -1, 0, 1, 2, -1]
    assert kitti_difficulty(height, occlusion, truncation).tolist() == expected


# ------------------------------------------------------------------------------ matching, AP


def test_match_greedy_gives_contested_ground_truth_to_higher_score():
    iou = np.array([[0.9], [0.95]])
    matched = match_greedy(iou, np.array([0.8, 0.3]), 0.7, np.array([True]))
    assert matched.tolist() == [0, -1]


def test_match_greedy_prefers_valid_ground_truth_over_ignored_one_of_higher_iou():
    iou = np.array([[0.9, 0.8]])
    assert match_greedy(iou, np.array([1.0]), 0.7, np.array([False, True])).tolist() == [1]


def test_match_greedy_needs_iou_strictly_above_threshold():
    assert match_greedy(np.array([[0.7]]), np.array([1.0]), 0.7, np.array([True])).tolist() == [-1]


def test_average_precision_r40_of_small_set_matches_hand_computation():
    # 4 ground truths; by score: TP, FP, TP, TP, FP. Operating points (recall, precision):
    # (1/4, 1), (1/4, 1/2), (2/4, 2/3), (3/4, 3/4), (3/4, 3/5). Interpolated precision is
    # 1 for r = 1/40 .. 10/40, 3/4 for r = 11/40 .. 30/40 and 0 above 3/4 (never reached):
    # AP = (10 * 1 + 20 * 0.75 + 10 * 0) / 40 = 62.5 %.
    scores = np.array([0.6, 0.9, 0.5, 0.8, 0.7])
    is_tp = np.array([True, True, False, False, True])
    assert average_precision_r40(scores, is_tp, num_gt=4) == pytest.approx(62.5)


def test_average_precision_r40_treats_tied_scores_as_one_operating_point():
    # One ground truth, a TP and an FP with equal score: only precision 1/2 is reachable.
    ap = average_precision_r40(np.array([0.9, 0.9]), np.array([True, False]), num_gt=1)
    assert ap == pytest.approx(50.0)


def test_average_precision_r40_without_ground_truth_is_nan_and_without_predictions_zero():
    assert math.isnan(average_precision_r40(np.zeros(0), np.zeros(0, dtype=bool), num_gt=0))
    assert average_precision_r40(np.zeros(0), np.zeros(0, dtype=bool), num_gt=3) == 0.0


# ------------------------------------------------------------------------------ evaluate


def test_evaluate_ground_truth_against_itself_gives_ap_100_everywhere():
    gt = {"a": [car(), car(x=5.0, z=20.0, yaw=1.0, box_height=30.0)], "b": [car(yaw=-0.5)]}
    result = evaluate(gt, gt).classes["Car"]
    assert result.num_gt == (2, 3, 3)
    for values in result.ap.values():
        assert values == pytest.approx((100.0, 100.0, 100.0))


def test_evaluate_small_set_matches_hand_computed_ap():
    # 4 cars 10 m apart; predictions by score: on car 0, a false one, on car 1, on car 2, a
    # false one; car 3 is missed. Same sequence as the hand computation above: 62.5 %.
    gt = {"f": [car(x=10.0 * i) for i in range(4)]}
    pred = {"f": [car(x=0.0, score=0.9), car(x=-30.0, score=0.8), car(x=10.0, score=0.7),
                  car(x=20.0, score=0.6), car(x=-50.0, score=0.5)]}
    result = evaluate(gt, pred).classes["Car"]
    assert result.ap_at("bev", 0.7, "easy") == pytest.approx(62.5)
    assert result.ap_at("3d", 0.5, "hard") == pytest.approx(62.5)


def test_van_ground_truth_is_ignored_so_a_car_prediction_on_it_is_no_false_positive():
    gt = {"f": [car(x=0.0), car(x=10.0, category="Van")]}
    pred = {"f": [car(x=10.0, score=0.95), car(x=0.0, score=0.9), car(x=0.0, category="Van")]}
    result = evaluate(gt, pred).classes["Car"]
    assert result.num_gt == (1, 1, 1)
    assert result.num_pred == 2
    assert result.ap_at("3d", 0.7, "moderate") == pytest.approx(100.0)


def test_car_prediction_on_a_pedestrian_counts_as_false_positive():
    gt = {"f": [car(x=0.0), car(x=10.0, category="Pedestrian", size=(0.8, 0.6, 1.7))]}
    pred = {"f": [car(x=10.0, score=0.95, size=(0.8, 0.6, 1.7)), car(x=0.0, score=0.9)]}
    assert evaluate(gt, pred).classes["Car"].ap_at("bev", 0.7) == pytest.approx(50.0)


def test_ground_truth_too_hard_for_a_level_is_ignored_there_and_counted_at_harder_levels():
    gt = {"f": [car(x=0.0), car(x=10.0, occlusion=2)]}
    pred = {"f": [car(x=0.0, score=0.9)]}
    result = evaluate(gt, pred).classes["Car"]
    assert result.num_gt == (1, 1, 2)
    assert result.ap["bev", 0.7] == pytest.approx((100.0, 100.0, 50.0))


def test_prediction_lower_than_the_minimum_height_is_dropped_not_a_false_positive():
    gt = {"f": [car(x=0.0)]}
    pred = {"f": [car(x=0.0, score=0.5), car(x=20.0, score=0.9, box_height=30.0),
                  car(x=40.0, score=0.9, box_height=20.0)]}
    result = evaluate(gt, pred).classes["Car"]
    # The 30 px false positive counts at moderate and hard (>= 25 px) but not at easy (40 px).
    assert result.ap["3d", 0.7] == pytest.approx((100.0, 50.0, 50.0))


def test_dontcare_region_absorbs_a_false_positive_only_when_asked():
    region = (400.0, 100.0, 700.0, 300.0)
    gt = {"f": [car(x=0.0), car(category="DontCare", box2d=region)]}
    pred = {"f": [car(x=0.0, score=0.5), car(x=20.0, score=0.9, box2d=(450, 150, 550, 250))]}
    assert evaluate(gt, pred).classes["Car"].ap_at("bev", 0.7) == pytest.approx(50.0)
    result = evaluate(gt, pred, dontcare_in_image=True)
    assert result.classes["Car"].ap_at("bev", 0.7) == pytest.approx(100.0)


def test_prediction_without_score_counts_as_score_one():
    gt = {"f": [car(x=0.0), car(x=10.0)]}
    pred = {"f": [car(x=0.0, score=None), car(x=-20.0, score=0.9), car(x=10.0, score=0.5)]}
    # By score: TP (1.0), FP (0.9), TP (0.5): precision 1 up to recall 1/2, then 2/3.
    expected = (20 * 1.0 + 20 * 2 / 3) / 40 * 100
    assert evaluate(gt, pred).classes["Car"].ap_at("bev", 0.7) == pytest.approx(expected)


def test_frame_without_predictions_counts_its_ground_truths_as_missed():
    gt = {"a": [car()], "b": [car()]}
    result = evaluate(gt, {"a": [car(score=0.9)]})
    assert result.num_frames == 2
    assert result.classes["Car"].ap_at("3d", 0.7) == pytest.approx(50.0)


def test_predictions_for_a_frame_without_ground_truth_raise_naming_it():
    with pytest.raises(ValueError, match="000042"):
        evaluate({"000001": [car()]}, {"000042": [car()]})


def test_pedestrians_are_evaluated_at_iou_0_5_and_0_25_case_insensitively():
    person = {"size": (0.8, 0.6, 1.7), "category": "Pedestrian"}
    gt = {"f": [car(**person)]}
    result = evaluate(gt, {"f": [car(x=0.1, score=0.9, **person)]}, classes=("pedestrian",))
    entry = result.classes["pedestrian"]
    assert entry.iou_thresholds == (0.5, 0.25)
    assert entry.ap_at("bev", 0.5) == pytest.approx(100.0)


def test_pose_errors_are_medians_over_pairs_matched_at_bev_iou_half():
    gt = {"f": [car(x=0.0, yaw=0.1), car(x=10.0, yaw=0.1), car(x=20.0, yaw=0.1)]}
    offsets = [0.2, 0.3, 0.5]
    pred = {"f": [car(x=10.0 * i, z=10.0 + dz, yaw=0.1 + math.radians(5.0 * (i + 1)),
                      size=(4.2, 1.6, 1.4), score=0.9) for i, dz in enumerate(offsets)]}
    errors = evaluate(gt, pred).classes["Car"].errors
    assert errors.pairs == 3
    assert errors.translation_m == pytest.approx(0.3)
    assert errors.yaw_deg == pytest.approx(10.0)
    assert errors.size_m == pytest.approx((0.2, 0.0, 0.1))


def test_yaw_error_is_wrapped_across_plus_minus_pi():
    gt = {"f": [car(yaw=math.radians(179.0))]}
    pred = {"f": [car(yaw=math.radians(-179.0), score=0.9)]}
    assert evaluate(gt, pred).classes["Car"].errors.yaw_deg == pytest.approx(2.0)


def test_pose_errors_are_nan_without_matches():
    errors = evaluate({"f": [car()]}, {"f": []}).classes["Car"].errors
    assert errors.pairs == 0 and math.isnan(errors.translation_m)


# ------------------------------------------------------------------------------ reporting


def test_to_json_survives_json_round_trip_and_writes_null_for_missing_levels():
    gt = {"f": [car(box_height=30.0)]}  # moderate only: no easy ground truth
    data = json.loads(json.dumps(to_json(evaluate(gt, gt))))
    car_result = data["classes"]["Car"]
    assert data["frames"] == 1
    assert car_result["num_gt"] == {"easy": 0, "moderate": 1, "hard": 1}
    assert car_result["ap_r40"]["3d"]["0.7"] == {"easy": None, "moderate": 100.0, "hard": 100.0}
    assert car_result["pose_errors"]["pairs"] == 1


def test_format_table_has_a_row_per_metric_and_threshold_with_two_decimals():
    gt = {"f": [car(box_height=30.0)]}
    lines = format_table(evaluate(gt, gt)).splitlines()
    rows = [line for line in lines if "Car" in line and ("BEV" in line or "3D" in line)]
    assert len(rows) == 4
    assert all("n/a" in row and row.count("100.00") == 2 for row in rows)
