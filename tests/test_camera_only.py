"""Camera-only hypotheses: yaw from the observation angle, boxes placed on the ground to match
their detections, and the whole on a generated frame through the pipeline."""

import dataclasses

import numpy as np
import pytest
import torch

from autolabel.camera_only import (
    RoadConfig,
    calibration_ground,
    camera_hypothesis,
    detection_grounds,
    estimate_road,
    place_on_ground,
    road_sample,
    yaw_from_alpha,
)
from autolabel.classes import mean_size
from autolabel.geometry import box_corners, projected_box2d, wrap_angle, yaw_to_rotation
from autolabel.image.evidence import ImageEvidenceConfig
from autolabel.image.viewpoint import observation_angle
from autolabel.pipeline import FrameInput, PipelineConfig, prepare_frame
from autolabel.synth import generate_frame
from autolabel.synth.rig import kitti_calib
from tests.test_fit import SCENE
from tests.test_init import GROUND_Y, P2

CARS = [((2.0, 10.0), 0.4), ((-6.0, 25.0), -1.5), ((4.0, 40.0), 2.8), ((-1.0, 60.0), 1.2)]


def _car(x: float, z: float, yaw: float, size: np.ndarray, ground_y: float = GROUND_Y
         ) -> tuple[np.ndarray, np.ndarray]:
    """The centre (3,) of a car standing on the ground at camera y ``ground_y`` (default:
    the level ground), and its exact image box (4,)."""
    center = np.array([x, ground_y - size[2] / 2, z])
    corners = box_corners(torch.as_tensor(center), yaw_to_rotation(
        torch.tensor(yaw, dtype=torch.float64)), torch.as_tensor(size))
    return center, projected_box2d(corners, torch.as_tensor(P2)).numpy()


@pytest.mark.parametrize(("position", "yaw"), CARS)
def test_the_yaw_from_an_exact_observation_angle_is_the_true_yaw(position, yaw):
    center = np.array([position[0], 1.0, position[1]])
    alpha = float(observation_angle(torch.tensor(yaw, dtype=torch.float64),
                                    torch.as_tensor(center)))
    assert yaw_from_alpha(alpha, center) == pytest.approx(yaw, abs=1e-9)


@pytest.mark.parametrize(("position", "yaw"), CARS)
def test_a_car_of_known_size_and_angle_is_placed_where_its_box_bottom_meets_the_ground(
        position, yaw):
    size = np.array([4.2, 1.7, 1.5])
    center, box2d = _car(*position, yaw, size)
    alpha = float(observation_angle(torch.tensor(yaw, dtype=torch.float64),
                                    torch.as_tensor(center)))
    placed = place_on_ground(box2d, alpha, size, P2, calibration_ground(GROUND_Y))
    # the depth grid is 1 % apart: the placed car is within half a step of the truth
    assert np.linalg.norm(placed - center) < 0.006 * np.linalg.norm(center)
    assert placed[1] == pytest.approx(center[1])


def test_a_free_edge_is_left_out_of_the_match():
    size = np.array([4.2, 1.7, 1.5])
    center, box2d = _car(-4.0, 12.0, 0.3, size)
    alpha = float(observation_angle(torch.tensor(0.3, dtype=torch.float64),
                                    torch.as_tensor(center)))
    cut = box2d.copy()
    cut[0] = box2d[0] + 0.4 * (box2d[2] - box2d[0])  # a nearer car hides its left 40 %
    ground = calibration_ground(GROUND_Y)
    free = np.array([True, False, False, False])
    placed = place_on_ground(cut, alpha, size, P2, ground, free)
    assert np.linalg.norm(placed - center) < 0.1
    bound = place_on_ground(cut, alpha, size, P2, ground)
    assert np.linalg.norm(bound - center) > 0.5


def test_a_near_car_cut_by_the_border_stays_near():
    """kitti_dev 000038/1: a car 7 m away, cut by the image's right and bottom borders,
    whose top edge no box on the level road matches, went 120 m away: a farther box
    matched its one remaining edge as well. A free edge still says the car reaches there."""
    size = np.array([4.2, 1.7, 1.5])
    center, box2d = _car(4.5, 6.0, -0.7, size)
    alpha = float(observation_angle(torch.tensor(-0.7, dtype=torch.float64),
                                    torch.as_tensor(center)))
    cut = np.minimum(box2d, [1242, 375, 1242, 375])  # KITTI's image
    assert cut[2] < box2d[2] and cut[3] < box2d[3]
    cut[1] -= 20  # and its top edge 20 px off (a taller car, a rising road)
    placed = place_on_ground(cut, alpha, size, P2, calibration_ground(GROUND_Y),
                             np.array([False, False, True, True]))
    assert abs(placed[2] - 6.0) < 2.0  # it was placed 120 m away


