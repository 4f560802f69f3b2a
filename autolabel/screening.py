"""Detections that cannot be labelled at all, told apart before any fitting.

A box a few pixels across, or one that lies outside the image, says nothing about where an
object is: fitted, it lands hundreds of metres away. Such detections are left out with a
reason instead of being labelled.
"""

from __future__ import annotations

from collections.abc import Sequence


def detection_problem(box2d: Sequence[float], image_size: tuple[int, int],
                      min_side: float) -> str | None:
    """Why a detection cannot be labelled, or None when it can.

    Args:
        box2d: (x1, y1, x2, y2) pixels. image_size: (height, width).
        min_side: the smallest width and height, in pixels, of the box's part inside the
            image.

    >>> detection_problem((10, 10, 60, 40), (375, 1242), 4.0) is None
    True
    >>> detection_problem((10, 10, 11.5, 40), (375, 1242), 4.0)
    'box is 1.5 x 30.0 px inside the image, less than 4 px across'
    >>> detection_problem((1300, 10, 1400, 40), (375, 1242), 4.0)
    'box (1300, 10, 1400, 40) lies outside the 1242 x 375 image'
    """
    height, width = image_size
    x1, y1, x2, y2 = (float(v) for v in box2d)
    inside_width = min(x2, width) - max(x1, 0.0)
    inside_height = min(y2, height) - max(y1, 0.0)
    if inside_width <= 0 or inside_height <= 0:
        box = ", ".join(f"{v:g}" for v in (x1, y1, x2, y2))
        return f"box ({box}) lies outside the {width} x {height} image"
    if min(inside_width, inside_height) < min_side:
        return (f"box is {inside_width:.1f} x {inside_height:.1f} px inside the image, less "
                f"than {min_side:g} px across")
    return None
