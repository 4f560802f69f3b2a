"""Tests for autolabel.init: ground plane, L-shape yaw, box completion, box-only fallback."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from autolabel.classes import DEFAULT_SIZE_LOG_STD
from autolabel.evaluate import bev_iou, labels_to_boxes
from autolabel.geometry import box_corners, project_points, projected_box2d, yaw_to_rotation
from autolabel.init import (
    GroundPlane,
    Hypothesis,
    InitConfig,
    box_from_cluster,
    box_only_hypothesis,
    depth_to_points,
    fit_ground_plane,
    frame_hypotheses,
    label_frame_lshape,
    lshape_angle,
    mean_size,
    select_cluster,
    yaw_hypotheses,
)
from autolabel.io.detections import Detection
from autolabel.io.kitti import Calib, read_calib, read_labels, read_velodyne

KITTI_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_dev"
# KITTI-like left colour camera (frame 000008's intrinsics, rounded).
P2 = np.array([[721.5, 0.0, 609.6, 44.9], [0.0, 721.5, 172.9, 0.2], [0.0, 0.0, 1.0, 0.003]])
GROUND_Y = 1.65  # camera height above a level ground, metres (camera y points down)


def rectangle_sides(center: np.ndarray, angle: float, length: float, width: float,
                    noise: float, rng: np.random.Generator, spacing: float = 0.05) -> np.ndarray:
    """BEV points (N, 2) on the two sides of a rectangle facing the origin."""
    axes = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    corners = [center + sx * length / 2 * axes[0] + sy * width / 2 * axes[1]
               for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
    nearest = int(np.argmin([np.linalg.norm(c) for c in corners]))
    points = []
    for neighbour in ((nearest + 1) % 4, (nearest + 3) % 4):
        start, end = corners[nearest], corners[neighbour]
        steps = np.linspace(0.0, 1.0, int(np.linalg.norm(end - start) / spacing) + 1)
        points.append(start + steps[:, None] * (end - start))
    points = np.concatenate(points)
    return points + rng.normal(0.0, noise, points.shape)


def axis_error_deg(a: float, b: float) -> float:
    """Difference of two rectangle orientations modulo 90 degrees, in degrees."""
    d = math.degrees(a - b) % 90.0
    return min(d, 90.0 - d)


def test_mean_car_size_is_the_published_kitti_mean():
    assert mean_size("Car").tolist() == [3.88, 1.63, 1.53]


def test_mean_size_of_unknown_class_names_the_known_classes():
    with pytest.raises(ValueError, match="'Bus'.*Car, Van"):
        mean_size("Bus")


@pytest.mark.parametrize("criterion", ["variance", "closeness"])
@pytest.mark.parametrize("degrees", [5.0, 30.0, 52.0, 80.0])
def test_lshape_yaw_of_noisy_rectangle_with_two_visible_sides_is_within_2_degrees(
        criterion, degrees):
    rng = np.random.default_rng(int(degrees))
    points = rectangle_sides(np.array([3.0, 15.0]), math.radians(degrees), 4.2, 1.8, 0.03, rng)
    theta = lshape_angle(points, criterion=criterion)
    assert 0.0 <= theta < math.pi / 2
    assert axis_error_deg(theta, math.radians(degrees)) < 2.0


def test_ground_plane_is_recovered_from_tilted_ground_with_clutter():
    rng = np.random.default_rng(3)
    normal = np.array([0.03, -1.0, 0.02])
    normal /= np.linalg.norm(normal)
    offset = 1.7
    xz = rng.uniform([-15.0, 2.0], [15.0, 35.0], (4000, 2))
    y = -(offset + normal[0] * xz[:, 0] + normal[2] * xz[:, 1]) / normal[1]
    ground = np.stack([xz[:, 0], y, xz[:, 1]], axis=1) + rng.normal(0.0, 0.02, (4000, 3))
    clutter = rng.uniform([-10.0, -1.0, 5.0], [10.0, 1.5, 30.0], (1500, 3))  # cars, poles
    wall = np.stack([np.full(1000, 8.0), rng.uniform(-2.0, 1.6, 1000),
                     rng.uniform(3.0, 30.0, 1000)], axis=1)
    plane = fit_ground_plane(np.concatenate([ground, clutter, wall]))
    assert plane is not None
    assert plane.normal[1] < 0  # points up
    assert math.degrees(math.acos(min(1.0, float(plane.normal @ normal)))) < 1.0
    assert abs(plane.offset - offset) < 0.03
    point = np.array([0.0, 0.0, 10.0])  # the camera's optical axis, 10 m ahead
    assert abs(float(plane.height(point)) - float(normal @ point + offset)) < 0.05


def test_ground_plane_is_none_without_points_below_the_camera():
    assert fit_ground_plane(np.array([[0.0, -1.0, 5.0], [1.0, -2.0, 6.0]])) is None


def test_box_of_a_car_seen_from_behind_grows_away_from_the_sensor():
    # Only the rear face (1.6 m wide at z = 10, 0.3 to 1.53 m above ground) is seen.
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.8, 0.8, 300)
    y = GROUND_Y - rng.uniform(0.3, 1.53, 300)
    points = np.stack([x, y, np.full(300, 10.0) + rng.normal(0, 0.01, 300)], axis=1)
    plane = GroundPlane(np.array([0.0, -1.0, 0.0]), GROUND_Y)
    truth = torch.tensor([0.0, GROUND_Y - 0.765, 10.0 + 1.94], dtype=torch.float64)
    corners = box_corners(truth, yaw_to_rotation(torch.tensor(-math.pi / 2,
                          dtype=torch.float64)), torch.tensor([3.88, 1.63, 1.53]).double())
    box2d = projected_box2d(corners, torch.as_tensor(P2)).numpy()
    hypothesis = box_from_cluster(points, "Car", P2, box2d, plane)
    assert hypothesis.source == "lidar" and not hypothesis.weak
    np.testing.assert_allclose(hypothesis.center, truth.numpy(), atol=0.1)
    np.testing.assert_allclose(hypothesis.size, [3.88, 1.63, 1.53], atol=0.05)
    assert abs(hypothesis.yaw + math.pi / 2) < math.radians(2.0)  # heading away from us


def test_an_instance_mask_keeps_both_clusters_of_a_car_seen_from_behind_and_not_an_occluder():
    # The rear face (0.3-1.0 m high, z = 10) and the rear window (1.1-1.45 m, z = 11.5) are
    # 1.5 m apart: two DBSCAN clusters. An occluder stands in front, to the right.
    rng = np.random.default_rng(4)

    def block(x, height, z, count):
        return np.stack([rng.uniform(*x, count), GROUND_Y - rng.uniform(*height, count),
                         rng.uniform(z - 0.05, z + 0.05, count)], axis=1)

    rear = block((-0.8, 0.8), (0.3, 1.0), 10.0, 150)
    window = block((-0.7, 0.7), (1.1, 1.45), 11.5, 150)
    occluder = block((0.9, 2.4), (0.3, 1.4), 7.0, 150)
    pixels = project_points(torch.as_tensor(np.concatenate([rear, window])),
                            torch.as_tensor(P2))[0].numpy()
    box2d = np.concatenate([pixels.min(0), pixels.max(0)])
    occluder_left = project_points(torch.as_tensor(occluder), torch.as_tensor(P2))[0][:, 0].min()
    mask = np.zeros((375, 1242), dtype=bool)
    x1, y1, x2, y2 = np.round(box2d).astype(int)
    mask[y1:y2 + 1, x1:min(x2 + 1, int(occluder_left))] = True
    points = np.concatenate([rear, window, occluder])
    expected_depth = 11.0

    with_mask = select_cluster(points, P2, box2d, expected_depth, mask=mask)
    assert len(with_mask) == 300 and with_mask[:, 2].min() > 9.0
    without = select_cluster(points, P2, box2d, expected_depth)
    assert len(without) == 150


@pytest.mark.parametrize(("center", "yaw"), [((2.0, 10.0), 0.4), ((-6.0, 25.0), -1.5),
                                             ((4.0, 40.0), 2.8), ((0.5, 8.0), -0.2)])
def test_box_only_hypothesis_distance_is_within_20_percent_for_a_car_of_mean_height(
        center, yaw):
    size = torch.tensor(mean_size("Car"))
    truth = torch.tensor([center[0], GROUND_Y - size[2] / 2, center[1]], dtype=torch.float64)
    corners = box_corners(truth, yaw_to_rotation(torch.tensor(yaw, dtype=torch.float64)), size)
    box2d = projected_box2d(corners, torch.as_tensor(P2)).numpy()
    hypothesis = box_only_hypothesis(box2d, "Car", P2)
    assert hypothesis.weak and hypothesis.points.shape == (0, 3)
    distance, true_distance = np.linalg.norm(hypothesis.center), float(truth.norm())
    assert abs(distance - true_distance) / true_distance < 0.2


def test_detection_with_an_empty_frustum_falls_back_to_the_box_only_hypothesis():
    rng = np.random.default_rng(1)
    ground = np.stack([rng.uniform(-10, 10, 3000), np.full(3000, GROUND_Y),
                       rng.uniform(3, 40, 3000)], axis=1)
    elsewhere = rng.uniform([-12.0, 0.0, 10.0], [-10.0, 1.5, 12.0], (200, 3))  # off to the left
    calib = Calib(P2)
    detection = Detection(np.array([700.0, 150.0, 800.0, 220.0]), "Car", 0.8)
    hypotheses, plane = frame_hypotheses(np.concatenate([ground, elsewhere]), calib,
                                         [detection])
    assert plane is not None and hypotheses[0].source == "box"
    labels = label_frame_lshape(np.concatenate([ground, elsewhere]), calib, [detection])
    expected = box_only_hypothesis(detection.box2d, "Car", P2)
    np.testing.assert_allclose(labels[0].center, expected.center)
    assert labels[0].score == 0.8 and labels[0].category == "Car"


def test_without_lidar_every_label_is_box_only_and_keeps_the_detection_score():
    detections = [Detection(np.array([100.0, 160.0, 220.0, 230.0]), "Car", 0.3),
                  Detection(np.array([600.0, 170.0, 660.0, 200.0]), "Car", 0.9)]
    hypotheses, plane = frame_hypotheses(None, Calib(P2), detections)
    assert plane is None and [h.source for h in hypotheses] == ["box", "box"]
    assert [label.score for label in label_frame_lshape(None, Calib(P2), detections)] == [0.3,
                                                                                         0.9]


def test_yaw_hypotheses_turn_by_quarter_turns_and_keep_the_footprint():
    base = Hypothesis(np.array([1.0, 1.0, 10.0]), 0.3, np.array([4.0, 1.7, 1.5]),
                      np.zeros((0, 3)), "lidar")
    turns = yaw_hypotheses(base)
    assert len(turns) == 4
    for k, turn in enumerate(turns):
        difference = (turn.yaw - base.yaw - k * math.pi / 2) % (2 * math.pi)
        assert min(difference, 2 * math.pi - difference) < 1e-9
    assert turns[1].size.tolist() == [1.7, 4.0, 1.5] and turns[2].size.tolist() == [4.0, 1.7, 1.5]
    boxes = labels_to_boxes([t.to_label("Car", np.zeros(4), 1.0) for t in turns])
    assert torch.allclose(bev_iou(boxes[:1], boxes), torch.ones(1, 4, dtype=torch.float64))


@pytest.mark.skipif(not (KITTI_DEV / "velodyne" / "000008.bin").is_file(),
                    reason=f"KITTI dev data not found at {KITTI_DEV} (shared data folder)")
def test_closest_unoccluded_car_of_kitti_frame_000008_has_bev_iou_at_least_half():
    # Measured: BEV IoU 0.56 (the GT car is 2.47 m long, the class mean 3.88 m).
    calib = read_calib(KITTI_DEV / "calib" / "000008.txt")
    points = calib.velo_to_rect(read_velodyne(KITTI_DEV / "velodyne" / "000008.bin")[:, :3])
    cars = [label for label in read_labels(KITTI_DEV / "label_2" / "000008.txt")
            if label.category == "Car" and label.occlusion == 0]
    closest = min(cars, key=lambda label: float(np.linalg.norm(label.center)))
    detection = Detection(closest.box2d, "Car", 1.0)
    label = label_frame_lshape(points, calib, [detection], image_size=(375, 1242))[0]
    iou = float(bev_iou(labels_to_boxes([label]), labels_to_boxes([closest]))[0, 0])
    assert iou >= 0.5


def render_box_on_ground(center: np.ndarray, yaw: float, size: np.ndarray,
                         projection: np.ndarray, shape: tuple[int, int] = (375, 1242)
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Exact depth map (camera z) of an upright box on the ground plane y = GROUND_Y, seen by a
    camera at the origin with ``projection`` = [K | 0], and the box's pixel mask."""
    rows, cols = np.indices(shape)
    pixels = np.stack([cols, rows, np.ones(shape)], axis=-1).reshape(-1, 3)
    rays = pixels @ np.linalg.inv(projection[:, :3]).T  # (N, 3) with z = 1: t is camera z
    rotation = yaw_to_rotation(torch.tensor(yaw, dtype=torch.float64)).numpy()
    origin, direction = -center @ rotation, rays @ rotation  # in the object frame
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-size / 2 - origin) / direction, (size / 2 - origin) / direction
        near, far = np.minimum(t1, t2).max(axis=1), np.maximum(t1, t2).min(axis=1)
        ground = np.where(rays[:, 1] > 0, GROUND_Y / rays[:, 1], 0.0)
    on_box = (far >= near) & (near > 0)
    depth = np.where(on_box, near, np.where(ground < 80.0, ground, 0.0))
    return depth.reshape(shape), on_box.reshape(shape)