def test_a_camera_hypothesis_is_a_weak_box_of_the_class_mean_size_on_its_ground():
    size = mean_size("Car")
    center, box2d = _car(3.0, 20.0, -0.5, size)
    alpha = float(observation_angle(torch.tensor(-0.5, dtype=torch.float64),
                                    torch.as_tensor(center)))
    ground = calibration_ground(GROUND_Y)
    hypothesis = camera_hypothesis(box2d, "Car", P2, alpha, ground)
    assert hypothesis.weak and hypothesis.ground is ground and hypothesis.points.shape == (0, 3)
    np.testing.assert_allclose(hypothesis.size, size)
    assert hypothesis.yaw == pytest.approx(-0.5, abs=0.01)
    assert np.linalg.norm(hypothesis.center - center) < 0.15


def test_camera_only_hypotheses_of_a_generated_frame_land_near_the_cars():
    generated = generate_frame(3, 0, SCENE)
    truth = [a.label for a in generated.annotations if a.label.category == "Car"]
    image = generated.render.image
    detections = [dataclasses.replace(d, mask=None) for d in generated.detections]
    frame = FrameInput("000000", image.shape[:2], kitti_calib(), detections, image=image)
    errors = {}
    for camera_only in (False, True):
        config = PipelineConfig(yaw_hypotheses=1,
                                image=ImageEvidenceConfig(camera_only=camera_only))
        initial = [o.initial for o in prepare_frame(frame, config).objects]
        assert all(h.weak for h in initial)
        distance = [np.linalg.norm(h.center[[0, 2]] - t.center[[0, 2]]) / np.linalg.norm(
            t.center) for h, t in zip(initial, truth, strict=True)]
        yaw = [abs(float(wrap_angle(torch.tensor(h.yaw - t.yaw)))) for h, t in
               zip(initial, truth, strict=True)]
        errors[camera_only] = (max(distance), np.degrees(np.median(yaw)))
    print("largest BEV distance error (share of the range), median yaw error (deg), "
          "box-only then camera-only:", errors)
    assert errors[True][0] < 0.1 and errors[True][1] < 15
    assert errors[True][0] < errors[False][0]


# Cars on a road a little lower than the level one at the camera and falling away from it,
# y = 1.68 + 0.008 z (0.43 m lower than the level road 50 m ahead), as (x, z, yaw).
TILTED = (1.68, 0.008)
ON = RoadConfig(enabled=True, height_spread=0.03, slope_spread=0.01, grade_spread=0.0)
ROAD_CARS = [(-3.0, 9.0, 0.3), (3.5, 14.0, -1.2), (-5.0, 19.0, 2.0), (2.0, 25.0, 1.4),
             (-2.5, 31.0, -0.4), (4.0, 38.0, 3.0), (-1.5, 45.0, 0.8), (1.0, 55.0, -2.2)]


