import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autolabel import geometry as g
from autolabel.label import ObjectLabel

angles = st.floats(min_value=-math.pi, max_value=math.pi, allow_nan=False)


def _random_rotation(generator: torch.Generator, batch: int) -> torch.Tensor:
    return g.rotation_6d_to_matrix(torch.randn(batch, 6, generator=generator, dtype=torch.float64))


def test_object_axes_map_forward_left_up_to_camera_x_z_minus_y():
    axes = g.object_to_camera_axes()
    assert torch.equal(axes @ torch.tensor([1.0, 0, 0]), torch.tensor([1.0, 0, 0]))
    assert torch.equal(axes @ torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 0, 1]))
    assert torch.equal(axes @ torch.tensor([0.0, 0, 1]), torch.tensor([0.0, -1, 0]))
    assert torch.isclose(torch.linalg.det(axes), torch.tensor(1.0))


@given(angles)
def test_yaw_round_trips_through_rotation(yaw):
    recovered = g.rotation_to_yaw(g.yaw_to_rotation(torch.tensor(yaw, dtype=torch.float64)))
    assert abs(float(g.wrap_angle(recovered - yaw))) < 1e-9


def test_kitti_yaw_zero_faces_camera_x_and_half_pi_faces_away_from_camera():
    forward = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    heading = g.yaw_to_rotation(torch.tensor([0.0, -math.pi / 2], dtype=torch.float64)) @ forward
    assert torch.allclose(heading[0], torch.tensor([1.0, 0, 0], dtype=torch.float64))
    # KITTI: rotation_y = -pi/2 means the car drives along +z, away from the camera.
    assert torch.allclose(heading[1], torch.tensor([0.0, 0, 1], dtype=torch.float64), atol=1e-12)


def test_rotation_6d_round_trip_on_random_rotations():
    rotation = _random_rotation(torch.Generator().manual_seed(0), 64)
    eye = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
    assert torch.allclose(rotation @ rotation.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(64, dtype=torch.float64))
    again = g.rotation_6d_to_matrix(g.matrix_to_rotation_6d(rotation))
    assert torch.allclose(again, rotation, atol=1e-12)


def test_inverse_transform_undoes_transform():
    gen = torch.Generator().manual_seed(1)
    rotation = _random_rotation(gen, 4)
    translation = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    points = torch.randn(4, 10, 3, generator=gen, dtype=torch.float64)
    moved = g.transform_points(rotation, translation, points)
    assert not torch.allclose(moved, points)
    assert torch.allclose(g.inverse_transform_points(rotation, translation, moved), points)


def test_box_corners_have_the_box_edge_lengths_and_top_above_bottom():
    size = torch.tensor([4.2, 1.8, 1.5], dtype=torch.float64)
    center = torch.tensor([3.0, 1.2, 20.0], dtype=torch.float64)
    corners = g.box_corners(center, g.yaw_to_rotation(torch.tensor(0.7, dtype=torch.float64)), size)
    assert torch.allclose(corners.mean(0), center)
    assert math.isclose(float((corners[0] - corners[1]).norm()), 4.2)  # front to back: length
    assert math.isclose(float((corners[0] - corners[3]).norm()), 1.8)  # left to right: width
    height = corners[:4, 1] - corners[4:, 1]  # bottom has the larger camera y
    assert torch.allclose(height, torch.full((4,), 1.5, dtype=torch.float64))


def test_points_in_box_uses_the_rotated_extent():
    rotation = g.yaw_to_rotation(torch.tensor(math.pi / 2))
    center, size = torch.zeros(3), torch.tensor([4.0, 2.0, 1.0])
    # Rotated by 90 degrees the 4 m length lies along camera z, the 2 m width along x.
    points = torch.tensor([[0.0, 0, 1.9], [0.0, 0, 2.1], [0.9, 0, 0], [1.1, 0, 0], [0, 0.6, 0]])
    inside = g.points_in_box(points, center, rotation, size)
    assert inside.tolist() == [True, False, True, False, False]