def test_depth_to_points_of_a_plane_projects_back_onto_its_pixels():
    depth = np.full((20, 30), 10.0)
    depth[0, 0] = 0.0  # no value
    points = depth_to_points(depth, P2, stride=3)
    assert points.shape == (7 * 10 - 1, 3) and np.allclose(points[:, 2], 10.0)
    pixels, _ = project_points(torch.as_tensor(points), torch.as_tensor(P2))
    rows, cols = np.mgrid[0:20:3, 0:30:3]
    expected = np.stack([cols.ravel(), rows.ravel()], axis=1)[1:]
    np.testing.assert_allclose(pixels.numpy(), expected, atol=1e-9)
    mask = np.zeros((20, 30), dtype=bool)
    mask[5, 7] = True
    assert depth_to_points(depth, P2, mask).shape == (1, 3)


def test_depth_map_of_a_car_gives_a_depth_hypothesis_with_bev_iou_at_least_0_9():
    # Measured: BEV IoU 0.94 with the mask and with the box alone (exact depth).
    projection = np.array([[721.5, 0.0, 609.6, 0.0], [0.0, 721.5, 172.9, 0.0],
                           [0.0, 0.0, 1.0, 0.0]])
    center, yaw, size = np.array([2.0, GROUND_Y - 0.75, 15.0]), 0.5, np.array([4.2, 1.7, 1.5])
    depth, mask = render_box_on_ground(center, yaw, size, projection)
    rows, cols = np.nonzero(mask)
    box2d = np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.float64)
    truth = labels_to_boxes([Hypothesis(center, yaw, size, np.zeros((0, 3)), "box")
                             .to_label("Car", box2d, 1.0)])
    for detection in (Detection(box2d, "Car", 0.9, mask), Detection(box2d, "Car", 0.9)):
        hypotheses, plane = frame_hypotheses(None, Calib(projection), [detection],
                                             depth=depth)
        assert plane is not None and abs(float(plane.y_at(0.0, 15.0)) - GROUND_Y) < 0.05
        assert hypotheses[0].source == "depth" and not hypotheses[0].weak
        label = hypotheses[0].to_label("Car", box2d, 0.9)
        assert float(bev_iou(labels_to_boxes([label]), truth)[0, 0]) >= 0.9


