"""Backgrounds of training crops: road scenes, textures and the user's own pictures."""

import numpy as np
import pytest
from PIL import Image

from autolabel.errors import InputError
from autolabel.image.appearance import draw_look
from autolabel.image.backgrounds import image_patch, load_images, road, texture
from autolabel.image.cars import build_pool
from autolabel.image.generate import CropConfig, generate_crop, kitti_camera


def test_texture_is_a_colour_image_in_range():
    patch = texture(np.random.default_rng(0), 40)
    assert patch.shape == (40, 40, 3) and patch.min() >= 0 and patch.max() <= 255


def test_road_rays_below_the_horizon_meet_the_ground_and_those_above_do_not():
    camera = kitti_camera()
    rng = np.random.default_rng(1)
    directions = np.array([[0.0, 0.3, 1.0], [0.0, -0.3, 1.0]])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    colour, ground = road(camera.origin, directions, camera.ground_y, 500.0, draw_look(rng), rng)
    assert colour.shape == (2, 3)
    assert ground[0, 1] == pytest.approx(camera.ground_y) and np.isnan(ground[1]).all()


def test_user_pictures_become_backgrounds_and_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="no images"):
        load_images(tmp_path)
    Image.new("RGB", (900, 300), (10, 200, 30)).save(tmp_path / "a.png")
    images = load_images(tmp_path)
    assert images[0].shape[1:] == (640, 3)  # shrunk to a longer side of 640 px
    rng = np.random.default_rng(2)
    patch = image_patch(images, rng, 24)
    np.testing.assert_allclose(patch.reshape(-1, 3).mean(0), [10, 200, 30], atol=1)
    config = CropConfig(size=32, backgrounds=(0.0, 0.0, 1.0), back_cars=0.0, front_car=0.0,
                        flat_occluders=0.0)
    crop = generate_crop(rng, build_pool([5]), config, images)
    assert crop.image.shape == (32, 32, 3)
