"""Depth maps: 16-bit PNG (KITTI convention, or millimetres) and .npy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autolabel.errors import InputError
from autolabel.io.depth import MILLIMETRES, read_depth, write_depth_png


def test_kitti_png_value_divided_by_256_is_metres(tmp_path):
    Image.fromarray(np.array([[0, 256], [2560, 65535]], dtype=np.uint16)).save(tmp_path / "d.png")
    depth = read_depth(tmp_path / "d.png")
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth, [[0.0, 1.0], [10.0, 65535 / 256]])


def test_millimetre_png_is_read_with_the_millimetre_scale(tmp_path):
    Image.fromarray(np.array([[0, 1500]], dtype=np.uint16)).save(tmp_path / "d.png")
    np.testing.assert_allclose(read_depth(tmp_path / "d.png", scale=MILLIMETRES), [[0.0, 1.5]])


@pytest.mark.parametrize("scale", [256.0, MILLIMETRES])
def test_depth_png_round_trips_to_the_quantisation_step(tmp_path, scale):
    rng = np.random.default_rng(0)
    depth = rng.uniform(0, 60, size=(37, 53))
    depth[rng.random(depth.shape) < 0.3] = 0.0
    write_depth_png(tmp_path / "out" / "d.png", depth, scale=scale)
    again = read_depth(tmp_path / "out" / "d.png", scale=scale)
    assert again.shape == depth.shape
    assert np.abs(again - depth).max() <= 0.5 / scale + 1e-5
    np.testing.assert_array_equal(again == 0, depth == 0)


def test_write_depth_png_rejects_depth_beyond_the_16_bit_range(tmp_path):
    with pytest.raises(ValueError, match="beyond the 16-bit PNG range"):
        write_depth_png(tmp_path / "d.png", np.full((2, 2), 300.0))
    with pytest.raises(ValueError, match="finite and non-negative"):
        write_depth_png(tmp_path / "d.png", np.array([[np.nan, 1.0]]))


def test_npy_depth_is_metres_with_nan_as_no_value(tmp_path):
    np.save(tmp_path / "d.npy", np.array([[1.5, np.nan], [np.inf, 20.0]]))
    np.testing.assert_array_equal(read_depth(tmp_path / "d.npy"), [[1.5, 0.0], [0.0, 20.0]])


def test_npy_with_negative_depth_names_the_pixel(tmp_path):
    np.save(tmp_path / "d.npy", np.array([[1.0, 2.0], [-0.5, 3.0]]))
    with pytest.raises(InputError, match=r"d\.npy: pixel \(row 1, col 0\): negative depth -0\.5"):
        read_depth(tmp_path / "d.npy")


def test_npy_that_is_not_2d_is_an_input_error(tmp_path):
    np.save(tmp_path / "d.npy", np.ones((2, 2, 3)))
    with pytest.raises(InputError, match=r"d\.npy: expected a 2D real-valued array"):
        read_depth(tmp_path / "d.npy")


def test_8_bit_png_is_rejected_as_not_a_depth_map(tmp_path):
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(tmp_path / "d.png")
    with pytest.raises(InputError, match=r"d\.png: expected a single-channel 16-bit PNG"):
        read_depth(tmp_path / "d.png")


def test_missing_corrupt_and_unsupported_depth_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"none\.png: no such file"):
        read_depth(tmp_path / "none.png")
    (tmp_path / "bad.png").write_text("junk")
    with pytest.raises(InputError, match=r"bad\.png: cannot decode the image"):
        read_depth(tmp_path / "bad.png")
    with pytest.raises(InputError, match=r"d\.exr: unsupported depth map suffix"):
        read_depth(tmp_path / "d.exr")
