"""What the image model says about a frame's detections, in the fitter's terms.

The model reads each detection's crop (the fitter's render window, :mod:`~.crops`) and gives
two pieces of evidence the fitter can use:

* a **mask** of the car's visible pixels, pasted back into the image and cut to the
  detection's box: where the detector gave no mask, it stands in for one (silhouette loss,
  occluder masks of farther detections, mask IoU in verification);
* a **viewpoint** distribution over the bins of the observation angle: how probable each
  fitted heading is given what the crop shows, which tells a car's front from its back
  where the LiDAR outline cannot (:func:`viewpoint_cost`);
* a **NOCS map**: for each pixel of the predicted mask, where on the car's box it lies
  (``point / size + 1/2``, the renderer's convention), so the fitter can compare it with its
  render (:class:`autolabel.losses.NocsLoss`); it says where in the image a car's far end is,
  which its points may not.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from autolabel.image.crops import crop_image, crop_window
from autolabel.image.network import predict
from autolabel.image.train import load_image_model
from autolabel.image.viewpoint import bin_centres, decode_angle, observation_angle
from autolabel.io.detections import Detection


@dataclasses.dataclass(frozen=True)
class ImageEvidenceConfig:
    """Which of the image model's predictions the fitter uses (with all off, the image's
    pixels are never read).

    Attributes:
        masks: detections without a mask get the model's predicted one (as their
            silhouette target, and as occluders of farther detections).
        occluders: predicted masks of detections without a mask serve only as occluders:
            the edges of a farther detection that border them go free and their pixels do
            not count in its silhouette (:mod:`autolabel.occlusion`). With amodal boxes
            (``FitConfig.box_extent="box"``) no edge goes free, so without instance masks
            this changes nothing (kitti_dev's benchmark: the same labels).
        camera_only: detections without LiDAR or depth points start from the predicted
            observation angle, placed on the ground (:mod:`autolabel.camera_only`) instead
            of heading along the viewing ray.
        viewpoint_weight: weight of :func:`viewpoint_cost` added to each hypothesis's loss
            when the fitter chooses between the heading hypotheses of a detection with LiDAR
            or depth (0: not used, the default). On kitti_dev (five draws of the jitter) 0.01
            gives 4.2 heading flips a draw among the 47 moderate cars against 3.8 without
            it: it rights rear views the LiDAR fit reads as fronts and turns front views,
            since on real crops the model flips one car in five itself; at 0.1 it overruled
            the LiDAR fit on 9 cars and was wrong on 7 (an older fitter, docs/decisions.md).
            On synthetic frames 0.01 saved one flip.
        weak_viewpoint_weight: the same for weak (box-only) hypotheses, which have no 3D
            evidence of their heading: there the model's viewpoint decides.
        nocs: detections with LiDAR or depth points get the predicted NOCS map on their
            predicted mask as the target of the fit's NOCS term (``FitConfig.weights.nocs``;
            on kitti_dev, five draws, 3D AP@0.7 75.5 with it at 0.1 against 74.9 without).
            Weak (box-only) hypotheses do not: camera-only labels were worse with it
            (BEV AP@0.5 27.8 against 32.4).
        model: the weights file; None for the shipped model.
        mask_threshold: probability above which a pixel is on the predicted mask.
        probability_floor: the smallest viewpoint probability a heading is given, which caps
            the cost of a heading the model rules out (it is wrong now and then).
    """

    masks: bool = False
    occluders: bool = False
    camera_only: bool = True
    viewpoint_weight: float = 0.0
    weak_viewpoint_weight: float = 1.0
    nocs: bool = True
    model: str | None = None
    mask_threshold: float = 0.5
    probability_floor: float = 0.01

    @classmethod
    def off(cls) -> ImageEvidenceConfig:
        """Settings that never run the image model."""
        return cls(masks=False, occluders=False, camera_only=False, viewpoint_weight=0.0,
                   weak_viewpoint_weight=0.0, nocs=False)

    @property
    def enabled(self) -> bool:
        return (self.masks or self.occluders or self.camera_only or self.viewpoint_weight > 0
                or self.weak_viewpoint_weight > 0 or self.nocs)


@dataclasses.dataclass(frozen=True)
class FrameEvidence:
    """The image model's reading of one frame's detections.

    Attributes:
        masks: per detection an (H, W) bool mask, cut to its box; None when the config uses
            no masks (pasting them costs a full-image array per detection).
        viewpoints: (D, K) probabilities of the observation angle's K bins per detection.
        alphas: (D,) the predicted observation angle per detection (the likeliest bin's
            centre plus its residual), radians.
        nocs: (D, S, S, 3) the predicted NOCS maps in the detections' render windows and
            (D, S, S) bool where they hold (the predicted mask); None for both when the
            config uses no NOCS.
    """

    masks: list[np.ndarray] | None
    viewpoints: np.ndarray
    alphas: np.ndarray
    nocs: np.ndarray | None = None
    nocs_valid: np.ndarray | None = None


@functools.cache
def cached_image_model(path: str | None = None):
    """The image model of a weights file (None: the shipped one), loaded once per process;
    :class:`~autolabel.errors.InputError` naming the file when it cannot be read."""
    model, _ = load_image_model(path)
    return model


def _on_one_thread(model, crops: torch.Tensor):
    """The model's prediction computed on one CPU thread, whatever the process uses: the
    thread count changes the last bits of a convolution, and labels must not depend on how
    a run is spread over processes (a camera-only box is placed from the predicted angle)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return predict(model, crops)
    finally:
        torch.set_num_threads(threads)


