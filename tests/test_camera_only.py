"""Camera-only hypotheses: yaw from the observation angle, boxes placed on the ground to match
their detections, and the whole on a generated frame through the pipeline."""

import dataclasses

import numpy as np
import pytest
import torch

from autolabel.camera_only import (
    calibration_ground,
    camera_hypothesis,
    place_on_ground,
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


def _car(x: float, z: float, yaw: float, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centre (3,) of a car standing on the level ground, and its exact image box (4,)."""
    center = np.array([x, GROUND_Y - size[2] / 2, z])
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
