"""Observation angles: KITTI's definition, the bin code and the mirror of a crop."""

import math

import numpy as np
import pytest
import torch

from autolabel.image.viewpoint import (
    angle_error,
    decode_angle,
    encode_angle,
    mirrored_angle,
    observation_angle,
)
from autolabel.label import ObjectLabel

POSES = [  # (x, z, rotation_y)
    (0.0, 10.0, 0.0), (5.0, 5.0, 0.0), (-8.0, 20.0, math.pi / 2), (3.0, 30.0, -2.5),
    (-2.0, 7.0, 3.1),
]


@pytest.mark.parametrize("x, z, yaw", POSES)
def test_observation_angle_is_the_labels_kitti_alpha(x, z, yaw):
    label = ObjectLabel.upright("Car", np.zeros(4), [x, 1.0, z], yaw, [4.0, 1.8, 1.5])
    alpha = observation_angle(torch.tensor(yaw, dtype=torch.float64),
                              torch.tensor([x, 1.0, z], dtype=torch.float64))
    assert float(angle_error(alpha, torch.tensor(label.alpha, dtype=torch.float64))) < 1e-12


def test_a_car_straight_ahead_driving_away_has_alpha_minus_half_pi():
    # rotation_y = -pi/2 points the car's forward axis along camera +z.
    alpha = observation_angle(torch.tensor(-math.pi / 2), torch.tensor([0.0, 1.6, 20.0]))
    assert float(alpha) == pytest.approx(-math.pi / 2)


@pytest.mark.parametrize("x, z, yaw", POSES)
def test_mirrored_angle_is_the_alpha_of_the_mirrored_scene(x, z, yaw):
    center, mirrored_center = torch.tensor([x, 1.0, z]), torch.tensor([-x, 1.0, z])
    alpha = observation_angle(torch.tensor(yaw), center)
    mirrored = observation_angle(torch.tensor(math.pi - yaw), mirrored_center)
    assert float(angle_error(mirrored_angle(alpha), mirrored)) < 1e-5


def test_bins_and_residuals_round_trip_every_angle():
    alpha = torch.linspace(-math.pi, math.pi, 1001)[:-1]
    index, residual = encode_angle(alpha, 24)
    assert residual.min() >= -0.5 and residual.max() < 0.5
    logits = torch.nn.functional.one_hot(index, 24).float()
    decoded = decode_angle(logits, residual[:, None].expand(-1, 24))
    assert float(angle_error(decoded, alpha).max()) < 1e-5


def test_decoding_takes_the_residual_of_the_best_bin():
    logits = torch.tensor([[0.0, 5.0, 1.0, 0.0]])
    residuals = torch.tensor([[0.4, -0.25, 0.3, 0.0]])
    # bin 1 of 4 is centred on -pi/4; a quarter bin back is -pi/4 - pi/8
    assert float(decode_angle(logits, residuals)) == pytest.approx(-3 * math.pi / 8)