def _cars_on(road: tuple[float, float], cars) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact image boxes (D, 4), observation angles (D,) and bottom centres (D, 3) of cars of
    the class mean size standing on the road ``y = road[0] + road[1] z``."""
    size = mean_size("Car")
    boxes, alphas, bottoms = [], [], []
    for x, z, yaw in cars:
        center, box2d = _car(x, z, yaw, size, road[0] + road[1] * z)
        boxes.append(box2d)
        alphas.append(float(observation_angle(torch.tensor(yaw, dtype=torch.float64),
                                              torch.as_tensor(center))))
        bottoms.append(center + [0.0, size[2] / 2, 0.0])
    return np.array(boxes), np.array(alphas), np.array(bottoms)


def test_a_road_sample_is_the_bottom_of_a_car_of_the_mean_size_wherever_it_stands():
    boxes, alphas, bottoms = _cars_on(TILTED, ROAD_CARS)
    for box2d, alpha, bottom in zip(boxes, alphas, bottoms, strict=True):
        sample = road_sample(box2d, alpha, mean_size("Car"), P2)
        # the depth grid is 1 % apart: within half a step of the truth
        assert np.linalg.norm(sample - bottom) < 0.006 * np.linalg.norm(bottom)


def test_a_detection_whose_bottom_edge_is_hidden_gives_no_road_sample():
    boxes, alphas, _ = _cars_on(TILTED, ROAD_CARS[:1])
    free = np.array([False, False, False, True])
    assert road_sample(boxes[0], alphas[0], mean_size("Car"), P2, free) is None


def test_the_road_fitted_to_cars_on_a_lower_tilted_road_recovers_its_height_and_slope():
    boxes, _, bottoms = _cars_on(TILTED, ROAD_CARS)
    road, _ = estimate_road(bottoms, boxes[:, 3] - boxes[:, 1], GROUND_Y, ON)
    height = float(road.y_at(0.0, 0.0))
    slope = float(road.y_at(0.0, 1.0)) - height
    print("height, slope:", height, slope)
    assert height == pytest.approx(TILTED[0], abs=0.05)
    assert slope == pytest.approx(TILTED[1], abs=0.003)


def test_each_car_stands_nearer_its_road_than_on_the_level_one():
    boxes, alphas, bottoms = _cars_on(TILTED, ROAD_CARS)
    sizes = np.tile(mean_size("Car"), (len(boxes), 1))
    free = np.zeros((len(boxes), 4), dtype=bool)
    grounds = detection_grounds(boxes, alphas, sizes, P2, free, GROUND_Y, ON)
    under = np.array([float(g.y_at(b[0], b[2])) for g, b in zip(grounds, bottoms, strict=True)])
    print("road under the cars, estimated - true (m):", under - bottoms[:, 1])
    # the level road is off by 0.1 m at the nearest car and 0.47 m at the farthest
    assert np.all(np.abs(under - bottoms[:, 1]) < 0.1)


def test_a_frame_without_a_usable_detection_keeps_the_level_road():
    boxes, alphas, _ = _cars_on(TILTED, ROAD_CARS[:2])
    sizes = np.tile(mean_size("Car"), (2, 1))
    free = np.array([[False, False, False, True]] * 2)  # both bottoms hidden
    for ground in detection_grounds(boxes, alphas, sizes, P2, free, GROUND_Y, ON):
        assert ground.y_at(0.0, 0.0) == pytest.approx(GROUND_Y)
        assert ground.y_at(0.0, 50.0) == pytest.approx(GROUND_Y)
    disabled = detection_grounds(boxes, alphas, sizes, P2, free & False, GROUND_Y,
                                 RoadConfig(enabled=False))
    assert all(g.y_at(3.0, 40.0) == pytest.approx(GROUND_Y) for g in disabled)


def test_one_detection_moves_the_road_toward_it_but_not_all_the_way():
    boxes, alphas, bottoms = _cars_on(TILTED, ROAD_CARS[5:6])
    ground, = detection_grounds(boxes, alphas, mean_size("Car")[None], P2,
                                np.zeros((1, 4), dtype=bool), GROUND_Y, ON)
    under = float(ground.y_at(bottoms[0, 0], bottoms[0, 2]))
    assert GROUND_Y + 0.1 < under < bottoms[0, 1] - 0.05


def test_a_far_cars_own_sample_moves_its_road_further_than_a_near_cars():
    """Enabled with the default spreads, the frame's plane stays level and each car's road
    moves toward its own sample by what the grade allows over its distance: a car 9 m ahead
    a third of the way, one 45 m ahead most of it."""
    lower = (GROUND_Y + 0.3, 0.0)  # a road 0.3 m below the level one
    share = {}
    for x, z, yaw in (ROAD_CARS[0], ROAD_CARS[6]):
        boxes, alphas, bottoms = _cars_on(lower, [(x, z, yaw)])
        ground, = detection_grounds(boxes, alphas, mean_size("Car")[None], P2,
                                    np.zeros((1, 4), dtype=bool), GROUND_Y,
                                    RoadConfig(enabled=True))
        share[z] = (float(ground.y_at(bottoms[0, 0], bottoms[0, 2])) - GROUND_Y) / 0.3
    print("share of the way to the true road, by distance:", share)
    assert share[9.0] < 0.4 and share[45.0] > 0.55
    level, = detection_grounds(boxes, alphas, mean_size("Car")[None], P2,
                               np.zeros((1, 4), dtype=bool), GROUND_Y,
                               RoadConfig(enabled=True, grade_spread=0.0))
    assert float(level.y_at(bottoms[0, 0], bottoms[0, 2])) < GROUND_Y + 0.05
