"""The crop generator: targets of a known shape at a known pose, the observation angle, the
detection box, reproducibility and the shape codes."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import ConvexHull

from autolabel.geometry import yaw_to_rotation
from autolabel.image.cars import build_pool, pool_car
from autolabel.image.crops import crop_window
from autolabel.image.generate import (
    CropConfig,
    Placed,
    generate_crop,
    kitti_camera,
    render_targets,
)
from autolabel.label import ObjectLabel
from shape_priors.meshes import sample_car_params

SIZE = np.array([4.0, 1.8, 1.5])


@pytest.fixture(scope="module")
def box_car():
    """A car that is exactly its box: 4 m long, 1.8 m wide, 1.5 m high."""
    params = dataclasses.replace(sample_car_params(0), length=4.0, width=1.8, height=1.5)
    return pool_car(params, trimesh.creation.box(extents=SIZE))


@pytest.fixture(scope="module")
def pool():
    """Cars of seeds 0 and 1, and a prior that holds the second one's shape (code [2.0])."""
    second = sample_car_params(1)
    sizes = np.array([[9.0, 9, 9], [second.length, second.width, second.height]])
    return build_pool(range(2), sizes, np.array([[1.0], [2.0]]))


def _standing(car, x: float, z: float, yaw: float) -> Placed:
    camera = kitti_camera()
    rotation = yaw_to_rotation(torch.tensor(yaw, dtype=torch.float64)).numpy()
    return Placed(car, rotation, np.array([x, camera.ground_y - 0.75, z]))


def _pixel(point: np.ndarray) -> np.ndarray:
    """(2,) the image position of a camera-frame point."""
    projected = kitti_camera().P2 @ np.append(point, 1.0)
    return projected[:2] / projected[2]


def _outline_box(placed: Placed) -> tuple[np.ndarray, np.ndarray]:
    """The projected corners (8, 2) of a placed car's box and their 2D box (4,)."""
    outline = np.stack([_pixel(corner) for corner in placed.corners()])
    return outline, np.concatenate([outline.min(axis=0), outline.max(axis=0)])


def test_centre_pixel_of_a_box_seen_from_the_side_has_the_nocs_of_its_side_face(box_car):
    placed = _standing(box_car, 0.0, 10.0, yaw=0.0)  # forward = camera +x: right side seen
    face_centre = placed.center + np.array([0.0, 0.0, -0.9])
    u, v = _pixel(face_centre)
    mask, nocs, visible = render_targets([placed], [], kitti_camera(),
                                         np.array([u - 40, v - 40, u + 40, v + 40]), 65)
    assert mask[32, 32] and visible == 1.0
    np.testing.assert_allclose(nocs[32, 32], [0.5, 0.0, 0.5], atol=2e-3)


def test_mask_area_of_a_box_is_the_area_of_its_projected_outline(box_car):
    placed = _standing(box_car, 1.0, 12.0, yaw=0.4)
    outline, box = _outline_box(placed)
    window = crop_window(box, 0.15)
    mask, nocs, _ = render_targets([placed], [], kitti_camera(), window, 64)
    pixel_area = ((window[2] - window[0]) / 64) ** 2
    assert mask.sum() * pixel_area == pytest.approx(ConvexHull(outline).volume, rel=0.03)
    assert (nocs[~mask] == 0).all() and (nocs[mask] >= 0).all() and (nocs[mask] <= 1).all()


def test_a_car_coming_towards_the_camera_shows_its_front(box_car):
    # alpha = pi/2: heading straight at the camera, so the NOCS x of what is seen is the front.
    placed = _standing(box_car, 0.0, 15.0, yaw=math.pi / 2)
    window = crop_window(_outline_box(placed)[1], 0.15)
    mask, nocs, _ = render_targets([placed], [], kitti_camera(), window, 64)
    front = nocs[mask][:, 0] > 0.99
    assert front.mean() > 0.7  # the rest is the roof, seen from above


def test_a_car_in_front_hides_part_of_the_mask(box_car):
    behind = _standing(box_car, 0.0, 20.0, yaw=0.0)
    front = _standing(box_car, 1.5, 12.0, yaw=0.0)
    window = crop_window(_outline_box(behind)[1], 0.15)
    alone, _, _ = render_targets([behind], [], kitti_camera(), window, 64)
    hidden, _, visible = render_targets([behind, front], [], kitti_camera(), window, 64)
    assert hidden.sum() < alone.sum() and not (hidden & ~alone).any()
    assert visible == pytest.approx(hidden.sum() / alone.sum())


def test_crop_alpha_is_kittis_observation_angle_and_box_is_the_3d_boxs(pool):
    rng = np.random.default_rng(3)
    config = CropConfig(visible_box=0.0, front_car=0.0, flat_occluders=0.0)
    for _ in range(5):
        crop = generate_crop(rng, pool, config)
        label = ObjectLabel.upright("Car", crop.box, crop.center, crop.yaw, crop.size)
        assert math.isclose(math.remainder(crop.alpha - label.alpha, 2 * math.pi), 0.0,
                            abs_tol=1e-9)
        assert crop.image.shape == (64, 64, 3) and crop.image.dtype == np.uint8
        assert crop.mask.shape == (64, 64) and crop.mask.any()
        assert crop.nocs.shape == (64, 64, 3) and crop.nocs.dtype == np.float32
        expected = np.clip(_outline_box(Placed(pool[crop.seed], label.rotation,
                                               crop.center))[1], 0, [1241, 374, 1241, 374])
        side = max(expected[2] - expected[0], expected[3] - expected[1])
        assert np.abs(crop.box - expected).max() < 0.2 * side  # jitter and tilt only


def test_same_generator_state_gives_the_same_crop_with_the_priors_code(pool):
    first = generate_crop(np.random.default_rng(7), pool)
    second = generate_crop(np.random.default_rng(7), pool)
    assert np.array_equal(first.image, second.image) and np.array_equal(first.mask, second.mask)
    np.testing.assert_array_equal(first.latent, {0: [np.nan], 1: [2.0]}[first.seed])


def test_road_aligned_cars_head_along_the_road(pool):
    rng = np.random.default_rng(4)
    config = CropConfig(road_aligned=1.0, road_spread=0.0, tilt=0.0)
    yaws = [generate_crop(rng, pool, config).yaw for _ in range(4)]
    np.testing.assert_allclose(np.abs(yaws), math.pi / 2, atol=1e-9)