def paste_mask(probability: np.ndarray, window: np.ndarray, box2d: np.ndarray,
               image_size: tuple[int, int], threshold: float) -> np.ndarray:
    """A crop's mask as a full-image mask: each image pixel inside the detection box takes
    the crop pixel it falls in (nearest), pixels outside the box are off.

    Args:
        probability: (S, S) in [0, 1]. window: (4,) the crop's ``(x0, y0, x1, y1)``.
        box2d: (4,) the detection ``(x1, y1, x2, y2)``. image_size: (height, width).
        threshold: the probability above which a pixel is on.
    Returns:
        (H, W) bool.

    >>> crop = np.zeros((2, 2)); crop[:, 1] = 1.0  # the right half of a 4 x 4 window
    >>> paste_mask(crop, np.array([-0.5, -0.5, 3.5, 3.5]), np.array([0.0, 0, 3, 2]),
    ...            (4, 5), 0.5).astype(int).tolist()
    [[0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 0]]
    """
    height, width = image_size
    size = probability.shape[0]
    x0, y0, x1, y1 = np.asarray(window, dtype=np.float64)
    left, top = max(math.ceil(box2d[0]), 0), max(math.ceil(box2d[1]), 0)
    right, bottom = min(math.floor(box2d[2]), width - 1), min(math.floor(box2d[3]), height - 1)
    mask = np.zeros((height, width), dtype=bool)
    if right < left or bottom < top:
        return mask
    columns = np.floor((np.arange(left, right + 1) - x0) / (x1 - x0) * size).astype(int)
    rows = np.floor((np.arange(top, bottom + 1) - y0) / (y1 - y0) * size).astype(int)
    on = probability > threshold
    mask[top:bottom + 1, left:right + 1] = on[rows.clip(0, size - 1)[:, None],
                                              columns.clip(0, size - 1)[None, :]]
    return mask


def read_frame(image: np.ndarray, detections: Sequence[Detection], margin: float,
               config: ImageEvidenceConfig = ImageEvidenceConfig()) -> FrameEvidence:
    """The image model's masks and viewpoints for a frame's detections.

    Args:
        image: (H, W, 3) uint8. detections: the frame's detections. margin: the render
            window's margin (the crop is the window). config: which model.
    """
    model = cached_image_model(config.model)
    if not detections:
        return FrameEvidence([], np.zeros((0, model.config.bins), dtype=np.float32),
                             np.zeros(0, dtype=np.float32))
    windows = [crop_window(d.box2d, margin) for d in detections]
    crops = torch.from_numpy(np.stack([crop_image(image, w, model.config.size)
                                       for w in windows]))
    prediction = _on_one_thread(model, crops)
    masks = None
    if config.masks or config.occluders:
        probability = torch.sigmoid(prediction.mask_logits).numpy()
        masks = [paste_mask(p, w, d.box2d, image.shape[:2], config.mask_threshold)
                 for p, w, d in zip(probability, windows, detections, strict=True)]
    viewpoints = torch.softmax(prediction.bin_logits, dim=-1).numpy()
    alphas = decode_angle(prediction.bin_logits, prediction.residuals).numpy()
    if not config.nocs:
        return FrameEvidence(masks, viewpoints, alphas)
    on_mask = torch.sigmoid(prediction.mask_logits) > config.mask_threshold
    return FrameEvidence(masks, viewpoints, alphas, prediction.nocs.numpy(), on_mask.numpy())


def viewpoint_cost(viewpoints: Tensor, yaw: Tensor, center: Tensor, floor: float) -> Tensor:
    """Minus the log-probability of boxes' observation angles under the image model: the
    bin probabilities interpolated linearly between bin centres, at least ``floor``.

    Args:
        viewpoints: (B, K) bin probabilities. yaw: (B,) KITTI ``rotation_y``.
        center: (B, 3) box centres in the camera frame. floor: in (0, 1].
    Returns:
        (B,) nats, 0 for a probability of 1.

    >>> probabilities = torch.tensor([[0.7, 0.1, 0.1, 0.1]])  # bin 0 centred on -3 pi / 4
    >>> viewpoint_cost(probabilities, torch.tensor([-3 * math.pi / 4]),
    ...                torch.tensor([[0.0, 1.0, 10.0]]), 0.01).round(decimals=4)
    tensor([0.3567])
    """
    bins = viewpoints.shape[-1]
    alpha = observation_angle(yaw, center)
    position = (alpha - bin_centres(bins, alpha.dtype, alpha.device)[0]) / (2 * math.pi / bins)
    below = position.floor()
    share = position - below
    index = torch.stack([below, below + 1], dim=-1).long() % bins
    low, high = viewpoints.to(alpha.dtype).gather(-1, index).unbind(-1)
    probability = low * (1 - share) + high * share
    return -probability.clamp_min(floor).log()
