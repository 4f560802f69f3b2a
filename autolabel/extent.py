"""A label's box: the fitted shape's box, grown to enclose the object's own points.

The fit places the shape's smooth surface through the middle of the points it explains, but
a real car's extremes (bumper corners, mirrors' housings, wheel arches, roof edge) stand
out of any smooth shape, so the box of the fitted shape ends a few centimetres inside the
points at the sides the sensor saw. On kitti_dev the fitted near end sat 7.6 cm (median)
behind the annotated one, while on the synthetic frames, whose cars are the prior's own
kind, it sat 0.4 cm off. An annotator's box, and a detector's target, encloses what the
sensor saw of the object; so each side face of the label is moved out to enclose the
points near it. The bottom stays on the ground, where the fit put it.

Each of the five faces (front, back, left, right, top) takes the points within ``band`` of
it (inside or out) and at least ``clearance`` above the bottom; when there are at least
``min_points`` of them, the face moves out to their ``share`` quantile, by at most
``reach``. A face is never moved in.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class ExtentConfig:
    """How a label's box encloses its points (see the module docstring).

    Attributes:
        share: quantile of the points near a face that the face encloses (robust to a few
            stray returns).
        band: metres; the points within this distance of a face, inside or outside, are
            the ones near it.
        reach: metres; a face moves out by at most this much.
        min_points: a face with fewer points near it stays where the fit put it.
        clearance: metres; only points at least this high above the box bottom count (the
            road and kerb near the wheels are no part of the car).
    """

    share: float = 0.95
    band: float = 0.3
    reach: float = 0.25
    min_points: int = 5
    clearance: float = 0.2


# The faces that may move: (axis of the object frame, outward sign). The bottom (-z) is not
# among them: it rests on the ground.
_FACES = ((0, 1.0), (0, -1.0), (1, 1.0), (1, -1.0), (2, 1.0))


def enclose_points(points: Tensor, valid: Tensor, center: Tensor, rotation: Tensor,
                   size: Tensor, config: ExtentConfig = ExtentConfig()) -> tuple[Tensor, Tensor]:
    """Boxes grown so that each face encloses the points near it.

    Args:
        points: (B, M, 3) camera frame. valid: (B, M) bool.
        center: (B, 3). rotation: (B, 3, 3) camera-from-object (columns forward, left, up).
        size: (B, 3) (l, w, h).
        config: quantile, band, reach and minimum count.
    Returns:
        center (B, 3) and size (B, 3) of the grown boxes; a box without enough points near
        any face is returned unchanged.

    >>> points = torch.tensor([[[2.1, 0.0, 0.0]] * 5])
    >>> center, size = enclose_points(points, torch.ones(1, 5, dtype=torch.bool),
    ...                               torch.zeros(1, 3), torch.eye(3)[None],
    ...                               torch.tensor([[4.0, 2.0, 1.5]]))
    >>> [round(v, 3) for v in center[0].tolist()], [round(v, 3) for v in size[0].tolist()]
    ([0.05, 0.0, 0.0], [4.1, 2.0, 1.5])
    """
    local = torch.einsum("bmi,bij->bmj", points - center[:, None], rotation)
    valid = valid & (local[..., 2] > config.clearance - size[:, 2:] / 2)
    outward = torch.zeros_like(size)
    inward = torch.zeros_like(size)
    for axis, sign in _FACES:
        along = sign * local[..., axis]
        face = size[:, axis:axis + 1] / 2
        near = valid & ((along - face).abs() < config.band)
        reached = torch.nanquantile(torch.where(near, along, torch.nan), config.share, dim=-1)
        grown = (reached - face[:, 0]).clamp(0.0, config.reach)
        grown = torch.where(near.sum(-1) >= config.min_points, grown, 0.0)
        (outward if sign > 0 else inward)[:, axis] += grown
    shift = torch.einsum("bij,bj->bi", rotation, (outward - inward) / 2)
    return center + shift, size + outward + inward
