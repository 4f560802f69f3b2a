"""Rotations, rigid transforms, 9D boxes, and pinhole cameras as batched torch functions.

Frames (see docs/formats.md):

* camera frame: KITTI's rectified camera frame, x right, y down, z forward (metres);
* object frame: the shape prior's canonical frame, x forward along the car's length,
  y left, z up, origin at the centre of the object's tight box.

A 9D box is ``(centre (3,), rotation (3, 3), size (3,))`` where ``rotation`` maps object-frame
directions into the camera frame and ``size`` is (length, width, height) along the object's
x, y, z axes. KITTI's ``rotation_y`` (yaw about the camera's y axis) maps to a rotation with
:func:`yaw_to_rotation`; KITTI's bottom-centre location is converted in ``autolabel.io.kitti``.

Every function accepts arbitrary leading batch dimensions ``*`` unless its docstring says
otherwise, and never mixes devices or dtypes on its own.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Camera-from-object rotation of an object with yaw 0: object x (forward) -> camera x,
# object y (left) -> camera z, object z (up) -> camera -y.
_OBJECT_TO_CAMERA_AXES = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))

# Corner signs in the object frame, in units of half the size. Corners 0-3 are the bottom
# face (z = -h/2) counter-clockwise seen from above starting front-left, 4-7 the top face
# in the same order, so corner i+4 sits above corner i.
_CORNER_SIGNS = (
    (1, 1, -1), (-1, 1, -1), (-1, -1, -1), (1, -1, -1),
    (1, 1, 1), (-1, 1, 1), (-1, -1, 1), (1, -1, 1),
)


def object_to_camera_axes(dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """Camera-from-object rotation of an object whose yaw is zero.

    Returns:
        (3, 3) rotation; its columns are the object's x, y, z axes in the camera frame.

    >>> object_to_camera_axes() @ torch.tensor([0.0, 0.0, 1.0])  # object up is camera -y
    tensor([ 0., -1.,  0.])
    """
    return torch.tensor(_OBJECT_TO_CAMERA_AXES, dtype=dtype, device=device)


def rotation_about_y(angle: Tensor) -> Tensor:
    """Rotation matrices about the camera's y axis (KITTI's ``rotation_y`` convention).

    Args:
        angle: (*,) radians.
    Returns:
        (*, 3, 3) with ``R @ [1, 0, 0] = [cos a, 0, -sin a]``.

    >>> rotation_about_y(torch.tensor(0.0)).equal(torch.eye(3))
    True
    """
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    rows = (
        torch.stack([c, zero, s], dim=-1),
        torch.stack([zero, one, zero], dim=-1),
        torch.stack([-s, zero, c], dim=-1),
    )
    return torch.stack(rows, dim=-2)


def yaw_to_rotation(yaw: Tensor) -> Tensor:
    """Camera-from-object rotation of an upright object with KITTI yaw ``rotation_y``.

    Args:
        yaw: (*,) radians; 0 means the object's forward axis points along camera +x.
    Returns:
        (*, 3, 3) rotation mapping object-frame directions into the camera frame.

    >>> R = yaw_to_rotation(torch.tensor(torch.pi / 2))
    >>> (R @ torch.tensor([1.0, 0.0, 0.0])).round(decimals=6).tolist()  # forward -> camera -z
    [-0.0, 0.0, -1.0]
    """
    axes = object_to_camera_axes(yaw.dtype, yaw.device)
    return rotation_about_y(yaw) @ axes


def yaw_rotation_terms(dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The rotation of yaw ``y`` as a linear function of ``(cos y, sin y, 1)``.

    Returns:
        (3, 9) matrix T with ``yaw_to_rotation(y).flatten() == [cos y, sin y, 1] @ T``, so
        that a batch of rotations is one matrix product.

    >>> y = torch.tensor([0.3, -2.0])
    >>> features = torch.stack([y.cos(), y.sin(), torch.ones(2)], dim=-1)
    >>> torch.allclose((features @ yaw_rotation_terms()).view(2, 3, 3), yaw_to_rotation(y))
    True
    """
    about_y = torch.tensor([[(1.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)],
                            [(0.0, 0.0, 1.0), (0.0, 0.0, 0.0), (-1.0, 0.0, 0.0)],
                            [(0.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 0.0)]], dtype=dtype,
                           device=device)  # rotation_about_y: cos, sin and constant parts
    return (about_y @ object_to_camera_axes(dtype, device)).reshape(3, 9)