def test_projection_matches_hand_computation_and_backprojection_inverts_it():
    projection = torch.tensor([[721.5, 0, 609.6, 44.86], [0, 721.5, 172.9, 0.216],
                               [0, 0, 1, 0.0027]], dtype=torch.float64)
    points = torch.tensor([[2.0, 1.0, 15.0], [-4.0, 1.5, 30.0]], dtype=torch.float64)
    pixels, depth = g.project_points(points, projection)
    u0 = (721.5 * 2.0 + 609.6 * 15.0 + 44.86) / (15.0 + 0.0027)
    assert math.isclose(float(pixels[0, 0]), u0, rel_tol=1e-12)
    assert math.isclose(float(depth[1]), 30.0027, rel_tol=1e-12)
    assert torch.allclose(g.backproject_pixels(pixels, points[:, 2], projection), points)


@settings(max_examples=25)
@given(st.floats(1.0, 60.0), st.floats(-10.0, 10.0), angles)
def test_frustum_contains_points_of_a_box_whose_projection_is_the_2d_box(z, x, yaw):
    projection = torch.tensor([[700.0, 0, 600, 0], [0, 700, 180, 0], [0, 0, 1, 0]])
    center = torch.tensor([x, 1.0, z + 3.0])
    rotation = g.yaw_to_rotation(torch.tensor(yaw))
    corners = g.box_corners(center, rotation, torch.tensor([4.0, 1.8, 1.5]))
    box2d = g.projected_box2d(corners, projection)
    shrunk = corners * 0.999 + center * 0.001
    assert g.points_in_frustum(shrunk, projection, box2d).all()
    outside = torch.stack([center + torch.tensor([0.0, -20.0, 0.0]), -center])
    assert not g.points_in_frustum(outside, projection, box2d).any()


def test_camera_to_object_normalises_box_to_unit_cube():
    rotation = g.yaw_to_rotation(torch.tensor(-0.4))
    center, size = torch.tensor([1.0, 1.5, 12.0]), torch.tensor([4.0, 2.0, 1.6])
    corners = g.box_corners(center, rotation, size)
    local = g.camera_to_object(corners, center, rotation, size)
    assert torch.allclose(local.abs(), torch.full((8, 3), 0.5), atol=1e-6)


def test_image_box_of_a_label_is_its_projected_3d_box_clipped_to_the_image():
    projection = [[700.0, 0.0, 600.0, 0.0], [0.0, 700.0, 180.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    # A 4 x 2 x 1.4 m box 10 m ahead, axis-aligned with the camera (yaw -pi/2 points it
    # away): its nearest face spans x in [-1, 1], y in [-0.7, 0.7] at z = 8.
    label = ObjectLabel.upright("Car", [0, 0, 1, 1], [0.0, 0.0, 10.0], -math.pi / 2,
                                [4.0, 2.0, 1.4])
    box = label.with_image_box(projection, (375, 1242)).box2d
    expected = [600 - 700 / 8, 180 - 700 * 0.7 / 8, 600 + 700 / 8, 180 + 700 * 0.7 / 8]
    torch.testing.assert_close(torch.as_tensor(box), torch.tensor(expected, dtype=torch.float64))
    # Clipped at the image's left edge; kept as given when the box reaches behind the camera.
    left = ObjectLabel.upright("Car", [0, 0, 1, 1], [-7.0, 0.0, 10.0], -math.pi / 2,
                               [4.0, 2.0, 1.4]).with_image_box(projection, (375, 1242))
    assert left.box2d[0] == 0 and left.box2d[2] > 0
    behind = ObjectLabel.upright("Car", [5, 6, 7, 8], [0.0, 0.0, 1.0], 0.0, [4.0, 2.0, 1.4])
    assert behind.with_image_box(projection, (375, 1242)).box2d.tolist() == [5, 6, 7, 8]
