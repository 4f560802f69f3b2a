"""Contact sheets of crops with the image model's predictions, for a quick look.

Each crop gets two tiles: the crop with the predicted mask's outline (green) and a compass in
its corner, and the predicted NOCS map (x, y, z as red, green, blue) on the predicted mask.
The compass is a bird's-eye view with the camera's ray pointing up: the car's forward axis
is drawn at angle ``alpha`` from the right (``alpha = 0`` points right, ``-pi/2`` away from
the camera), predicted in yellow, true (when known) in cyan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from autolabel.image.network import ImagePrediction
from autolabel.image.viewpoint import decode_angle

_CAPTION = 14  # pixels of caption under each pair of tiles


def outline(mask: np.ndarray) -> np.ndarray:
    """(S, S) bool, the pixels of a (S, S) bool mask with a 4-neighbour outside it.

    >>> outline(np.pad(np.ones((3, 3), bool), 1)).astype(int)[1:4, 1:4].tolist()
    [[1, 1, 1], [1, 0, 1], [1, 1, 1]]
    """
    padded = np.pad(mask, 1)
    inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inner


def contact_sheet(images: np.ndarray, prediction: ImagePrediction,
                  alpha: np.ndarray | None = None, captions: Sequence[str] | None = None,
                  columns: int = 6, scale: int = 2) -> Image.Image:
    """A grid of crops and their predictions (see the module docstring).

    Args:
        images: (N, S, S, 3) uint8 crops. prediction: the model's output for them.
        alpha: (N,) true observation angles, or None. captions: N lines under the tiles
            (default: the predicted and true angle in degrees).
        columns: crops per row. scale: tile magnification.
    """
    count, size = images.shape[:2]
    predicted = decode_angle(prediction.bin_logits, prediction.residuals).numpy()
    masks = (prediction.mask_logits > 0).numpy()
    nocs = prediction.nocs.numpy()
    tile = size * scale
    rows = max(1, math.ceil(count / columns))
    sheet = Image.new("RGB", (columns * 2 * tile, rows * (tile + _CAPTION)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index in range(count):
        left = (index % columns) * 2 * tile
        top = (index // columns) * (tile + _CAPTION)
        crop = images[index].copy()
        crop[outline(masks[index])] = (0, 255, 0)
        coloured = np.where(masks[index][..., None], nocs[index] * 255, 0).astype(np.uint8)
        for offset, picture in ((0, crop), (tile, coloured)):
            sheet.paste(Image.fromarray(picture).resize((tile, tile), Image.Resampling.NEAREST),
                        (left + offset, top))
        centre, radius = (left + 10 * scale, top + 10 * scale), 8 * scale
        draw.ellipse([centre[0] - radius, centre[1] - radius, centre[0] + radius,
                      centre[1] + radius], outline=(255, 255, 255))
        truth = None if alpha is None else float(alpha[index])
        for angle, colour in ((truth, (0, 255, 255)), (float(predicted[index]), (255, 255, 0))):
            if angle is not None:
                draw.line([centre, (centre[0] + radius * math.cos(angle),
                                    centre[1] + radius * math.sin(angle))], fill=colour,
                          width=2)
        caption = (captions[index] if captions is not None else
                   f"pred {math.degrees(predicted[index]):.0f}"
                   + ("" if truth is None else f"  true {math.degrees(truth):.0f}"))
        draw.text((left + 4, top + tile + 1), caption, fill=(0, 0, 0))
    return sheet
