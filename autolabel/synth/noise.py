"""Imperfect inputs made from the ground truth: noisy 2D detections and a noisy depth map.

Detections stand in for a 2D instance-segmentation network: each ``Car`` label is found with
probability ``1 - miss_rate``; its box is the ground-truth visible box with every edge moved by
a normal error of ``box_jitter`` pixels; its mask is the car's visible mask eroded or dilated
by up to ``mask_noise`` pixels; its score is high for well-visible cars and lower for occluded
ones. False positives (a Poisson number per frame) are elliptical blobs in the lower part of
the image with low scores. ``DontCare`` regions are never detected.

The depth map stands in for a monocular depth network: the true camera-frame z multiplied by
a per-frame scale error (normal around 1 with spread ``scale_bias``) and by a smooth relative
error field (spread ``relative_noise``), so that the error in metres grows with distance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion, map_coordinates

from autolabel.io.detections import Detection
from autolabel.synth.annotate import CATEGORY, Annotation


@dataclasses.dataclass(frozen=True)
class DetectionNoise:
    """How detections differ from the ground truth.

    Attributes:
        box_jitter: standard deviation of each box edge's error, pixels.
        mask_noise: largest erosion or dilation of a mask, pixels (0 keeps masks exact).
        miss_rate: probability that a car is not detected.
        false_positives: mean number of false detections per frame.
    """

    box_jitter: float = 2.0
    mask_noise: int = 2
    miss_rate: float = 0.05
    false_positives: float = 0.3

    def __post_init__(self) -> None:
        if self.box_jitter < 0 or self.mask_noise < 0 or self.false_positives < 0:
            raise ValueError("box_jitter, mask_noise and false_positives must be >= 0")
        if not 0 <= self.miss_rate <= 1:
            raise ValueError(f"miss_rate must lie in [0, 1], got {self.miss_rate}")


@dataclasses.dataclass(frozen=True)
class DepthNoise:
    """The monocular-depth error model (relative errors, so metres grow with distance).

    Attributes:
        scale_bias: standard deviation of the per-frame scale factor around 1.
        relative_noise: standard deviation of the smooth per-pixel relative error.
        cells: (rows, cols) of the coarse grid the smooth error is interpolated from.
        max_depth: depths beyond this (metres) are left empty (0), as is the sky.
    """

    scale_bias: float = 0.05
    relative_noise: float = 0.03
    cells: tuple[int, int] = (6, 18)
    max_depth: float = 80.0


def noisy_detections(annotations: Sequence[Annotation], instance: np.ndarray,
                     rng: np.random.Generator, noise: DetectionNoise = DetectionNoise()
                     ) -> list[Detection]:
    """Detections of the ``Car`` annotations of a frame, sorted by descending score.

    Args:
        annotations: the frame's labels. instance: (H, W) int instance map (car indices).
    """
    height, width = instance.shape
    detections = []
    for annotation in annotations:
        if annotation.label.category != CATEGORY or rng.uniform() < noise.miss_rate:
            continue
        box = _jitter_box(annotation.label.box2d, rng, noise.box_jitter, width, height)
        mask = _morph(instance == annotation.car, rng, noise.mask_noise)
        score = float(np.clip(rng.beta(8.0, 1.5) * (0.6 + 0.4 * annotation.visible), 0.05, 0.99))
        detections.append(Detection(box, CATEGORY, round(score, 4), mask))
    for _ in range(rng.poisson(noise.false_positives)):
        detections.append(_false_positive(rng, width, height))
    return sorted(detections, key=lambda detection: -detection.score)


def _jitter_box(box: np.ndarray, rng: np.random.Generator, jitter: float, width: int,
                height: int) -> np.ndarray:
    """(4,) ``box`` with normal edge errors, clipped to the image, at least 1 px wide and tall."""
    x1, y1, x2, y2 = box + rng.normal(0.0, jitter, 4)
    x1, x2 = np.clip(min(x1, x2), 0, width - 2), np.clip(max(x1, x2), 1, width - 1)
    y1, y2 = np.clip(min(y1, y2), 0, height - 2), np.clip(max(y1, y2), 1, height - 1)
    x2, y2 = max(x2, x1 + 1.0), max(y2, y1 + 1.0)
    return np.round(np.array([x1, y1, x2, y2]), 2)


def _morph(mask: np.ndarray, rng: np.random.Generator, largest: int) -> np.ndarray:
    """(H, W) ``mask`` dilated or eroded by a random number of pixels in [-largest, largest].

    An erosion that would empty the mask is not applied.
    """
    steps = int(rng.integers(-largest, largest + 1))
    if steps > 0:
        return binary_dilation(mask, iterations=steps)
    if steps < 0:
        eroded = binary_erosion(mask, iterations=-steps)
        return eroded if eroded.any() else mask
    return mask


def _false_positive(rng: np.random.Generator, width: int, height: int) -> Detection:
    """A low-scoring elliptical blob somewhere below the horizon."""
    box_height = rng.uniform(0.04, 0.24) * height  # 15 to 90 px in a KITTI image
    box_width = min(box_height * rng.uniform(1.0, 2.5), width - 1.0)
    x1 = rng.uniform(0.0, width - box_width)
    y1 = rng.uniform(0.45 * height, height - box_height)
    box = np.round(np.array([x1, y1, x1 + box_width, y1 + box_height]), 2)
    rows, cols = np.mgrid[0:height, 0:width]
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    mask = (((cols - centre_x) / (box_width / 2)) ** 2
            + ((rows - centre_y) / (box_height / 2)) ** 2) <= 1.0
    return Detection(box, CATEGORY, round(float(rng.beta(2.0, 5.0)), 4), mask)


def noisy_depth(depth: np.ndarray, rng: np.random.Generator,
                noise: DepthNoise = DepthNoise()) -> np.ndarray:
    """A monocular-depth-like map from the true depth.

    Args:
        depth: (H, W) true camera-frame z, metres, 0 where there is no surface.
    Returns:
        (H, W) metres, 0 for no value (no surface, or beyond ``noise.max_depth``).
    """
    height, width = depth.shape
    coarse = rng.normal(0.0, noise.relative_noise, noise.cells)
    rows = np.linspace(0.0, noise.cells[0] - 1.0, height)
    cols = np.linspace(0.0, noise.cells[1] - 1.0, width)
    grid = np.meshgrid(rows, cols, indexing="ij")
    field = map_coordinates(coarse, grid, order=3, mode="nearest")
    scale = rng.normal(1.0, noise.scale_bias)
    noisy = depth * scale * (1.0 + field)
    return np.where((depth > 0) & (noisy > 0) & (noisy <= noise.max_depth), noisy, 0.0)
