"""The viewpoint of a crop: KITTI's observation angle, coded as a bin and a residual.

The observation angle ``alpha`` is the yaw relative to the ray from the camera to the box
centre, ``alpha = rotation_y - atan2(x, z)`` wrapped into [-pi, pi) (KITTI's definition, as in
``ObjectLabel.alpha``): 0 when the car's forward axis points to the camera's right, square to
the ray; -pi/2 when it drives away from the camera; pi/2 when it comes towards it. What a crop
shows depends on ``alpha``, not on ``rotation_y``.

The network predicts it as a classification over ``K`` equal bins of the circle (bin ``k``
centred on ``-pi + (k + 1/2) 2 pi / K``) plus, per bin, a residual in units of a bin width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from autolabel.geometry import wrap_angle


def observation_angle(yaw: Tensor, center: Tensor) -> Tensor:
    """KITTI ``alpha`` of boxes.

    Args:
        yaw: (*,) KITTI ``rotation_y``, radians. center: (*, 3) box centres in the camera frame.
    Returns:
        (*,) radians in [-pi, pi).

    >>> observation_angle(torch.tensor([0.0]), torch.tensor([[5.0, 1.0, 5.0]]))
    tensor([-0.7854])
    """
    return wrap_angle(yaw - torch.atan2(center[..., 0], center[..., 2]))


def bin_centres(bins: int, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """(K,) the centre angles of ``bins`` equal bins covering [-pi, pi).

    >>> bin_centres(4)
    tensor([-2.3562, -0.7854,  0.7854,  2.3562])
    """
    width = 2 * math.pi / bins
    return -math.pi + (torch.arange(bins, dtype=dtype, device=device) + 0.5) * width


def encode_angle(alpha: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """Bin index and residual of angles.

    Args:
        alpha: (*,) radians (any value; wrapped first). bins: K.
    Returns:
        index: (*,) int64 in [0, K); residual: (*,) the offset from that bin's centre in bin
        widths, in [-1/2, 1/2).

    >>> encode_angle(torch.tensor([0.1, math.pi]), 4)
    (tensor([2, 0]), tensor([-0.4363, -0.5000]))
    """
    width = 2 * math.pi / bins
    position = (wrap_angle(alpha) + math.pi) / width
    index = position.floor().long().clamp(0, bins - 1)
    return index, position - index - 0.5


def decode_angle(logits: Tensor, residuals: Tensor) -> Tensor:
    """Angles from bin scores and per-bin residuals: the best bin's centre plus its residual.

    Args:
        logits: (B, K) bin scores. residuals: (B, K) residuals in bin widths.
    Returns:
        (B,) radians in [-pi, pi).

    >>> index, residual = encode_angle(torch.tensor([1.0]), 8)
    >>> decode_angle(torch.nn.functional.one_hot(index, 8).float(),
    ...              residual[:, None].expand(1, 8)).round(decimals=5)
    tensor([1.])
    """
    bins = logits.shape[-1]
    best = logits.argmax(dim=-1)
    residual = residuals.gather(-1, best[..., None])[..., 0]
    centre = bin_centres(bins, residuals.dtype, residuals.device)[best]
    return wrap_angle(centre + residual * (2 * math.pi / bins))


def mirrored_angle(alpha: Tensor) -> Tensor:
    """The observation angle of a crop flipped left to right: ``pi - alpha``, wrapped.

    Flipping the image mirrors the world in the camera's y-z plane: the forward axis
    ``(cos a, 0, -sin a)`` becomes ``(-cos a, 0, -sin a)`` and the ray's angle changes sign.

    >>> mirrored_angle(torch.tensor([0.0, math.pi / 2]))
    tensor([-3.1416,  1.5708])
    """
    return wrap_angle(math.pi - alpha)


def angle_error(predicted: Tensor, true: Tensor) -> Tensor:
    """(*,) absolute angle differences in [0, pi], radians.

    >>> angle_error(torch.tensor([3.0]), torch.tensor([-3.0]))
    tensor([0.2832])
    """
    return wrap_angle(predicted - true).abs()
