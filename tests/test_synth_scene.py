"""Tests for autolabel.synth.scene and autolabel.synth.rig: placing cars and ray casting."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from autolabel.evaluate import bev_intersection
from autolabel.io.kitti import read_calib
from autolabel.synth.rig import LIDAR_HEIGHT, ground_y, kitti_calib
from autolabel.synth.scene import (
    Scene,
    SceneConfig,
    build_raycaster,
    place_car,
    sample_scene,
)
from shape_priors.meshes import HELDOUT_SEEDS, sample_car_params

KITTI_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_dev"
CROWDED = SceneConfig(min_cars=9, max_cars=9)


def _boxes(scene: Scene) -> torch.Tensor:
    return torch.tensor([[*car.center, *car.size, car.yaw] for car in scene.cars],
                        dtype=torch.float64)


def test_rig_calibration_equals_kitti_published_numbers():
    if not (KITTI_DEV / "calib" / "000008.txt").is_file():
        pytest.skip(f"KITTI dev data not found at {KITTI_DEV}")
    real, ours = read_calib(KITTI_DEV / "calib" / "000008.txt"), kitti_calib()
    for name in ("P2", "R0_rect", "Tr_velo_to_cam"):
        np.testing.assert_allclose(getattr(ours, name), getattr(real, name), atol=1e-9)


def test_lidar_sits_lidar_height_above_the_ground():
    calib = kitti_calib()
    assert ground_y(calib) - calib.lidar_origin()[1] == pytest.approx(LIDAR_HEIGHT)


def test_placed_cars_rest_on_the_ground_with_heldout_shapes():
    for seed in range(3):
        scene = sample_scene(np.random.default_rng(seed), CROWDED)
        for car in scene.cars:
            assert car.params.seed in HELDOUT_SEEDS
            assert car.vertices_camera()[:, 1].max() == pytest.approx(scene.ground_y, abs=1e-9)
            assert car.center[1] + car.size[2] / 2 == pytest.approx(scene.ground_y)


def test_footprints_of_placed_cars_keep_the_gap():
    config = SceneConfig(min_cars=9, max_cars=9, gap=0.4)
    for seed in range(4):
        scene = sample_scene(np.random.default_rng(seed), config)
        boxes = _boxes(scene)
        boxes[:, 3:5] += config.gap - 1e-6
        pairs = [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))]
        first, second = zip(*pairs, strict=True)
        assert float(bev_intersection(boxes[list(first)], boxes[list(second)]).max()) == 0.0


def test_cars_stay_in_the_configured_depth_range_in_front_of_the_camera():
    config = SceneConfig(min_cars=9, max_cars=9, min_distance=8.0, max_distance=30.0)
    for seed in range(3):
        scene = sample_scene(np.random.default_rng(seed), config)
        assert len(scene.cars) >= 5
        for car in scene.cars:
            assert 8.0 <= car.center[2] <= 30.0
            assert car.corners()[:, 2].min() >= config.min_corner_depth


def test_most_cars_head_along_or_against_the_road():
    yaws = [car.yaw for seed in range(6)
            for car in sample_scene(np.random.default_rng(seed), CROWDED).cars]
    along = [abs(abs(yaw) - math.pi / 2) < 0.3 for yaw in yaws]
    assert np.mean(along) > 0.6


def test_same_generator_state_gives_the_same_scene_and_another_one_differs():
    first, again, other = (sample_scene(np.random.default_rng(s)) for s in (7, 7, 8))
    assert [c.params.seed for c in first.cars] == [c.params.seed for c in again.cars]
    np.testing.assert_array_equal(_boxes(first), _boxes(again))
    assert [c.params.seed for c in first.cars] != [c.params.seed for c in other.cars]


def test_raycaster_names_the_car_the_ground_and_the_sky():
    calib = kitti_calib()
    ground = ground_y(calib)
    car = place_car(sample_car_params(HELDOUT_SEEDS[3]), 0.0, 12.0, math.pi / 2, ground)
    raycaster = build_raycaster(Scene((car,), calib, ground))
    origin = np.zeros(3)
    directions = np.array([car.center, [0.0, 1.0, 1.0], [0.0, -1.0, 1.0]])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    hits = raycaster.cast(origin, directions)
    assert hits["car"].tolist() == [0, -1, -2]
    # The ground hit lies on the plane, and every normal faces the ray's origin.
    assert (hits["t_hit"][1] * directions[1, 1]) == pytest.approx(ground, abs=1e-4)
    assert (np.sum(hits["normal"][:2] * directions[:2], axis=1) < 0).all()
    # Front of a car facing the camera (yaw pi/2): it is hit about half its length early.
    assert hits["t_hit"][0] == pytest.approx(np.linalg.norm(car.center) - car.size[0] / 2,
                                             abs=0.15)
