"""The image model: a small U-Net that reads a detection crop and predicts the car's visible
mask, its NOCS map and its observation angle.

The encoder halves the resolution at every stage (a strided stem, then one strided and one
plain 3 x 3 convolution per stage, each followed by batch norm and ReLU). The decoder climbs
back with skip connections to half the crop's resolution, where a 1 x 1 convolution gives a
mask logit and three NOCS channels that are upsampled bilinearly to the crop (masks and NOCS
maps are smooth; the last doubling would cost as much as the rest of the network). The
viewpoint head reads the flattened coarsest features (their layout tells which way the car
points) and gives per bin a score and a residual (:mod:`autolabel.image.viewpoint`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclasses.dataclass(frozen=True)
class ImageModelConfig:
    """The network's knobs.

    Attributes:
        size: crop side in pixels (a multiple of 2 ** len(widths)).
        widths: channels of the encoder stages, from the stem (half resolution) down.
        decoder_widths: channels of the decoder stages, from the coarsest up; one fewer than
            ``widths``.
        hidden: width of the viewpoint head's hidden layer.
        bins: K, the number of viewpoint bins.
    """

    size: int = 64
    widths: tuple[int, ...] = (24, 48, 96, 160)
    decoder_widths: tuple[int, ...] = (64, 48, 32)
    hidden: int = 128
    bins: int = 24

    def __post_init__(self) -> None:
        if len(self.decoder_widths) != len(self.widths) - 1:
            raise ValueError(f"need {len(self.widths) - 1} decoder widths for "
                             f"{len(self.widths)} encoder stages, got {self.decoder_widths}")
        if self.size % 2 ** len(self.widths):
            raise ValueError(f"size {self.size} is not a multiple of {2 ** len(self.widths)}")


class ImagePrediction(NamedTuple):
    """The network's output for B crops of S x S pixels.

    Attributes:
        mask_logits: (B, S, S) logits of the car's visible mask.
        nocs: (B, S, S, 3) NOCS coordinates in [0, 1] (meaningful on the mask).
        bin_logits: (B, K) viewpoint bin scores.
        residuals: (B, K) per-bin residuals in bin widths.
    """

    mask_logits: Tensor
    nocs: Tensor
    bin_logits: Tensor
    residuals: Tensor


def _conv(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(outputs), nn.ReLU(inplace=True))


class ImageModel(nn.Module):
    """Mask, NOCS and viewpoint from crops (see the module docstring)."""

    def __init__(self, config: ImageModelConfig = ImageModelConfig()):
        super().__init__()
        self.config = config
        widths = (3,) + config.widths
        self.encoder = nn.ModuleList(
            nn.Sequential(_conv(widths[i], widths[i + 1], stride=2),
                          _conv(widths[i + 1], widths[i + 1]))
            for i in range(len(config.widths)))
        ups = (config.widths[-1],) + config.decoder_widths
        skips = config.widths[-2::-1]
        self.decoder = nn.ModuleList(
            nn.Sequential(_conv(ups[i] + skips[i], ups[i + 1]), _conv(ups[i + 1], ups[i + 1]))
            for i in range(len(config.decoder_widths)))
        self.dense_head = nn.Conv2d(config.decoder_widths[-1], 4, 1)
        coarsest = config.size // 2 ** len(config.widths)
        self.view_head = nn.Sequential(
            nn.Flatten(), nn.Linear(config.widths[-1] * coarsest ** 2, config.hidden),
            nn.ReLU(inplace=True), nn.Linear(config.hidden, 2 * config.bins))

    def forward(self, images: Tensor) -> ImagePrediction:
        """images: (B, 3, S, S) RGB in [0, 1] (see :func:`to_input`)."""
        features = []
        x = images - 0.5
        for stage in self.encoder:
            x = stage(x)
            features.append(x)
        view = self.view_head(x)
        for stage, skip in zip(self.decoder, features[-2::-1], strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
        dense = F.interpolate(self.dense_head(x), size=images.shape[-2:], mode="bilinear",
                              align_corners=False)
        bins = self.config.bins
        return ImagePrediction(dense[:, 0], torch.sigmoid(dense[:, 1:]).permute(0, 2, 3, 1),
                               view[:, :bins], view[:, bins:])


def to_input(images: Tensor) -> Tensor:
    """(B, 3, S, S) float in [0, 1] from (B, S, S, 3) uint8 crops."""
    return images.permute(0, 3, 1, 2).float() / 255.0


@torch.inference_mode()
def predict(model: ImageModel, crops: Tensor, batch: int = 256) -> ImagePrediction:
    """The model's predictions for crops (N, S, S, 3) uint8, in batches, without gradients;
    the model is left in the mode it was in."""
    training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts = [model(to_input(chunk.to(device))) for chunk in crops.split(batch)]
    model.train(training)
    return ImagePrediction(*(torch.cat(field) for field in zip(*parts, strict=True)))
