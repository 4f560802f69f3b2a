"""A picture of a synthetic frame: the image with every label's 3D box drawn in.

Boxes are drawn as their 12 projected edges, with a cross on the front face (the car's +x
side); the colour says the occlusion level (green 0, yellow 1, orange 2). ``DontCare``
regions are drawn as grey 2D boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from autolabel.geometry import box_corners, project_points
from autolabel.io.kitti import DONT_CARE
from autolabel.label import ObjectLabel

# Corner pairs of the 12 edges (corner order of geometry.box_corners) and the front cross.
_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
          (0, 4), (1, 5), (2, 6), (3, 7))
_FRONT_CROSS = ((0, 7), (3, 4))
_OCCLUSION_COLOURS = ((40, 220, 60), (240, 220, 40), (250, 140, 30), (250, 60, 60))
_DONT_CARE_COLOUR = (150, 150, 150)


def draw_boxes(image: np.ndarray, labels: Sequence[ObjectLabel], P2: np.ndarray,
               width: int = 2) -> Image.Image:
    """The image with the labels' 3D boxes (and DontCare 2D boxes) drawn on it.

    Args:
        image: (H, W, 3) uint8. labels: boxes in the camera frame, in front of the camera.
        P2: (3, 4) projection. width: line width in pixels.
    """
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    for label in labels:
        if label.category == DONT_CARE:
            draw.rectangle([float(v) for v in label.box2d], outline=_DONT_CARE_COLOUR, width=1)
            continue
        corners = box_corners(torch.as_tensor(label.center), torch.as_tensor(label.rotation),
                              torch.as_tensor(label.size))
        pixels = project_points(corners, torch.as_tensor(P2, dtype=corners.dtype))[0].tolist()
        colour = _OCCLUSION_COLOURS[min(int(label.occlusion), 3)]
        for start, end in _EDGES + _FRONT_CROSS:
            draw.line([tuple(pixels[start]), tuple(pixels[end])], fill=colour, width=width)
    return picture
