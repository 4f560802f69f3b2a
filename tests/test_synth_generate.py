"""Tests for autolabel.synth.generate: frames reproducible from (seed, index)."""

from __future__ import annotations

import math

import numpy as np

from autolabel.synth.generate import SynthConfig, generate_frame
from autolabel.synth.lidar import LidarConfig
from autolabel.synth.noise import DepthNoise
from autolabel.synth.scene import SceneConfig

LIGHT = SynthConfig(scene=SceneConfig(min_cars=3, max_cars=4),
                    lidar=LidarConfig(azimuth_step=math.radians(0.4)))


def _summary(frame) -> tuple:
    return ([a.label.box2d.tolist() for a in frame.annotations],
            [d.box2d.tolist() for d in frame.detections],
            [c.params.seed for c in frame.scene.cars])


def test_frame_depends_only_on_seed_and_index():
    first, again = generate_frame(5, 2, LIGHT), generate_frame(5, 2, LIGHT)
    np.testing.assert_array_equal(first.render.image, again.render.image)
    np.testing.assert_array_equal(first.scan.points, again.scan.points)
    assert _summary(first) == _summary(again)
    assert first.frame_id == "000002"
    for other in (generate_frame(5, 3, LIGHT), generate_frame(6, 2, LIGHT)):
        assert _summary(other) != _summary(first)


def test_switching_the_depth_map_on_changes_nothing_else():
    plain = generate_frame(1, 0, LIGHT)
    with_depth = generate_frame(1, 0, SynthConfig(scene=LIGHT.scene, lidar=LIGHT.lidar,
                                                  depth=DepthNoise()))
    assert plain.depth is None and with_depth.depth is not None
    np.testing.assert_array_equal(plain.render.image, with_depth.render.image)
    np.testing.assert_array_equal(plain.scan.points, with_depth.scan.points)
    assert _summary(plain) == _summary(with_depth)
    seen = with_depth.render.depth > 0
    # A few percent of scale bias and noise: the map follows the true depth.
    ratio = with_depth.depth[seen & (with_depth.depth > 0)] / with_depth.render.depth[
        seen & (with_depth.depth > 0)]
    assert 0.8 < np.median(ratio) < 1.2
