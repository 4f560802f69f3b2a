"""Tests for autolabel.lidar.rays: the places around an object that the LiDAR saw through."""

from __future__ import annotations

import numpy as np

from autolabel.lidar.ground import GroundPlane
from autolabel.lidar.rays import free_samples

ROAD = GroundPlane(np.array([0.0, -1.0, 0.0]), 1.7)  # the sensor 1.7 m above a level road
SENSOR = np.zeros(3)


def _on_segment(samples: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance of each sample from the straight line sensor -> end, metres."""
    direction = end / np.linalg.norm(end)
    return np.linalg.norm(samples - (samples @ direction)[:, None] * direction, axis=1)


def test_samples_lie_on_the_ray_before_its_return_near_the_object_and_in_the_band():
    end = np.array([0.4, 1.7, 30.0])  # a return on the road 30 m ahead
    centre = np.array([0.0, 1.0, 20.0])
    samples = free_samples(end[None], SENSOR, ROAD, centre, 2.0, (0.3, 0.9), margin=0.15,
                           per_ray=200, count=1000, rng=np.random.default_rng(1))
    assert len(samples) > 20
    assert _on_segment(samples, end).max() < 1e-9
    assert (np.hypot(samples[:, 0] - centre[0], samples[:, 2] - centre[2]) <= 2.0 + 1e-9).all()
    height = ROAD.height(samples)
    assert height.min() > 0.3 and height.max() < 0.9
    # The ray is 0.9 m up at 14.1 m and 0.3 m up at 24.7 m: the disc (18-22 m) lies inside.
    assert samples[:, 2].min() < 18.3 and samples[:, 2].max() > 21.7


def test_a_ray_that_ends_before_the_object_or_misses_it_gives_nothing():
    centre = np.array([0.0, 1.0, 20.0])
    short = np.array([[0.0, 1.2, 17.0]])  # a return in front of the object's reach
    aside = np.array([[8.0, 1.7, 30.0]])  # a ray passing 5 m to the side
    for returns in (short, aside):
        assert len(free_samples(returns, SENSOR, ROAD, centre, 2.0, (0.0, 2.0))) == 0


def test_no_more_samples_than_asked_and_the_same_ones_for_the_same_seed():
    rng = np.random.default_rng(0)
    returns = np.c_[rng.uniform(-3, 3, 500), np.full(500, 1.7), rng.uniform(25, 40, 500)]
    centre = np.array([0.0, 1.0, 20.0])
    first, again = (free_samples(returns, SENSOR, ROAD, centre, 3.0, (0.0, 1.7), count=64,
                                 rng=np.random.default_rng(5)) for _ in range(2))
    assert len(first) == 64 and np.array_equal(first, again)
