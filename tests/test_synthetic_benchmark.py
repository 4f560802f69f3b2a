"""Tests for benchmarks/synthetic.py: the crowded data set, its cache folder and results file,
and the crowding statistics (no fitting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autolabel.label import ObjectLabel
from autolabel.synth import generate_frame
from benchmarks.synthetic import (
    CROWDED,
    SCENES,
    cache_folder,
    crowding,
    overlapping,
    results_file,
)


def _label(box: list[float], category: str = "Car", occlusion: int = 0) -> ObjectLabel:
    return ObjectLabel.upright(category, box, [0.0, 1.0, 10.0], 0.0, [4.0, 1.8, 1.5],
                               occlusion=occlusion)


def test_overlapping_marks_boxes_that_share_area_with_another():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [10, 20, 20, 30], [20, 20, 30, 30]])
    # The last two only touch along an edge.
    assert overlapping(boxes).tolist() == [True, True, False, False]
    assert overlapping(np.zeros((0, 4))).tolist() == []


def test_crowding_counts_cars_overlaps_and_occlusion_levels():
    frames = [[_label([0, 0, 10, 10]), _label([5, 0, 15, 10], occlusion=2),
               _label([100, 0, 110, 10], occlusion=1)],
              [_label([0, 0, 10, 10]), _label([8, 0, 9, 1], category="DontCare")],
              []]
    stats = crowding(frames)
    assert stats["cars_per_frame"] == {"mean": 1.33, "min": 0, "max": 3}
    assert stats["overlapping_share"] == 0.75  # 3 of the 4 cars, one of them by a DontCare
    assert stats["occlusion"] == {"fully_visible": 2, "partly_occluded": 1,
                                  "largely_occluded": 1, "unknown": 0}


def test_crowded_scenes_have_their_own_cache_folder_and_results_file(tmp_path: Path):
    assert cache_folder(0, CROWDED, tmp_path) != cache_folder(0, SCENES, tmp_path)
    assert results_file("default").name == "synthetic.json"
    assert results_file("crowded").name == "synthetic_crowded.json"


def test_crowded_frames_are_crowded():
    frames = [[annotation.label for annotation in generate_frame(0, index, CROWDED).annotations]
              for index in range(2)]
    stats = crowding(frames)
    assert stats["cars_per_frame"]["min"] >= 7
    assert stats["overlapping_share"] >= 0.75
    occluded = stats["occlusion"]["partly_occluded"] + stats["occlusion"]["largely_occluded"]
    assert occluded >= stats["occlusion"]["fully_visible"]


def test_a_label_far_away_or_off_its_detection_fails_the_sanity_gates():
    from autolabel.io.detections import Detection
    from benchmarks.common import insane

    detection = Detection(np.array([100.0, 100.0, 200.0, 160.0]), "Car", 0.9)
    near = ObjectLabel.upright("Car", [100.0, 100.0, 200.0, 160.0], [0.0, 1.0, 20.0], 0.0,
                               [4.0, 1.8, 1.5])
    far = ObjectLabel.upright("Car", [100.0, 100.0, 200.0, 160.0], [0.0, 1.0, 394.0], 0.0,
                              [4.0, 1.8, 1.5])
    shifted = ObjectLabel.upright("Car", [180.0, 100.0, 280.0, 160.0], [0.0, 1.0, 20.0], 0.0,
                                  [4.0, 1.8, 1.5])
    assert [insane(label, detection) for label in (near, far, shifted)] == [False, True, True]
