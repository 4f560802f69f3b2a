"""Acceptance score of a fitted label, and the reasons behind it.

The score in [0, 1] is the mean of the evidence terms that apply to an object:

* image agreement: IoU of the shape's projected extent with the detection box, or of the
  rendered silhouette with the instance mask when there is one;
* 3D agreement: the fraction of the object's observed points (LiDAR or depth) within
  ``inlier_distance`` of the fitted surface;
* plausibility: the chi-square survival probability of the latent's squared Mahalanobis
  distance under the prior, i.e. how typical the shape is of the training shapes.

A label is accepted when its score reaches ``threshold``, its optimisation stayed finite,
and it has 3D evidence (a label from the 2D box alone is *weak* and says so). Every term
below its own bar adds a reason, so a rejected label explains itself.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    """Thresholds of verification.

    Attributes:
        threshold: minimum score to accept a label.
        min_image_iou: image agreement below this is given as a reason.
        min_inlier_fraction: 3D agreement below this is given as a reason.
        min_plausibility: plausibility below this is given as a reason.
        inlier_distance: metres (for the documentation; the fitter counts at 0.2 m).
        accept_weak: accept labels without 3D evidence when their score passes.
    """

    threshold: float = 0.5
    min_image_iou: float = 0.5
    min_inlier_fraction: float = 0.5
    min_plausibility: float = 0.01
    inlier_distance: float = 0.2
    accept_weak: bool = False


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Verification of one object."""

    score: float
    accepted: bool
    reasons: tuple[str, ...]
    evidence: dict[str, float]


def box_iou_2d(a: Tensor, b: Tensor) -> Tensor:
    """IoU of axis-aligned boxes paired row by row.

    Args:
        a: (B, 4) and b: (B, 4) as (x1, y1, x2, y2).
    Returns:
        (B,) in [0, 1].

    >>> box_iou_2d(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 0, 3, 2]])).tolist()
    [0.3333333432674408]
    """
    low = torch.maximum(a[:, :2], b[:, :2])
    high = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (high - low).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-9)


def mask_iou(silhouette: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
    """IoU (B,) of binarised silhouettes (B, S, S) and masks (B, S, S), over the pixels of
    positive ``weight`` (B, S, S) (all pixels when None)."""
    a, b = silhouette > 0.5, mask > 0.5
    counted = torch.ones_like(a) if weight is None else weight > 0
    return (a & b & counted).sum((-1, -2)) / ((a | b) & counted).sum((-1, -2)).clamp(min=1)


def plausibility(mahalanobis_sq: Tensor, latent_size: int) -> Tensor:
    """Chi-square survival probability (B,) of squared Mahalanobis distances with D dims.

    >>> round(float(plausibility(torch.tensor([0.0]), 8)[0]), 3)
    1.0
    """
    return torch.special.gammaincc(torch.tensor(latent_size / 2), mahalanobis_sq / 2)


def verify(image_iou: float, inlier_fraction: float, plausible: float, finite: bool,
           weak: bool, config: VerifyConfig = VerifyConfig()) -> Verdict:
    """Score and reasons of one fitted object.

    Args:
        image_iou: box or mask IoU in [0, 1]. inlier_fraction: in [0, 1], NaN without
            points. plausible: prior plausibility in [0, 1]. finite: the fit stayed finite.
        weak: the label has no 3D evidence (2D box and class statistics only).
    Returns:
        :class:`Verdict`.
    """
    evidence = {"image_iou": image_iou, "plausibility": plausible}
    if not math.isnan(inlier_fraction):
        evidence["inlier_fraction"] = inlier_fraction
    reasons = []
    if not finite:
        reasons.append("optimisation diverged (non-finite loss); initial box kept")
    if image_iou < config.min_image_iou:
        reasons.append(f"projected shape disagrees with the detection (IoU {image_iou:.2f} "
                       f"< {config.min_image_iou})")
    if "inlier_fraction" in evidence and inlier_fraction < config.min_inlier_fraction:
        reasons.append(f"only {100 * inlier_fraction:.0f}% of the object's points lie within "
                       f"{config.inlier_distance} m of the fitted surface")
    if plausible < config.min_plausibility:
        reasons.append(f"implausible shape (prior probability {plausible:.3f})")
    if weak:
        reasons.append("weak label: no LiDAR or depth points, pose from the 2D box and class "
                       "size statistics")
    score = sum(evidence.values()) / len(evidence) if finite else 0.0
    score = min(max(score, 0.0), 1.0)
    if score < config.threshold:
        reasons.append(f"score {score:.2f} below the acceptance threshold {config.threshold}")
    accepted = finite and score >= config.threshold and (config.accept_weak or not weak)
    return Verdict(score, accepted, tuple(reasons), evidence)
