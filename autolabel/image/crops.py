"""Square crops around detections, for real images and renders alike.

A crop is the fitter's render window (``autolabel.render.detection_windows``): a square
centred on the 2D box, its side the box's longer side plus ``margin`` of it on each side,
resampled to ``size`` x ``size`` pixels. Image coordinates are continuous with pixel centres
at integers (as KITTI's boxes); crop pixel ``(i, j)`` covers the window region
``x0 + [j, j + 1] * (x1 - x0) / size`` (and likewise in y), so its centre lies at
``x0 + (j + 1/2) * (x1 - x0) / size``. Parts of a window outside the image are black.
Downsampling averages (PIL's antialiased bilinear filter), upsampling interpolates.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from autolabel.render import detection_windows


def crop_window(box2d: np.ndarray, margin: float) -> np.ndarray:
    """(4,) the window ``(x0, y0, x1, y1)`` of a 2D box ``(x1, y1, x2, y2)``.

    >>> crop_window(np.array([100.0, 50, 140, 70]), 0.25).tolist()
    [90.0, 30.0, 150.0, 90.0]
    """
    box = torch.as_tensor(np.asarray(box2d, dtype=np.float64))[None]
    return detection_windows(box, margin)[0].numpy()


def pixel_centres(window: np.ndarray, size: int) -> np.ndarray:
    """Image coordinates of the crop's pixel centres.

    Args:
        window: (4,) ``(x0, y0, x1, y1)``. size: pixels per side.
    Returns:
        (size * size, 2) ``(u, v)`` in row-major pixel order.

    >>> pixel_centres(np.array([0.0, 10, 4, 14]), 2).tolist()
    [[1.0, 11.0], [3.0, 11.0], [1.0, 13.0], [3.0, 13.0]]
    """
    x0, y0, x1, y1 = window
    steps = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(x0 + steps * (x1 - x0), y0 + steps * (y1 - y0))
    return np.stack([u.ravel(), v.ravel()], axis=1)


def crop_image(image: np.ndarray, window: np.ndarray, size: int) -> np.ndarray:
    """The window of an image resampled to a square crop, black outside the image.

    Args:
        image: (H, W, 3) uint8. window: (4,) ``(x0, y0, x1, y1)``. size: pixels per side.
    Returns:
        (size, size, 3) uint8.

    >>> image = np.zeros((4, 6, 3), np.uint8); image[:, 3:] = 200
    >>> crop_image(image, np.array([2.5, -0.5, 6.5, 3.5]), 4)[0, :, 0].tolist()  # u = 3 .. 6
    [200, 200, 200, 0]
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (float(value) + 0.5 for value in window)  # PIL: pixel i spans [i, i+1]
    left, top = math.floor(x0) - 1, math.floor(y0) - 1
    right, bottom = math.ceil(x1) + 1, math.ceil(y1) + 1
    canvas = np.zeros((bottom - top, right - left, 3), dtype=np.uint8)
    inner = (slice(max(top, 0), min(bottom, height)), slice(max(left, 0), min(right, width)))
    if inner[0].start < inner[0].stop and inner[1].start < inner[1].stop:
        canvas[inner[0].start - top:inner[0].stop - top,
               inner[1].start - left:inner[1].stop - left] = image[inner]
    box = (x0 - left, y0 - top, x1 - left, y1 - top)
    return resize(canvas, size, box)


def resize(image: np.ndarray, size: int, box: tuple[float, float, float, float] | None = None
           ) -> np.ndarray:
    """(size, size, 3) uint8: a region ``box`` (PIL coordinates; default the whole image) of a
    (H, W, 3) uint8 image, resampled with PIL's antialiased bilinear filter."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR,
                                                    box=box))
