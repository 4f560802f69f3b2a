"""Tests for benchmarks/kitti.py's jitter seeds: the detections each seed makes and the
spread of AP over seeds (no fitting)."""

from __future__ import annotations

import dataclasses

import numpy as np

from autolabel.evaluate import evaluate
from autolabel.label import ObjectLabel
from benchmarks.kitti import jittered_detections, seed_spread, seed_table


@dataclasses.dataclass
class _Frame:
    """The fields of benchmarks.common.Frame that the detections are made from."""

    image_name: str
    image_size: tuple[int, int]
    labels: list[ObjectLabel]


def _car(x: float, box: list[float]) -> ObjectLabel:
    return ObjectLabel.upright("Car", box, [x, 0.9, 15.0], 0.0, [4.0, 1.7, 1.5])


def _frames() -> list[_Frame]:
    return [_Frame("000001.png", (375, 1242), [_car(-3.0, [300, 150, 420, 230]),
                                              _car(3.0, [700, 150, 820, 230])])]


def test_each_seed_jitters_the_same_boxes_its_own_way():
    frames = _frames()
    first = jittered_detections(frames, 3.0, 1)["000001.png"]
    again = jittered_detections(frames, 3.0, 1)["000001.png"]
    other = jittered_detections(frames, 3.0, 2)["000001.png"]
    exact = jittered_detections(frames, 0.0, 1)["000001.png"]
    assert [d.box2d.tolist() for d in first] == [d.box2d.tolist() for d in again]
    assert not np.allclose([d.box2d for d in first], [d.box2d for d in other])
    assert np.allclose([d.box2d for d in exact], [[300, 150, 420, 230], [700, 150, 820, 230]])
    assert np.abs(np.array([d.box2d for d in first]) - [d.box2d for d in exact]).max() < 15


def test_seed_spread_reports_each_seeds_ap_and_their_range():
    truth = {"000001": [_car(x, [100 + 100 * i, 150, 220 + 100 * i, 230])
                        for i, x in enumerate(range(-25, 25, 5))]}
    perfect = {"000001": [dataclasses.replace(label, score=1 - 0.01 * i)
                          for i, label in enumerate(truth["000001"])]}
    # The first label 1 m off along its length: BEV IoU 0.6, a miss at 0.7, a hit at 0.5.
    first = perfect["000001"][0]
    shifted = {"000001": [dataclasses.replace(first, center=first.center + [1.0, 0.0, 0.0])]
               + perfect["000001"][1:]}
    per_seed = [{"render": evaluate(truth, perfect)}, {"render": evaluate(truth, shifted)}]
    spread = seed_spread([0, 7], per_seed)
    table = spread["ap_r40_moderate"]["render"]
    assert spread["seeds"] == [0, 7]
    bev = table["bev@0.7"]
    assert bev["per_seed"][1] < bev["per_seed"][0]
    assert (bev["min"], bev["max"]) == (bev["per_seed"][1], bev["per_seed"][0])
    assert bev["mean"] == round((bev["per_seed"][0] + bev["per_seed"][1]) / 2, 2)
    assert table["bev@0.5"]["per_seed"][0] == table["bev@0.5"]["per_seed"][1]
    assert table["3d@0.7"]["per_seed"][1] < table["3d@0.7"]["per_seed"][0]
    assert "render" in seed_table(spread) and "bev@0.7" in seed_table(spread)
