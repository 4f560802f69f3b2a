"""autolabel.lidar.clusters: dbscan's known answers on small point sets and the same labels as
open3d's ``cluster_dbscan`` on every ground-truth frustum of kitti_dev; the candidates of a
far car that splits at DBSCAN's radius."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autolabel.geometry import points_in_box, yaw_to_rotation
from autolabel.init import InitConfig, fit_ground_plane, frame_hypotheses
from autolabel.io.detections import Detection
from autolabel.io.kitti import read_calib, read_labels, read_velodyne
from autolabel.lidar.clusters import (
    ProjectedPoints,
    cluster_candidates,
    dbscan,
    trim_cluster,
)

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
        seen = ProjectedPoints.of(points, calib.P2)
        for label in read_labels(KITTI_DEV / "label_2" / f"{calib_path.stem}.txt"):
            index = np.flatnonzero(seen.in_box(label.box2d))
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


# A KITTI-like camera: focal length 721 px, principal point (609, 172).
PROJECTION = np.array([[721.0, 0, 609, 0], [0, 721, 172, 0], [0, 0, 1, 0]])


def far_car_rows() -> tuple[np.ndarray, np.ndarray]:
    """LiDAR rows on a car 35 m ahead seen from behind (camera frame, y down), and its box.

    Three rows 0.25 m apart on the rear face (z = 35) and two on the rear window 0.6 m
    behind and 0.35 m above them, with nothing on the dark trunk lid between: at a radius of
    0.5 m two clusters."""
    xs = np.linspace(-0.8, 0.8, 17)
    rows = [(y, 35.0) for y in (1.2, 0.95, 0.7)] + [(y, 35.6) for y in (0.35, 0.1)]
    points = np.array([[x, y, z] for y, z in rows for x in xs])
    box = np.array([609 - 721 * 0.85 / 35, 172 + 721 * 0.0 / 35, 609 + 721 * 0.85 / 35,
                    172 + 721 * 1.45 / 35.0])
    return points, box


def best_candidate(points: np.ndarray, box: np.ndarray, **wide) -> np.ndarray:
    candidates = cluster_candidates(points, np.arange(len(points)),
                                    ProjectedPoints.of(points, PROJECTION), box, 35.0,
                                    eps=0.5, min_points=4, mask_share=0.8,
                                    depth_tolerance=0.35, **wide)
    return candidates[0].indices


def test_a_far_car_split_at_the_radius_is_one_candidate_at_the_wide_radius():
    points, box = far_car_rows()
    assert len(best_candidate(points, box)) == 3 * 17  # the rear face alone
    joined = best_candidate(points, box, wide_eps=0.875, wide_reach=5.0)
    assert sorted(joined.tolist()) == list(range(len(points)))


def test_a_wide_cluster_longer_than_the_reach_is_no_candidate():
    points, box = far_car_rows()
    # A hedge behind the car, rows 0.6 m apart running 8 m away from the camera, which the
    # wide radius chains to the car; the window's rows are taken out of the picture.
    hedge = np.array([[0.0, y, z] for y in (0.35, 0.1) for z in np.arange(35.6, 43.6, 0.3)])
    scene = np.concatenate([points[:3 * 17], hedge])
    wide = best_candidate(scene, box, wide_eps=0.875, wide_reach=5.0)
    assert sorted(wide.tolist()) == list(range(3 * 17))


@pytest.mark.skipif(not KITTI_DEV.is_dir(), reason="../shared/data/kitti_dev is not there")
def test_a_far_kitti_dev_car_seen_from_behind_keeps_its_rear_face():
    """kitti_dev 000002's car at 34 m: its rear face (trunk) and rear window are two clusters
    at 0.5 m; the rear window alone put the box 0.5 m behind the trunk's points."""
    calib = read_calib(KITTI_DEV / "calib" / "000002.txt")
    points = calib.velo_to_rect(read_velodyne(KITTI_DEV / "velodyne" / "000002.bin")[:, :3])
    car = next(label for label in read_labels(KITTI_DEV / "label_2" / "000002.txt")
               if label.category == "Car")
    assert 34 < car.center[2] < 35
    detection = Detection(np.asarray(car.box2d, dtype=np.float64), "Car", 1.0)
    plane = fit_ground_plane(points, InitConfig())
    inside = points_in_box(torch.as_tensor(points), torch.as_tensor(car.center),
                           yaw_to_rotation(torch.tensor(car.yaw, dtype=torch.float64)),
                           torch.as_tensor(np.asarray(car.size) + 0.2)).numpy()
    car_points = points[inside & (plane.height(points) > InitConfig().ground_clearance)]

    def recall(config: InitConfig) -> float:
        hypothesis = frame_hypotheses(points, calib, [detection], config=config)[0][0]
        distance = np.linalg.norm(car_points[:, None] - hypothesis.points[None], axis=-1)
        return float((distance.min(1) < 1e-6).mean())

    assert recall(InitConfig(cluster_eps_per_metre=0.0)) < 0.5
    assert recall(InitConfig()) > 0.9


