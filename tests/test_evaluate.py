"""Tests for autolabel.evaluate: oriented-box IoU, the devkit's rules, AP|R40 and AP|R11,
reporting."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from autolabel.evaluate import (
    average_precision,
    bev_corners,
    bev_iou,
    evaluate,
    format_table,
    ignored_detections,
    ignored_ground_truth,
    interpolated_precision,
    iou_3d,
    kitti_difficulty,
    labels_to_boxes,
    match_detections,
    paired_iou,
    sample_thresholds,
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


# ------------------------------------------------------------------------------ devkit rules


def test_kitti_difficulty_uses_the_devkit_limits_with_heights_at_the_limit_excluded():
    height = np.array([40.01, 40.0, 25.01, 25.0, 100, 100, 100, 100, 100, 100, 100])
    occlusion = np.array([0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0])
    truncation = np.array([0, 0, 0, 0, 0, 0, 0, 0.15, 0.3, 0.5, 0.51])
    expected = [0, 1, 1, -1, 1, 2, -1, 0, 1, 2, -1]
    assert kitti_difficulty(height, occlusion, truncation).tolist() == expected


def test_ground_truth_exactly_at_the_minimum_height_is_ignored_and_the_neighbour_class_too():
    gt_class = np.array([1, 1, 1, 0, -1])
    height = np.array([25.0, 25.01, 40.0, 100.0, 100.0])
    ignored = [ignored_ground_truth(gt_class, height, np.zeros(5), np.zeros(5), level).tolist()
               for level in range(3)]
    assert ignored == [[1, 1, 1, 1, -1], [1, 0, 0, 1, -1], [1, 0, 0, 1, -1]]


def test_detection_lower_than_the_minimum_is_ignored_whatever_its_class():
    is_class = np.array([True, False, True, False])
    height = np.array([24.9, 24.9, 25.0, 39.0])
    assert ignored_detections(is_class, height, level=1).tolist() == [1, 1, 0, -1]
    assert ignored_detections(is_class, height, level=0).tolist() == [1, 1, 1, 1]


def test_matching_by_score_gives_the_ground_truth_the_highest_scoring_overlapping_detection():
    overlap_ok = np.array([[[True], [True], [False]]])  # 1 frame, 3 detections, 1 ground truth
    scores = np.array([[0.5, 0.8, 0.9]])
    matched, true_positive = match_detections(overlap_ok, np.ones((1, 1, 3), dtype=bool),
                                              scores[None, :, :, None], np.array([[0]]),
                                              np.zeros((1, 3), dtype=np.int64))
    assert matched.tolist() == [[[-1, 0, -1]]]
    assert true_positive.tolist() == [[[False, True, False]]]


def test_ground_truths_take_detections_in_order_and_an_ignored_one_makes_no_true_positive():
    overlap_ok = np.ones((1, 1, 2), dtype=bool)  # one detection overlapping two ground truths
    ignored_gt = np.array([[1, 0]])  # the first is ignored (e.g. a van), the second valid
    matched, true_positive = match_detections(overlap_ok, np.ones((1, 1, 1), dtype=bool),
                                              np.ones((1, 1, 1, 2)), ignored_gt,
                                              np.zeros((1, 1), dtype=np.int64))
    assert matched.tolist() == [[[0]]]
    assert not true_positive.any()


def test_sample_thresholds_keeps_every_score_when_at_most_40_ground_truths_are_valid():
    scores = np.linspace(0.9, 0.1, 9)
    assert sample_thresholds(scores[::-1], 20).tolist() == scores.tolist()


def test_sample_thresholds_keeps_the_score_nearest_to_each_recall_point():
    # 80 true positives of 80 ground truths: the i-th score (from 0) reaches recall
    # (i + 1) / 80, so recall point k / 40 is reached exactly at i = 2k - 1; the first score
    # stands for point 0. Kept: indices 0, 1, 3, 5, ..., 79, i.e. 41 thresholds.
    scores = np.arange(80, 0, -1) / 80
    assert sample_thresholds(scores[::-1], 80).tolist() == scores[[0, *range(1, 80, 2)]].tolist()


def test_interpolated_precision_is_the_best_later_precision_and_zero_beyond_the_thresholds():
    precision = interpolated_precision(np.array([1, 1, 3, 0]), np.array([0, 3, 1, 0]))
    assert precision.shape == (41,)
    assert precision[:5].tolist() == [1.0, 0.75, 0.75, 0.0, 0.0]
    assert not precision[4:].any()


def test_average_precision_r40_skips_entry_0_and_r11_takes_every_fourth_entry():
    precision = np.zeros(41)
    precision[0] = 1.0
    assert average_precision(precision, 40) == 0.0
    assert average_precision(precision, 11) == pytest.approx(100 / 11)
    with pytest.raises(ValueError, match="recall positions"):
        average_precision(precision, 41)


# ------------------------------------------------------------------------------ evaluate


def fleet(n: int = 45) -> tuple[dict, dict]:
    """Ground truth of n frames with one valid car each, and an exact prediction of each with
    scores 0.99, 0.98, ... More than 40 valid cars let a perfect prediction score 100."""
    gt = {f"{i:06d}": [car()] for i in range(n)}
    pred = {f"{i:06d}": [car(score=1.0 - (i + 1) / 100)] for i in range(n)}
    return gt, pred


def test_perfect_prediction_of_more_than_40_cars_scores_100_at_r40_and_r11():
    gt, pred = fleet()
    result = evaluate(gt, pred).classes["Car"]
    assert result.num_gt == (45, 45, 45)
    for values in result.ap.values():
        assert values == pytest.approx((100.0, 100.0, 100.0))


def test_perfect_prediction_of_at_most_40_cars_is_capped_by_the_threshold_sampling():
    # 10 cars give 10 score thresholds, each of precision 1, and 31 entries of precision 0:
    # R40 = entries 1..9 of 40 = 22.5 %; R11 = entries 0, 4, 8 of 11 = 27.27 %.
    gt, pred = fleet(10)
    result = evaluate(gt, pred).classes["Car"]
    assert result.ap_at("bev", 0.7, "easy") == pytest.approx(22.5)
    assert result.ap_at("3d", 0.5, "hard", recall_positions=11) == pytest.approx(300 / 11)


def test_small_set_matches_hand_computed_devkit_ap():
    # 4 cars 10 m apart; predictions by score: on car 0, a false one, on car 1, on car 2, a
    # false one; car 3 is missed. Thresholds: the 3 true positives' scores 0.9, 0.7, 0.6 with
    # precision 1/1, 2/3, 3/4, interpolated 1, 3/4, 3/4, then 0. R40 = (3/4 + 3/4) / 40 =
    # 3.75 %; R11 = entry 0 of 11 = 9.09 %.
    gt = {"f": [car(x=10.0 * i) for i in range(4)]}
    pred = {"f": [car(x=0.0, score=0.9), car(x=-30.0, score=0.8), car(x=10.0, score=0.7),
                  car(x=20.0, score=0.6), car(x=-50.0, score=0.5)]}
    result = evaluate(gt, pred).classes["Car"]
    assert result.ap_at("bev", 0.7, "easy") == pytest.approx(3.75)
    assert result.ap_at("3d", 0.7, "easy", recall_positions=11) == pytest.approx(100 / 11)


def test_ground_truth_exactly_25_px_tall_is_ignored_but_25_01_px_tall_counts():
    gt, pred = fleet()
    gt["000000"].append(car(x=10.0, box_height=25.0))  # not predicted
    result = evaluate(gt, pred).classes["Car"]
    assert result.num_gt == (45, 45, 45)
    assert result.ap_at("bev", 0.7) == pytest.approx(100.0)
    gt["000000"][-1] = car(x=10.0, box_height=25.01)
    result = evaluate(gt, pred).classes["Car"]
    assert result.num_gt == (45, 46, 46)
    assert result.ap_at("bev", 0.7) == pytest.approx(97.5)  # see the next test


def test_ground_truth_exactly_40_px_tall_is_not_easy():
    gt, pred = fleet()
    gt["000000"].append(car(x=10.0, box_height=40.0))  # not predicted
    result = evaluate(gt, pred).classes["Car"]
    assert result.num_gt == (45, 46, 46)
    assert result.ap_at("bev", 0.7, "easy") == pytest.approx(100.0)


def test_missed_car_lowers_ap_only_through_the_threshold_sampling():
    # 45 true positives of 46 valid cars give 40 thresholds (the last recall point is not
    # reached), all of precision 1: R40 = 39 / 40.
    gt, pred = fleet()
    gt["000000"].append(car(x=10.0))
    assert evaluate(gt, pred).classes["Car"].ap_at("3d", 0.7) == pytest.approx(97.5)


def test_detection_24_9_px_tall_is_ignored_and_not_a_false_positive():
    gt, pred = fleet()
    pred["000000"].append(car(x=-30.0, score=1.0, box_height=24.9))
    result = evaluate(gt, pred).classes["Car"]
    assert result.ap[(40, "bev", 0.7)] == pytest.approx((100.0, 100.0, 100.0))


def test_false_positive_30_px_tall_counts_from_moderate_on():
    # A false positive scoring above every true positive is present at every threshold:
    # precision k / (k + 1) rises to 45 / 46, which every entry takes after interpolation.
    gt, pred = fleet()
    pred["000000"].append(car(x=-30.0, score=1.0, box_height=30.0))
    result = evaluate(gt, pred).classes["Car"]
    assert result.ap[(40, "3d", 0.7)] == pytest.approx((100.0, 100 * 45 / 46, 100 * 45 / 46))


def test_van_is_ignored_so_a_car_prediction_on_it_is_no_false_positive_and_no_miss():
    gt, pred = fleet()
    gt["000000"].append(car(x=10.0, category="Van"))
    gt["000001"].append(car(x=10.0, category="Van"))
    pred["000000"].append(car(x=10.0, score=1.0))
    pred["000001"].append(car(x=20.0, score=1.0, category="Van"))  # other class: left out
    result = evaluate(gt, pred).classes["Car"]
    assert result.num_gt == (45, 45, 45)
    assert result.num_pred == 46
    assert result.ap_at("bev", 0.7) == pytest.approx(100.0)


def test_car_prediction_on_a_pedestrian_is_a_false_positive():
    gt, pred = fleet()
    person = {"category": "Pedestrian", "size": (0.8, 0.6, 1.7)}
    gt["000000"].append(car(x=10.0, **person))
    pred["000000"].append(car(x=10.0, score=1.0, size=(0.8, 0.6, 1.7)))
    assert evaluate(gt, pred).classes["Car"].ap_at("bev", 0.5) == pytest.approx(100 * 45 / 46)


def test_dontcare_region_does_not_absorb_a_false_positive_in_bev_or_3d():
    gt, pred = fleet()
    region = (400.0, 100.0, 700.0, 300.0)
    gt["000000"].append(car(category="DontCare", box2d=region))
    pred["000000"].append(car(x=20.0, score=1.0, box2d=(450.0, 150.0, 550.0, 250.0)))
    assert evaluate(gt, pred).classes["Car"].ap_at("bev", 0.7) == pytest.approx(100 * 45 / 46)


def test_a_too_low_detection_on_a_car_yields_to_a_valid_one_when_matching_by_overlap():
    gt, pred = fleet()
    pred["000000"] = [car(x=0.4, score=0.99), car(x=0.0, score=0.5, box_height=20.0)]
    assert evaluate(gt, pred).classes["Car"].ap_at("3d", 0.7) == pytest.approx(100.0)


def test_a_too_low_detection_scoring_highest_takes_the_car_in_the_matching_by_score():
    # The car's true positive is then missing from the threshold sampling: 44 of 45 cars give
    # 40 thresholds of precision 1 (the small detection is no false positive): R40 = 39 / 40.
    gt, pred = fleet()
    pred["000000"] = [car(x=0.4, score=0.99), car(x=0.0, score=1.0, box_height=20.0)]
    assert evaluate(gt, pred).classes["Car"].ap_at("3d", 0.7) == pytest.approx(97.5)


def test_duplicate_detection_of_higher_score_but_lower_iou_is_the_false_positive():
    # Car 0 has its exact prediction (0.99) and one 0.4 m off (IoU 0.82, score 0.995). At the
    # first threshold (0.995) the off one is the true positive; below it the exact one is, and
    # the off one is a false positive: precision 1, then k / (k + 1) up to 45 / 46.
    gt, pred = fleet()
    pred["000000"].append(car(x=0.4, score=0.995))
    result = evaluate(gt, pred).classes["Car"]
    assert result.ap_at("bev", 0.7) == pytest.approx(100 * 45 / 46)
    expected_r11 = (1 + 10 * 45 / 46) / 11 * 100
    assert result.ap_at("bev", 0.7, recall_positions=11) == pytest.approx(expected_r11)


def test_ground_truth_used_as_prediction_has_score_one_and_ties_score_100():
    gt, _ = fleet()
    assert evaluate(gt, gt).classes["Car"].ap[(40, "3d", 0.7)] == pytest.approx((100.0,) * 3)


def test_frames_without_predictions_count_their_cars_as_missed():
    # 40 true positives of 45 cars give 37 thresholds (recall 40/45 is nearest to point 35/40
    # and the last score is kept too), all of precision 1: R40 = 36 / 40.
    gt, pred = fleet()
    for frame in list(pred)[40:]:
        del pred[frame]
    result = evaluate(gt, pred)
    assert result.num_frames == 45
    assert result.classes["Car"].ap_at("3d", 0.7) == pytest.approx(90.0)


def test_ground_truth_too_hard_for_a_level_is_ignored_there_and_counted_at_harder_levels():
    gt = {"f": [car(x=0.0), car(x=10.0, occlusion=2), car(x=20.0, truncation=0.3)]}
    assert evaluate(gt, gt).classes["Car"].num_gt == (1, 2, 3)


def test_level_without_valid_ground_truth_has_ap_nan():
    gt = {"f": [car(box_height=30.0)]}
    assert math.isnan(evaluate(gt, gt).classes["Car"].ap_at("bev", 0.7, "easy"))


def test_predictions_for_a_frame_without_ground_truth_raise_naming_it():
    with pytest.raises(ValueError, match="000042"):
        evaluate({"000001": [car()]}, {"000042": [car()]})


def test_pedestrians_use_iou_0_5_and_0_25_case_insensitively_with_person_sitting_ignored():
    person = {"size": (0.8, 0.6, 1.7), "category": "Pedestrian"}
    gt = {f"{i}": [car(**person), car(x=5.0, size=(0.8, 0.6, 1.2), category="Person_sitting")]
          for i in range(45)}
    pred = {f"{i}": [car(x=0.1, score=0.9, **person),
                     car(x=5.0, score=0.95, size=(0.8, 0.6, 1.2), category="pedestrian")]
            for i in range(45)}
    entry = evaluate(gt, pred, classes=("pedestrian",)).classes["pedestrian"]
    assert entry.iou_thresholds == (0.5, 0.25)
    assert entry.num_gt == (45, 45, 45)
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


def test_to_json_survives_json_round_trip_with_r40_and_r11_and_null_for_missing_levels():
    gt, pred = fleet()
    gt["000000"].append(car(x=10.0, box_height=30.0))  # moderate: 46 cars, one missed
    data = json.loads(json.dumps(to_json(evaluate(gt, pred))))
    car_result = data["classes"]["Car"]
    assert data["frames"] == 45 and "devkit" in data["protocol"]
    assert car_result["num_gt"] == {"easy": 45, "moderate": 46, "hard": 46}
    assert car_result["ap_r40"]["3d"]["0.7"] == {"easy": 100.0, "moderate": 97.5, "hard": 97.5}
    assert car_result["ap_r11"]["bev"]["0.5"]["moderate"] == pytest.approx(1000 / 11)
    assert car_result["pose_errors"]["pairs"] == 45
    single = to_json(evaluate({"f": [car(box_height=30.0)]}, {"f": []}))["classes"]["Car"]
    assert single["ap_r40"]["bev"]["0.7"]["easy"] is None


def test_format_table_has_a_row_per_metric_and_threshold_with_two_decimals():
    gt, pred = fleet(10)
    for positions, value in ((40, "22.50"), (11, "27.27")):
        lines = format_table(evaluate(gt, pred), recall_positions=positions).splitlines()
        assert any(f"AP|R{positions}" in line for line in lines)
        rows = [line for line in lines if "Car" in line and ("BEV" in line or "3D" in line)]
        assert len(rows) == 4
        assert all(row.count(value) == 3 for row in rows)
