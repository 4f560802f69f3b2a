"""autolabel.lidar.clusters.dbscan: known answers on small point sets, and the same labels as
open3d's ``cluster_dbscan`` on every ground-truth frustum of kitti_dev."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autolabel.init import InitConfig, fit_ground_plane
from autolabel.io.kitti import read_calib, read_labels, read_velodyne
from autolabel.lidar.clusters import dbscan, frustum_mask

KITTI_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_dev"


def line(*xs: float) -> np.ndarray:
    """Points (N, 3) on the x axis at ``xs``."""
    return np.array([[x, 0.0, 0.0] for x in xs])


def test_two_blobs_are_two_clusters_and_lone_points_are_noise():
    rng = np.random.default_rng(0)
    near = rng.normal([0.0, 0.0, 10.0], 0.1, (30, 3))
    far = rng.normal([4.0, 0.0, 12.0], 0.1, (20, 3))
    lone = np.array([[2.0, 0.0, 11.0], [-3.0, 1.0, 9.0]])
    labels = dbscan(np.concatenate([near, lone[:1], far, lone[1:]]), 0.5, 4)
    assert labels.dtype == np.int64
    assert labels.tolist() == [0] * 30 + [-1] + [1] * 20 + [-1]


def test_clusters_are_numbered_by_their_first_core_point():
    labels = dbscan(np.concatenate([line(10.0, 10.3, 10.6), line(0.0, 0.3, 0.6)[::-1]]), 0.5, 3)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_a_chain_of_close_points_is_one_cluster_however_long():
    chain = line(*np.arange(20) * 0.4)
    assert dbscan(chain, 0.5, 3).tolist() == [0] * 20  # the ends are border points
    assert dbscan(chain, 0.35, 1).tolist() == list(range(20))  # no links: every point alone
    broken = line(*np.arange(10) * 0.4, *(5.0 + np.arange(10) * 0.4))
    assert dbscan(broken, 0.5, 3).tolist() == [0] * 10 + [1] * 10


def test_a_point_with_exactly_min_points_neighbours_counting_itself_is_core():
    triangle = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0]])
    assert dbscan(triangle, 0.5, 3).tolist() == [0, 0, 0]
    assert dbscan(triangle, 0.5, 4).tolist() == [-1, -1, -1]
    assert dbscan(triangle[:1], 0.5, 1).tolist() == [0]


def test_points_exactly_eps_apart_are_not_neighbours():
    assert dbscan(line(0.0, 1.0, 2.0), 1.0, 2).tolist() == [-1, -1, -1]
    assert dbscan(line(0.0, 1.0, 2.0), 1.0 + 1e-9, 2).tolist() == [0, 0, 0]


def test_a_border_point_between_two_clusters_joins_the_lower_numbered_one():
    # The point at 0 has 3 neighbours (itself, -0.9, 0.9), fewer than 4: a border point of
    # both clusters. The cluster on the right comes first in the array, so it is cluster 0.
    right, left = line(0.9, 1.2, 1.5, 1.8), line(-0.9, -1.2, -1.5, -1.8)
    labels = dbscan(np.concatenate([right, line(0.0), left]), 1.0, 4)
    assert labels.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    labels = dbscan(np.concatenate([left, line(0.0), right]), 1.0, 4)
    assert labels.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]


def test_duplicate_points_are_each_others_neighbours():
    assert dbscan(np.zeros((3, 3)), 0.1, 3).tolist() == [0, 0, 0]


def test_no_points_give_no_labels():
    labels = dbscan(np.zeros((0, 3)), 0.5, 4)
    assert labels.shape == (0,) and labels.dtype == np.int64


def kitti_dev_frustums() -> list[np.ndarray]:
    """The non-ground points (camera frame) in the frustum of every ground-truth 2D box of
    kitti_dev, as :func:`autolabel.init.frame_hypotheses` clusters them."""
    config = InitConfig()
    frustums = []
    for calib_path in sorted((KITTI_DEV / "calib").glob("*.txt")):
        calib = read_calib(calib_path)
        scan = read_velodyne(KITTI_DEV / "velodyne" / f"{calib_path.stem}.bin")
        points = calib.velo_to_rect(scan[:, :3])
        plane = fit_ground_plane(points, config)
        for label in read_labels(KITTI_DEV / "label_2" / f"{calib_path.stem}.txt"):
            index = np.flatnonzero(frustum_mask(points, calib.P2, label.box2d))
            index = index[plane.height(points[index]) > config.ground_clearance]
            frustums.append(points[index])
    return frustums


@pytest.mark.skipif(not KITTI_DEV.is_dir(), reason="../shared/data/kitti_dev is not there")
def test_the_clusters_of_every_kitti_dev_frustum_are_open3ds():
    o3d = pytest.importorskip("open3d")
    config = InitConfig()
    frustums = kitti_dev_frustums()
    assert len(frustums) == 222  # every label_2 line of the 33 frames
    clustered = 0
    for frustum in frustums:
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(frustum.astype(np.float64)))
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            expected = np.asarray(cloud.cluster_dbscan(config.cluster_eps,
                                                       config.cluster_min_points))
        # The same labels, not only the same partition: the candidates keep this order.
        assert dbscan(frustum, config.cluster_eps, config.cluster_min_points).tolist() == \
            expected.tolist()
        clustered += expected.max(initial=-1) >= 1
    assert clustered > 100  # most frustums hold several clusters, so the order is tested
