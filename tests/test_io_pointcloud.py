"""Point clouds from .bin, .pcd and .ply files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open3d as o3d
import pytest

from autolabel.errors import InputError
from autolabel.io.kitti import read_velodyne
from autolabel.io.pointcloud import read_points

KITTI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_dev"
needs_kitti = pytest.mark.skipif(not KITTI.is_dir(), reason=f"KITTI sample data absent: {KITTI}")


def save_cloud(path: Path, points: np.ndarray) -> Path:
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    assert o3d.io.write_point_cloud(str(path), cloud)
    return path


@needs_kitti
def test_read_points_of_kitti_bin_gives_the_scans_xyz():
    path = KITTI / "velodyne" / "000008.bin"
    points = read_points(path)
    assert points.dtype == np.float32 and points.shape[1] == 3
    np.testing.assert_array_equal(points, read_velodyne(path)[:, :3])


@pytest.mark.parametrize("suffix", [".pcd", ".ply"])
def test_pcd_and_ply_round_trip_through_open3d(tmp_path, suffix):
    points = np.random.default_rng(0).normal(size=(50, 3)) * 10
    result = read_points(save_cloud(tmp_path / f"cloud{suffix}", points))
    assert result.dtype == np.float32 and result.shape == (50, 3)
    np.testing.assert_allclose(result, points, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("suffix", [".pcd", ".ply"])
def test_rows_with_nan_are_dropped(tmp_path, suffix):
    points = np.arange(12, dtype=np.float64).reshape(4, 3)
    points[1, 2] = np.nan
    result = read_points(save_cloud(tmp_path / f"cloud{suffix}", points))
    np.testing.assert_array_equal(result, points[[0, 2, 3]])


def test_all_nan_cloud_is_an_input_error(tmp_path):
    path = save_cloud(tmp_path / "nan.pcd", np.full((3, 3), np.nan))
    with pytest.raises(InputError, match=r"nan\.pcd: the point cloud has no points"):
        read_points(path)


def test_empty_bin_is_an_input_error(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.bin: the point cloud has no points"):
        read_points(path)


def test_unparseable_pcd_is_an_input_error(tmp_path):
    path = tmp_path / "junk.pcd"
    path.write_text("not a point cloud\n")
    with pytest.raises(InputError, match=r"junk\.pcd: field 'POINTS': missing from the PCD"):
        read_points(path)


def test_unknown_suffix_and_missing_file_are_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"cloud\.xyz: unsupported point cloud suffix '\.xyz'"):
        read_points(tmp_path / "cloud.xyz")
    with pytest.raises(InputError, match=r"gone\.ply: no such file"):
        read_points(tmp_path / "gone.ply")


def test_bin_with_bad_size_is_rejected_by_read_points_too(tmp_path):
    path = tmp_path / "scan.bin"
    path.write_bytes(b"\0" * 20)
    with pytest.raises(InputError, match="not a multiple of 16"):
        read_points(path)