def rotation_to_yaw(rotation: Tensor) -> Tensor:
    """KITTI yaw of a camera-from-object rotation (heading of its forward axis).

    Args:
        rotation: (*, 3, 3).
    Returns:
        (*,) radians in (-pi, pi]; exact inverse of :func:`yaw_to_rotation` for upright objects,
        and the yaw of the forward axis projected onto the ground for tilted ones.

    >>> float(rotation_to_yaw(yaw_to_rotation(torch.tensor(1.25))))
    1.25
    """
    forward = rotation[..., :, 0]
    return torch.atan2(-forward[..., 2], forward[..., 0])


def wrap_angle(angle: Tensor) -> Tensor:
    """Wrap radians into [-pi, pi).

    >>> wrap_angle(torch.tensor([3 * torch.pi / 2]))
    tensor([-1.5708])
    """
    return torch.remainder(angle + torch.pi, 2 * torch.pi) - torch.pi


def rotation_6d_to_matrix(d6: Tensor) -> Tensor:
    """Rotation from the continuous 6D representation (Zhou et al., CVPR 2019).

    The two 3-vectors are the first two columns before Gram-Schmidt orthogonalisation.

    Args:
        d6: (*, 6).
    Returns:
        (*, 3, 3) proper rotation.

    >>> rotation_6d_to_matrix(torch.tensor([2.0, 0, 0, 1, 1, 0]))
    tensor([[1., 0., 0.],
            [0., 1., 0.],
            [0., 0., 1.]])
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rotation_6d(rotation: Tensor) -> Tensor:
    """The 6D representation of a rotation: its first two columns.

    Args:
        rotation: (*, 3, 3).
    Returns:
        (*, 6); :func:`rotation_6d_to_matrix` of it gives ``rotation`` back.
    """
    return torch.cat([rotation[..., :, 0], rotation[..., :, 1]], dim=-1)


def transform_points(rotation: Tensor, translation: Tensor, points: Tensor) -> Tensor:
    """Apply ``x -> R x + t`` to a set of points per batch element.

    Args:
        rotation: (*, 3, 3). translation: (*, 3). points: (*, N, 3).
    Returns:
        (*, N, 3).
    """
    return points @ rotation.transpose(-1, -2) + translation.unsqueeze(-2)


def inverse_transform_points(rotation: Tensor, translation: Tensor, points: Tensor) -> Tensor:
    """Apply the inverse of ``x -> R x + t``, i.e. ``y -> R^T (y - t)``.

    Args:
        rotation: (*, 3, 3). translation: (*, 3). points: (*, N, 3).
    Returns:
        (*, N, 3).
    """
    return (points - translation.unsqueeze(-2)) @ rotation


def camera_to_object(
    points: Tensor, center: Tensor, rotation: Tensor, size: Tensor | None = None
) -> Tensor:
    """Map camera-frame points into a box's object frame, optionally normalised by its size.

    Args:
        points: (*, N, 3) camera frame. center: (*, 3). rotation: (*, 3, 3).
        size: (*, 3) or None; when given the result is divided by it, so that the box
            becomes the cube [-0.5, 0.5]^3.
    Returns:
        (*, N, 3).
    """
    local = inverse_transform_points(rotation, center, points)
    if size is not None:
        local = local / size.unsqueeze(-2)
    return local


def box_corners(center: Tensor, rotation: Tensor, size: Tensor) -> Tensor:
    """The 8 corners of 9D boxes in the camera frame.

    Args:
        center: (*, 3). rotation: (*, 3, 3) camera-from-object. size: (*, 3) as (l, w, h).
    Returns:
        (*, 8, 3); corners 0-3 are the bottom face counter-clockwise seen from above starting
        at front-left, corners 4-7 the top face, corner i+4 above corner i.

    >>> c = box_corners(torch.zeros(3), yaw_to_rotation(torch.tensor(0.0)),
    ...                 torch.tensor([4.0, 2.0, 1.5]))
    >>> c[0].tolist()  # front-left-bottom: +x, left is camera +z, bottom is camera +y
    [2.0, 0.75, 1.0]
    """
    signs = torch.tensor(_CORNER_SIGNS, dtype=center.dtype, device=center.device)
    local = signs * (size.unsqueeze(-2) / 2)
    return transform_points(rotation, center, local)


def points_in_box(points: Tensor, center: Tensor, rotation: Tensor, size: Tensor) -> Tensor:
    """Which points lie inside (or on) each box.

    Args:
        points: (*, N, 3) camera frame. center: (*, 3). rotation: (*, 3, 3). size: (*, 3).
    Returns:
        (*, N) bool.
    """
    local = camera_to_object(points, center, rotation, size)
    return (local.abs() <= 0.5).all(dim=-1)


def project_points(points: Tensor, projection: Tensor) -> tuple[Tensor, Tensor]:
    """Pinhole projection with a 3x4 camera matrix (KITTI ``P2``).

    Args:
        points: (*, N, 3) in the rectified camera frame.
        projection: (*, 3, 4).
    Returns:
        pixels: (*, N, 2) as (u, v); depth: (*, N), the homogeneous coordinate ``w`` (equal to
        the camera z plus the matrix's small ``P[2, 3]`` offset). Points with ``w <= 0`` are
        behind the camera and their pixels are meaningless: callers mask them with ``depth``.

    >>> P = torch.tensor([[700.0, 0, 600, 0], [0, 700, 180, 0], [0, 0, 1, 0]])
    >>> project_points(torch.tensor([[1.0, 0.5, 10.0]]), P)[0]
    tensor([[670., 215.]])
    """
    homogeneous = points @ projection[..., :, :3].transpose(-1, -2)
    homogeneous = homogeneous + projection[..., :, 3].unsqueeze(-2)
    depth = homogeneous[..., 2]
    pixels = homogeneous[..., :2] / depth.unsqueeze(-1)
    return pixels, depth


def backproject_pixels(pixels: Tensor, depth: Tensor, projection: Tensor) -> Tensor:
    """Inverse of :func:`project_points`: camera-frame points from pixels and camera z.

    Args:
        pixels: (*, N, 2) as (u, v). depth: (*, N) camera-frame z in metres.
        projection: (*, 3, 4) whose left 3x3 block is invertible and whose third row is
            ``[0, 0, 1, t]`` as in every KITTI ``P`` matrix.
    Returns:
        (*, N, 3) points with the given z that project onto the given pixels.

    >>> P = torch.tensor([[700.0, 0, 600, 45], [0, 700, 180, 0.2], [0, 0, 1, 0.003]])
    >>> X = torch.tensor([[1.0, 0.5, 10.0]])
    >>> uv, _ = project_points(X, P)
    >>> torch.allclose(backproject_pixels(uv, X[..., 2], P), X)
    True
    """
    w = depth + projection[..., 2, 3].unsqueeze(-1)
    homogeneous = torch.cat([pixels * w.unsqueeze(-1), w.unsqueeze(-1)], dim=-1)
    shifted = homogeneous - projection[..., :, 3].unsqueeze(-2)
    return shifted @ torch.linalg.inv(projection[..., :, :3]).transpose(-1, -2)


def points_in_frustum(
    points: Tensor, projection: Tensor, box2d: Tensor, min_depth: float = 0.1
) -> Tensor:
    """Which points project inside a 2D box and lie in front of the camera.

    Args:
        points: (*, N, 3) camera frame. projection: (*, 3, 4).
        box2d: (*, 4) as (x1, y1, x2, y2) in pixels.
        min_depth: points closer than this (metres) are excluded.
    Returns:
        (*, N) bool.
    """
    return pixels_in_box(*project_points(points, projection), box2d, min_depth)


def pixels_in_box(pixels: Tensor, depth: Tensor, box2d: Tensor, min_depth: float = 0.1
                  ) -> Tensor:
    """:func:`points_in_frustum` of points already projected (:func:`project_points`).

    Args:
        pixels: (*, N, 2). depth: (*, N). box2d: (*, 4) as (x1, y1, x2, y2) in pixels.
        min_depth: points closer than this (metres) are excluded.
    Returns:
        (*, N) bool.
    """
    u, v = pixels[..., 0], pixels[..., 1]
    x1, y1, x2, y2 = (box2d[..., i].unsqueeze(-1) for i in range(4))
    return (depth > min_depth) & (u >= x1) & (u <= x2) & (v >= y1) & (v <= y2)


def camera_centres(projection: Tensor) -> Tensor:
    """Optical centres of 3x4 cameras in the camera frame: (B, 3) from (B, 3, 4).

    The centre solves ``M c = -p`` (``P = [M | p]``), here with the adjugate of ``M`` (its
    columns are cross products of M's rows): unlike ``linalg.solve`` it never checks for
    singular matrices on the host, so the fitter's iteration does not wait for the device.

    >>> camera_centres(torch.tensor([[[700.0, 0, 0, 70], [0, 700, 0, -140], [0, 0, 1, -2]]]))
    tensor([[-0.1000,  0.2000,  2.0000]])
    """
    m0, m1, m2 = projection[:, :, :3].unbind(1)
    adjugate = torch.stack([torch.linalg.cross(m1, m2), torch.linalg.cross(m2, m0),
                            torch.linalg.cross(m0, m1)], dim=-1)
    determinant = (m0 * adjugate[..., 0]).sum(-1, keepdim=True)
    return -(adjugate @ projection[:, :, 3:]).squeeze(-1) / determinant


def facing_cosine(points: Tensor, normals: Tensor, camera_centre: Tensor) -> Tensor:
    """Cosine between each normal and the direction from its point to the camera: (B, N)
    from points and unit normals (B, N, 3) and optical centres (B, 3); positive when the
    surface faces the camera."""
    towards = torch.nn.functional.normalize(camera_centre.unsqueeze(1) - points, dim=-1)
    return (normals * towards).sum(-1)


def projected_box2d(corners: Tensor, projection: Tensor) -> Tensor:
    """Axis-aligned 2D box around projected points (e.g. a 3D box's 8 corners).

    Args:
        corners: (*, N, 3) camera frame, all in front of the camera. projection: (*, 3, 4).
    Returns:
        (*, 4) as (x1, y1, x2, y2) in pixels.
    """
    pixels, _ = project_points(corners, projection)
    return torch.cat([pixels.amin(dim=-2), pixels.amax(dim=-2)], dim=-1)


def image_box(corners: Tensor, projection: Tensor, image_size: tuple[int, int] | None = None,
              near: float = 0.1) -> Tensor | None:
    """The image box of one 3D box, clipped to the image: what a label's ``box2d`` holds.

    Args:
        corners: (8, 3) the box's corners, camera frame. projection: (3, 4).
        image_size: (height, width) to clip to, or None not to clip.
        near: metres; a corner nearer than this to the camera plane makes the box unprojectable.
    Returns:
        (4,) as (x1, y1, x2, y2) pixels, or None when a corner lies behind ``near``.
    """
    if bool((corners[:, 2] <= near).any()):
        return None
    box = projected_box2d(corners, projection)
    if image_size is not None:
        height, width = image_size
        box = torch.minimum(box.clamp(min=0), box.new_tensor([width, height, width, height]))
    return box
