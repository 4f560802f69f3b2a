"""Tests for autolabel.synth.noise: noisy detections and the depth error model."""

from __future__ import annotations

import numpy as np
import pytest

from autolabel.io.kitti import DONT_CARE
from autolabel.label import ObjectLabel
from autolabel.synth.annotate import Annotation
from autolabel.synth.noise import DepthNoise, DetectionNoise, noisy_depth, noisy_detections

EXACT = DetectionNoise(box_jitter=0.0, mask_noise=0, miss_rate=0.0, false_positives=0.0)


def _frame() -> tuple[list[Annotation], np.ndarray]:
    """Two cars (rectangles 0 and 1) and a DontCare speck (2) in a 60 x 100 instance map."""
    instance = np.full((60, 100), -1)
    instance[20:40, 10:50] = 0
    instance[25:45, 60:90] = 1
    instance[5:7, 5:7] = 2
    boxes = ([10, 20, 49, 39], [60, 25, 89, 44], [5, 5, 6, 6])
    annotations = [Annotation(index, ObjectLabel.upright(
        DONT_CARE if index == 2 else "Car", box, [0, 1, 10], 0.0, [4, 2, 1.5]), 1.0)
        for index, box in enumerate(boxes)]
    return annotations, instance


def test_exact_detections_reproduce_the_ground_truth_boxes_and_masks():
    annotations, instance = _frame()
    detections = noisy_detections(annotations, instance, np.random.default_rng(0), EXACT)
    assert len(detections) == 2  # the DontCare region is never detected
    by_box = {tuple(d.box2d): d for d in detections}
    for annotation in annotations[:2]:
        detection = by_box[tuple(annotation.label.box2d)]
        np.testing.assert_array_equal(detection.mask, instance == annotation.car)
        assert detection.category == "Car" and 0.05 <= detection.score <= 0.99
    assert detections[0].score >= detections[1].score


def test_box_edges_move_by_about_the_configured_jitter():
    annotations, instance = _frame()
    noise = DetectionNoise(box_jitter=1.5, mask_noise=0, miss_rate=0.0, false_positives=0.0)
    rng = np.random.default_rng(1)
    errors = [detection.box2d - annotations[0].label.box2d
              for _ in range(200)
              for detection in noisy_detections(annotations[:1], instance, rng, noise)]
    assert np.std(errors) == pytest.approx(1.5, rel=0.15)
    assert abs(np.mean(errors)) < 0.2


def test_mask_noise_erodes_and_dilates_by_at_most_the_configured_pixels():
    annotations, instance = _frame()
    noise = DetectionNoise(box_jitter=0.0, mask_noise=2, miss_rate=0.0, false_positives=0.0)
    rng = np.random.default_rng(2)
    areas = {int(d.mask.sum()) for _ in range(40)
             for d in noisy_detections(annotations[:1], instance, rng, noise)}
    # A 20 x 40 rectangle grown or shrunk by k pixels (4-connected dilation rounds corners).
    assert min(areas) == 16 * 36 and max(areas) > 20 * 40 and len(areas) == 5
    assert max(areas) <= 24 * 44


def test_miss_rate_one_leaves_only_false_positives():
    annotations, instance = _frame()
    noise = DetectionNoise(miss_rate=1.0, false_positives=3.0)
    rng = np.random.default_rng(3)
    counts = [len(noisy_detections(annotations, instance, rng, noise)) for _ in range(100)]
    assert np.mean(counts) == pytest.approx(3.0, abs=0.5)
    detection = next(d for _ in range(20)
                     for d in noisy_detections(annotations, instance, rng, noise))
    x1, y1, x2, y2 = detection.box2d
    assert 0 <= x1 < x2 <= 100 and 0 <= y1 < y2 <= 60 and detection.mask.any()


def test_depth_without_error_is_the_true_depth_cut_at_the_maximum():
    depth = np.tile(np.linspace(0.0, 100.0, 50), (10, 1))
    exact = noisy_depth(depth, np.random.default_rng(0),
                        DepthNoise(scale_bias=0.0, relative_noise=0.0, max_depth=80.0))
    np.testing.assert_array_equal(exact, np.where(depth <= 80.0, depth, 0.0))


def test_depth_error_in_metres_grows_with_distance():
    depth = np.tile(np.linspace(1.0, 60.0, 200), (40, 1))
    near, far = depth < 10.0, depth > 50.0
    ratios = []
    for seed in range(20):
        noisy = noisy_depth(depth, np.random.default_rng(seed), DepthNoise())
        error = np.abs(noisy - depth)
        ratios.append(error[far].mean() / error[near].mean())
    assert np.median(ratios) > 4.0