def _car_face(rng: np.random.Generator, count: int, depth: float, x: float = 0.0) -> np.ndarray:
    """(count, 3) returns on a 1.7 m wide rear face ``depth`` metres ahead."""
    return np.c_[x + rng.uniform(-0.85, 0.85, count), rng.uniform(-0.5, 0.5, count),
                 depth + rng.normal(0.0, 0.02, count)]


CAR_SIZE = np.array([3.88, 1.63, 1.53])


def test_a_few_returns_in_front_do_not_anchor_a_trimmed_cluster():
    rng = np.random.default_rng(0)
    stray, car = _car_face(rng, 15, 15.0), _car_face(rng, 600, 24.0)
    kept = trim_cluster(np.r_[stray, car], CAR_SIZE)
    assert len(kept) == 600 and kept[:, 2].min() > 23.5


def test_a_car_chained_to_a_fuller_hedge_behind_keeps_the_car():
    rng = np.random.default_rng(1)
    car = _car_face(rng, 300, 10.0)
    hedge = np.c_[rng.uniform(-6, 6, 2000), rng.uniform(-0.5, 1.5, 2000),
                  rng.uniform(14.5, 15.5, 2000)]
    kept = trim_cluster(np.r_[car, hedge], CAR_SIZE)
    assert kept[:, 2].min() < 10.1 and kept[:, 2].max() < 14.3  # the car and no hedge


def test_a_hedge_that_runs_past_the_box_loses_to_the_car_the_box_was_drawn_around():
    # A car's rear face 30 m ahead, its box, and a low hedge 20 m ahead that runs 6 m past
    # either side of the box; a box jittered taller puts the expected depth at 21 m, where
    # the hedge's piece of the frustum agrees better than the car.
    xs, ys = np.arange(-0.85, 0.851, 0.05), np.arange(0.2, 1.51, 0.1)
    car = np.array([[x, y, 30.0] for x in xs for y in ys])
    hedge = np.array([[x, y, 20.0] for x in np.arange(-6.0, 6.01, 0.1)
                      for y in (0.6, 0.7, 0.8, 0.9, 1.0)])
    points = np.r_[car, hedge]
    box = np.array([609 - 721 * 0.86 / 30, 172 + 721 * 0.19 / 30, 609 + 721 * 0.86 / 30,
                    172 + 721 * 1.6 / 30])
    seen = ProjectedPoints.of(points, PROJECTION)
    inside = np.flatnonzero(seen.in_box(box))
    wider = np.array([box[0] - 50, box[1], box[2] + 50, box[3]])
    context = np.flatnonzero(seen.in_box(wider))

    def best(**extra) -> np.ndarray:
        candidates = cluster_candidates(points, inside, seen, box, 21.0, eps=0.5,
                                        min_points=4, mask_share=0.8, depth_tolerance=0.35,
                                        **extra)
        return points[candidates[0].indices]

    assert np.allclose(best()[:, 2], 20.0)  # the frustum alone: the hedge's piece wins
    chosen = best(context=context)
    assert np.allclose(chosen[:, 2], 30.0) and len(chosen) == len(car)
