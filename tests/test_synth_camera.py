"""Tests for autolabel.synth.camera: pixel rays, image, instance masks and depth."""

from __future__ import annotations

import math

import numpy as np
import torch

from autolabel.geometry import backproject_pixels, project_points
from autolabel.synth.camera import GROUND, SKY, pixel_rays, render_camera
from autolabel.synth.rig import IMAGE_HEIGHT, IMAGE_WIDTH, ground_y, kitti_calib
from autolabel.synth.scene import Scene, build_raycaster, place_car
from shape_priors.meshes import HELDOUT_SEEDS, sample_car_params


def _scene(*placements: tuple[float, float, float]) -> Scene:
    """Cars at camera (x, z) with yaw, shapes from consecutive held-out seeds."""
    calib = kitti_calib()
    ground = ground_y(calib)
    cars = tuple(place_car(sample_car_params(HELDOUT_SEEDS[20 + i]), x, z, yaw, ground)
                 for i, (x, z, yaw) in enumerate(placements))
    return Scene(cars, calib, ground)


def _render(scene: Scene, seed: int = 0):
    return render_camera(scene, build_raycaster(scene), np.random.default_rng(seed))


def test_pixel_rays_project_back_onto_their_pixels():
    P2 = kitti_calib().P2
    origin, directions = pixel_rays(P2, 40, 30)
    points = origin + 7.0 * directions
    pixels, _ = project_points(torch.from_numpy(points), torch.from_numpy(P2))
    u, v = np.meshgrid(np.arange(40.0), np.arange(30.0))
    np.testing.assert_allclose(pixels.numpy(), np.stack([u.ravel(), v.ravel()], 1), atol=1e-8)


def test_render_has_kitti_image_size_and_labels_sky_ground_and_car():
    render = _render(_scene((0.0, 12.0, 0.0)))
    assert render.image.shape == (IMAGE_HEIGHT, IMAGE_WIDTH, 3)
    assert render.image.dtype == np.uint8
    assert render.instance[0, 0] == SKY and render.instance[-1, 600] == GROUND
    assert (render.instance == 0).sum() > 1000
    assert (render.depth[render.instance == SKY] == 0).all()


def test_lone_car_covers_exactly_its_unoccluded_area():
    render = _render(_scene((1.0, 15.0, 0.3)))
    assert (render.instance == 0).sum() == render.unoccluded[0]


def test_car_behind_another_is_partly_hidden():
    render = _render(_scene((0.0, 10.0, math.pi / 2), (0.3, 18.0, math.pi / 2)))
    visible = (render.instance == 1).sum()
    assert 0 < visible < 0.8 * render.unoccluded[1]
    assert (render.instance == 0).sum() == render.unoccluded[0]


def test_depth_of_ground_pixels_back_projects_onto_the_ground_plane():
    scene = _scene((3.0, 20.0, 0.0))
    render = _render(scene)
    rows, cols = np.nonzero(render.instance == GROUND)
    pick = np.linspace(0, len(rows) - 1, 500).astype(int)
    pixels = torch.tensor(np.stack([cols[pick], rows[pick]], 1), dtype=torch.float64)
    depth = torch.from_numpy(render.depth[rows[pick], cols[pick]])
    points = backproject_pixels(pixels, depth, torch.from_numpy(scene.calib.P2))
    np.testing.assert_allclose(points[:, 1].numpy(), scene.ground_y, atol=1e-3)


def test_same_generator_seed_gives_the_same_image_and_another_differs():
    scene = _scene((0.0, 12.0, 0.0))
    first, again, other = _render(scene, 4), _render(scene, 4), _render(scene, 5)
    np.testing.assert_array_equal(first.image, again.image)
    assert not np.array_equal(first.image, other.image)
    np.testing.assert_array_equal(first.instance, other.instance)
