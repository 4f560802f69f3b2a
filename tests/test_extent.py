import math

import torch

from autolabel.extent import ExtentConfig, enclose_points
from autolabel.geometry import yaw_to_rotation


def _face_points(rng: torch.Generator, count: int, x: float) -> torch.Tensor:
    """(count, 3) object-frame points on the plane x = ``x`` within a 2 x 1.5 face."""
    yz = torch.rand(count, 2, generator=rng) * torch.tensor([2.0, 1.5]) - torch.tensor([1, 0.75])
    return torch.cat([torch.full((count, 1), x), yz], dim=1)


def test_a_face_moves_out_to_the_points_beyond_it_and_keeps_the_opposite_face():
    rng = torch.Generator().manual_seed(0)
    rotation = yaw_to_rotation(torch.tensor([0.7]))  # camera-from-object
    center = torch.tensor([[3.0, 1.5, 12.0]])
    size = torch.tensor([[4.0, 2.0, 1.5]])
    local = _face_points(rng, 200, -2.08)  # a rear face 8 cm behind the box's back
    points = center[:, None] + torch.einsum("ij,mj->mi", rotation[0], local)[None]
    new_center, new_size = enclose_points(points, torch.ones(1, 200, dtype=torch.bool), center,
                                          rotation, size)
    front = center + rotation[:, :, 0] * size[:, :1] / 2
    new_front = new_center + rotation[:, :, 0] * new_size[:, :1] / 2
    assert math.isclose(float(new_size[0, 0]), 4.08, abs_tol=1e-4)
    assert torch.allclose(new_size[0, 1:], size[0, 1:])
    assert torch.allclose(new_front, front, atol=1e-5)  # the far face stays


def test_stray_points_and_points_beyond_the_band_do_not_move_the_box():
    center, size = torch.zeros(1, 3), torch.tensor([[4.0, 2.0, 1.5]])
    strays = [[2.2, 0.1 * k, 0.0] for k in range(4)]  # 4 past the front: fewer than 5
    beyond = [[0.2 * k, 1.5, 0.0] for k in range(6)]  # 6 half a metre past the left side
    points = torch.tensor([strays + beyond])
    new_center, new_size = enclose_points(points, torch.ones(1, 10, dtype=torch.bool), center,
                                          torch.eye(3)[None], size)
    assert torch.equal(new_center, center) and torch.equal(new_size, size)


def test_returns_near_the_bottom_do_not_widen_the_box():
    """The road and kerb beside the wheels (000031/1 on kitti_dev widened by 0.26 m)."""
    center, size = torch.zeros(1, 3), torch.tensor([[4.0, 2.0, 1.5]])
    kerb = torch.tensor([[[0.3 * k - 1.5, 1.2, -0.65] for k in range(10)]])  # 0.1 m up
    grown = enclose_points(kerb, torch.ones(1, 10, dtype=torch.bool), center,
                           torch.eye(3)[None], size)[1]
    assert torch.equal(grown, size)
    low = enclose_points(kerb, torch.ones(1, 10, dtype=torch.bool), center,
                         torch.eye(3)[None], size, ExtentConfig(clearance=0.0))[1]
    assert math.isclose(float(low[0, 1]), 2.2, abs_tol=1e-5)  # counted, they would


def test_a_face_moves_by_at_most_the_reach_and_never_inwards():
    rng = torch.Generator().manual_seed(1)
    config = ExtentConfig(reach=0.1, band=0.5)
    far_out = _face_points(rng, 50, 2.4)  # 40 cm past the front, inside the band
    well_in = _face_points(rng, 50, -1.8)  # 20 cm inside the back
    points = torch.cat([far_out, well_in])[None]
    center, size = enclose_points(points, torch.ones(1, 100, dtype=torch.bool), torch.zeros(1, 3),
                                  torch.eye(3)[None], torch.tensor([[4.0, 2.0, 1.5]]), config)
    assert math.isclose(float(size[0, 0]), 4.1, abs_tol=1e-5)
    assert math.isclose(float(center[0, 0]), 0.05, abs_tol=1e-5)


def test_invalid_points_are_ignored():
    points = _face_points(torch.Generator().manual_seed(2), 20, 2.1)[None]
    center, size = enclose_points(points, torch.zeros(1, 20, dtype=torch.bool), torch.zeros(1, 3),
                                  torch.eye(3)[None], torch.tensor([[4.0, 2.0, 1.5]]))
    assert torch.equal(size, torch.tensor([[4.0, 2.0, 1.5]]))
