"""Ground-truth ``label_2`` entries of a rendered scene, with KITTI's bookkeeping fields.

* 2D box: the bounding box of the car's *visible* pixels (pixel centres, so it is truncated
  by the image edge and shrunk by occluders, as KITTI's annotators drew them).
* truncation: the fraction of the area of the projected 3D box that lies outside the image
  (the image spans pixel centres 0 .. W-1 and 0 .. H-1).
* occlusion: from the visible fraction ``f`` = visible pixels / pixels the car would cover in
  the image with nothing in front of it: level 0 (fully visible) when ``f >= 0.85``, 1 (partly
  occluded) when ``f >= 0.5``, 2 (largely occluded) otherwise. Level 3 (unknown) is not used.
* cars with fewer than ``min_pixels`` visible pixels, or whose visible box is less than
  ``min_box`` pixels wide or tall, become ``DontCare`` regions; cars not seen at all are not
  written.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import torch

from autolabel.classes import DONT_CARE
from autolabel.geometry import projected_box2d
from autolabel.label import ObjectLabel
from autolabel.synth.camera import CameraRender
from autolabel.synth.scene import Scene

CATEGORY = "Car"


@dataclasses.dataclass(frozen=True)
class AnnotateConfig:
    """Thresholds of the labels; see the module docstring."""

    min_pixels: int = 40
    min_box: float = 3.0
    fully_visible: float = 0.85
    partly_occluded: float = 0.5


class Annotation(NamedTuple):
    """One label of a frame and the car it belongs to.

    Attributes:
        car: index of the car in ``scene.cars``.
        label: the ground-truth label (category ``Car`` or ``DontCare``).
        visible: visible pixels / unoccluded pixels in the image, in [0, 1].
    """

    car: int
    label: ObjectLabel
    visible: float


def visible_box(mask: np.ndarray) -> np.ndarray:
    """(4,) ``(x1, y1, x2, y2)`` of the pixel centres of a non-empty (H, W) bool mask.

    >>> visible_box(np.array([[0, 0, 0], [0, 1, 1]], dtype=bool)).tolist()
    [1.0, 1.0, 2.0, 1.0]
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def truncation(box: np.ndarray, width: int, height: int) -> float:
    """Fraction of the area of ``box`` (x1, y1, x2, y2) outside the image's pixel centres.

    >>> truncation(np.array([-10.0, 0.0, 10.0, 5.0]), width=100, height=50)
    0.5
    """
    x1, y1, x2, y2 = box
    inside = (max(0.0, min(x2, width - 1.0) - max(x1, 0.0))
              * max(0.0, min(y2, height - 1.0) - max(y1, 0.0)))
    area = (x2 - x1) * (y2 - y1)
    return float(1.0 - inside / area) if area > 0 else 1.0


def annotate(scene: Scene, render: CameraRender,
             config: AnnotateConfig = AnnotateConfig()) -> list[Annotation]:
    """The labels of every car that is seen in ``render``, in the order of ``scene.cars``."""
    height, width = render.instance.shape
    annotations = []
    for index, car in enumerate(scene.cars):
        mask = render.instance == index
        pixels = int(mask.sum())
        if pixels == 0:
            continue
        box = visible_box(mask)
        visible = min(1.0, pixels / max(int(render.unoccluded[index]), 1))
        projected = projected_box2d(torch.from_numpy(car.corners()),
                                    torch.from_numpy(scene.calib.P2)).numpy()
        small = (pixels < config.min_pixels or box[2] - box[0] < config.min_box
                 or box[3] - box[1] < config.min_box)
        occlusion = (0 if visible >= config.fully_visible
                     else 1 if visible >= config.partly_occluded else 2)
        label = ObjectLabel.upright(
            DONT_CARE if small else CATEGORY, box, car.center, car.yaw, car.size,
            truncation=round(truncation(projected, width, height), 2), occlusion=occlusion)
        annotations.append(Annotation(index, label, visible))
    return annotations