def test_frame_hypotheses_refuses_lidar_and_depth_together():
    with pytest.raises(ValueError, match="not both"):
        frame_hypotheses(np.zeros((5, 3)), Calib(P2), [], depth=np.ones((4, 4)))


def test_class_sizes_of_a_data_set_replace_kittis_statistics():
    config = InitConfig(class_sizes=(("Car", (4.65, 1.84, 1.64)),))
    assert config.mean_size("car").tolist() == [4.65, 1.84, 1.64]
    projection = np.array([[721.5, 0.0, 609.6, 0.0], [0.0, 721.5, 172.9, 0.0],
                           [0.0, 0.0, 1.0, 0.0]])
    box = np.array([560.0, 160.0, 660.0, 230.0])
    weak = box_only_hypothesis(box, "Car", projection, config=config)
    assert np.allclose(weak.size, [4.65, 1.84, 1.64])
    with pytest.raises(ValueError, match="'Van'.*known classes: Car"):
        config.mean_size("Van")


def test_a_class_mean_from_another_data_set_comes_with_the_generic_spread():
    kitti = InitConfig()
    assert np.allclose(kitti.size_log_std("car"), [0.15, 0.063, 0.09])  # KITTI's cars
    assert np.allclose(kitti.size_log_std("Pedestrian"), DEFAULT_SIZE_LOG_STD)
    # A data set's own car mean does not come with KITTI's narrow width and height spread.
    nuscenes = InitConfig(class_sizes=(("Car", (4.6, 1.95, 1.73)),))
    assert np.allclose(nuscenes.size_log_std("car"), DEFAULT_SIZE_LOG_STD)
    given = InitConfig(class_sizes=(("Car", (4.6, 1.95, 1.73)),),
                       class_spreads=(("Car", (0.12, 0.08, 0.1)),))
    assert np.allclose(given.size_log_std("CAR"), [0.12, 0.08, 0.1])
    assert np.allclose(given.size_log_std("Cyclist"), DEFAULT_SIZE_LOG_STD)


