"""Tests for autolabel.synth.lidar: the simulated 64-beam scanner."""

from __future__ import annotations

import math

import numpy as np
import open3d as o3d
import pytest

from autolabel.synth.lidar import LidarConfig, simulate_lidar
from autolabel.synth.rig import LIDAR_HEIGHT, ground_y, kitti_calib
from autolabel.synth.scene import Scene, build_raycaster, place_car
from shape_priors.meshes import HELDOUT_SEEDS, sample_car_params

EXACT = LidarConfig(range_noise=0.0, dropout=0.0, intensity_noise=0.0,
                    azimuth_step=math.radians(0.2))


def _two_car_scene() -> Scene:
    calib = kitti_calib()
    ground = ground_y(calib)
    cars = (place_car(sample_car_params(HELDOUT_SEEDS[10]), -2.0, 9.0, 0.4, ground),
            place_car(sample_car_params(HELDOUT_SEEDS[11]), 4.0, 16.0, -1.5, ground))
    return Scene(cars, calib, ground)


def _distance_to_car(scene: Scene, index: int, velo_points: np.ndarray) -> np.ndarray:
    """(N,) unsigned distance of LiDAR-frame points to the surface of car ``index``."""
    car = scene.cars[index]
    camera = scene.calib.velo_to_rect(velo_points.astype(np.float64))
    local = (camera - car.center) @ car.rotation
    mesh = o3d.t.geometry.RaycastingScene()
    mesh.add_triangles(o3d.core.Tensor(np.asarray(car.mesh.vertices, np.float32)),
                       o3d.core.Tensor(np.asarray(car.mesh.faces, np.uint32)))
    return mesh.compute_distance(o3d.core.Tensor(local.astype(np.float32))).numpy()


def test_beam_elevations_span_the_hdl64_range_top_first():
    elevations = np.degrees(LidarConfig().elevations())
    assert len(elevations) == 64
    assert elevations[0] == pytest.approx(2.0) and elevations[-1] == pytest.approx(-24.8)
    assert (np.diff(elevations) < 0).all()


def test_points_on_cars_lie_on_the_mesh_surface_without_noise():
    scene = _two_car_scene()
    scan = simulate_lidar(scene, build_raycaster(scene), np.random.default_rng(0), EXACT)
    for index in range(2):
        on_car = scan.points[scan.car == index, :3]
        assert len(on_car) > 100
        assert _distance_to_car(scene, index, on_car).max() < 5e-3


def test_range_noise_moves_car_points_by_about_its_spread():
    scene = _two_car_scene()
    noisy = LidarConfig(range_noise=0.02, dropout=0.0, azimuth_step=math.radians(0.2))
    scan = simulate_lidar(scene, build_raycaster(scene), np.random.default_rng(1), noisy)
    distance = _distance_to_car(scene, 0, scan.points[scan.car == 0, :3])
    # |N(0, 2 cm)| has mean 1.6 cm; oblique surfaces shorten the distance to the surface.
    assert 0.006 < np.mean(distance) < 0.02
    assert distance.max() < 0.12


def test_ground_points_lie_lidar_height_below_the_scanner_in_its_frame():
    scene = _two_car_scene()
    scan = simulate_lidar(scene, build_raycaster(scene), np.random.default_rng(0), EXACT)
    ground = scan.points[scan.car == -1]
    assert len(ground) > 1000
    near = ground[np.hypot(ground[:, 0], ground[:, 1]) < 20.0]
    # The scanner is tilted by under a degree against the ground: within 0.3 m at 20 m.
    np.testing.assert_allclose(near[:, 2], -LIDAR_HEIGHT, atol=0.3)
    camera = scene.calib.velo_to_rect(ground[:, :3].astype(np.float64))
    np.testing.assert_allclose(camera[:, 1], scene.ground_y, atol=1e-3)


def test_scan_is_kitti_shaped_with_reflectance_in_the_unit_interval():
    scene = _two_car_scene()
    scan = simulate_lidar(scene, build_raycaster(scene), np.random.default_rng(2))
    assert scan.points.dtype == np.float32 and scan.points.shape[1] == 4
    assert scan.points[:, 3].min() >= 0.0 and scan.points[:, 3].max() <= 1.0
    # Only the camera's side of the sweep: azimuths within the configured half angle.
    azimuth = np.degrees(np.arctan2(scan.points[:, 1], scan.points[:, 0]))
    assert np.abs(azimuth).max() < 50.5


def test_dropout_loses_about_the_configured_fraction():
    scene = _two_car_scene()
    raycaster = build_raycaster(scene)
    full = simulate_lidar(scene, raycaster, np.random.default_rng(3), EXACT)
    half = simulate_lidar(scene, raycaster, np.random.default_rng(3),
                          LidarConfig(dropout=0.5, azimuth_step=math.radians(0.2)))
    assert len(half.points) / len(full.points) == pytest.approx(0.5, abs=0.02)