@pytest.mark.skipif(not KITTI_DEV.is_dir(), reason="../shared/data/kitti_dev is not there")
def test_the_ground_plane_of_a_real_scan_is_the_same_every_time():
    calib = read_calib(KITTI_DEV / "calib" / "000000.txt")
    points = calib.velo_to_rect(read_velodyne(KITTI_DEV / "velodyne" / "000000.bin")[:, :3])
    planes = [fit_ground_plane(points) for _ in range(4)]
    for plane in planes[1:]:
        assert np.array_equal(plane.normal, planes[0].normal)
        assert plane.offset == planes[0].offset
    assert 1.4 < planes[0].offset < 1.9  # the camera is about 1.65 m above the road


def _car_surface(center_x: float, center_z: float, rng: np.random.Generator,
                 count: int = 400) -> np.ndarray:
    """Points (count, 3) on the rear face and left side of a 3.9 x 1.6 x 1.5 m box that stands
    on the level ground, heading away from the camera."""
    rear = np.stack([rng.uniform(center_x - 0.8, center_x + 0.8, count // 2),
                     GROUND_Y - rng.uniform(0.3, 1.4, count // 2),
                     np.full(count // 2, center_z - 1.95)], axis=1)
    side = np.stack([np.full(count // 2, center_x - 0.8), GROUND_Y - rng.uniform(0.3, 1.4,
                     count // 2), rng.uniform(center_z - 1.95, center_z + 1.95, count // 2)],
                    axis=1)
    return np.concatenate([rear, side])


def test_a_hidden_car_keeps_its_own_points_and_leaves_its_occluder_the_nearer_cars():
    # A car at 20 m hides most of a car 6 m behind it, shifted 1.2 m to the side. Here the far
    # car's own cluster already scores best in its frustum (checked: the test passes without
    # the sharing too); the sharing itself, where the occluder's cluster scores best, is
    # tested by assign_clusters' doctest.
    rng = np.random.default_rng(3)
    ground = np.stack([rng.uniform(-10, 10, 4000), np.full(4000, GROUND_Y),
                       rng.uniform(3, 45, 4000)], axis=1)
    near, far = _car_surface(-0.5, 20.0, rng), _car_surface(0.7, 26.0, rng, 200)
    far = far[far[:, 0] > 0.35]  # the part that the near car does not hide
    boxes = [np.concatenate([pixels.min(0), pixels.max(0)]) for pixels in (
        project_points(torch.as_tensor(points), torch.as_tensor(P2))[0].numpy()
        for points in (near, _car_surface(0.7, 26.0, rng, 200)))]
    detections = [Detection(box, "Car", 1.0) for box in boxes]
    hypotheses, _ = frame_hypotheses(np.concatenate([ground, near, far]), Calib(P2),
                                     detections, (375, 1242))
    assert hypotheses[0].points[:, 2].max() < 22.5
    assert hypotheses[1].source == "lidar" and hypotheses[1].points[:, 2].min() > 23.0
    assert abs(hypotheses[1].center[2] - 26.0) < 1.0


def test_a_car_on_a_raised_road_stands_on_the_local_ground_not_the_frames_plane():
    # The road rises by 0.4 m beyond 31 m; the frame's plane follows the near road.
    rng = np.random.default_rng(5)
    z = rng.uniform(3, 45, 6000)
    ground = np.stack([rng.uniform(-10, 10, 6000), GROUND_Y - np.where(z > 31, 0.4, 0.0), z],
                      axis=1)
    car = _car_surface(0.0, 35.0, rng) - np.array([0.0, 0.4, 0.0])
    box = project_points(torch.as_tensor(car), torch.as_tensor(P2))[0].numpy()
    detection = Detection(np.concatenate([box.min(0), box.max(0)]), "Car", 1.0)
    hypotheses, plane = frame_hypotheses(np.concatenate([ground, car]), Calib(P2),
                                         [detection], (375, 1242))
    hypothesis = hypotheses[0]
    bottom = hypothesis.center + np.array([0.0, hypothesis.size[2] / 2, 0.0])
    assert plane.height(bottom[None])[0] > 0.3  # the frame's plane lies below the car
    assert abs(hypothesis.ground.height(bottom[None])[0]) < 0.05
    assert abs(bottom[1] - (GROUND_Y - 0.4)) < 0.05
