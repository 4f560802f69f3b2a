"""What lies behind the cars of a crop: a road scene, a random texture, or a user's image.

* **Road**: per camera ray, the asphalt ground of the synthetic scenes (lane markings, kerb,
  pavement; ``synth.camera.ground_colour``), a backdrop of trees or buildings (a vertical
  plane beyond the car with a random skyline and texture) and a sky gradient.
* **Texture**: a random texture (:func:`autolabel.image.appearance.texture`).
* **Images**: random patches of a folder of the user's own unlabelled pictures
  (``autolabel image-model generate --backgrounds DIR``); never an evaluation set.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import map_coordinates

from autolabel.errors import InputError
from autolabel.image.appearance import Look, texture
from autolabel.io.files import IMAGE_SUFFIXES
from autolabel.synth.camera import ground_colour

_BACKDROP_TEXELS = 96  # side of the backdrop's texture, tiled; one texel per 0.25 m
_MAX_SIDE = 640  # user images are shrunk to this longer side when loaded


def road(origin: np.ndarray, directions: np.ndarray, ground_y: float, backdrop_z: float,
         look: Look, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A road scene along camera rays.

    Args:
        origin: (3,) the rays' origin. directions: (N, 3) unit rays, camera frame.
        ground_y: camera-frame y of the ground plane. backdrop_z: camera z of the backdrop.
        look: the crop's light (the sky takes its colour).
    Returns:
        colour: (N, 3) RGB in [0, 255]; ground: (N, 3) camera-frame ground points of the rays
        that see the ground, NaN for the others.
    """
    count = len(directions)
    down = directions[:, 1] > 1e-6
    t_ground = np.full(count, np.inf)
    t_ground[down] = (ground_y - origin[1]) / directions[down, 1]
    t_back = np.full(count, np.inf)
    ahead = directions[:, 2] > 1e-6
    t_back[ahead] = (backdrop_z - origin[2]) / directions[ahead, 2]
    back_points = origin + np.where(np.isfinite(t_back), t_back, 0.0)[:, None] * directions
    skyline = _skyline(back_points[:, 0], ground_y, rng)
    on_back = np.isfinite(t_back) & (back_points[:, 1] > skyline) & (t_back < t_ground)
    on_ground = np.isfinite(t_ground) & ~on_back
    elevation = np.clip(-directions[:, 1], 0.0, 1.0)[:, None]
    haze = np.array([0.85, 0.88, 0.9]) * rng.uniform(0.8, 1.1)
    colour = 255.0 * np.clip(haze + (look.sky - haze) * np.sqrt(elevation / 0.4), 0.0, 1.0)
    ground = np.full((count, 3), np.nan)
    ground[on_ground] = origin + t_ground[on_ground, None] * directions[on_ground]
    colour[on_ground] = ground_colour(ground[on_ground], rng)
    cells = texture(rng, _BACKDROP_TEXELS)
    coordinates = back_points[on_back][:, [1, 0]].T / 0.25
    colour[on_back] = np.stack([map_coordinates(cells[..., c], coordinates, order=1,
                                                mode="grid-wrap") for c in range(3)], axis=1)
    return colour, ground


def _skyline(x: np.ndarray, ground_y: float, rng: np.random.Generator) -> np.ndarray:
    """(N,) camera-frame y of the backdrop's top edge at camera x (N,): 2 to 14 m above the
    ground, a sum of random waves (tree tops) or blocks (buildings)."""
    height = rng.uniform(3.0, 9.0)
    for _ in range(3):
        period, amplitude = rng.uniform(2.0, 30.0), rng.uniform(0.3, 2.5)
        wave = np.sin(2 * math.pi * x / period + rng.uniform(0, 2 * math.pi))
        height = height + amplitude * (np.sign(wave) if rng.uniform() < 0.5 else wave)
    return ground_y - np.clip(height, 2.0, 14.0)


def load_images(folder: str | Path, limit: int = 200) -> list[np.ndarray]:
    """Up to ``limit`` images of a folder (sorted by name), each (H, W, 3) uint8 with its
    longer side at most 640 px.

    Raises :class:`InputError` when the folder is missing or holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "background folder does not exist")
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(folder, f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    images = []
    for path in files[:limit]:
        try:
            picture = Image.open(path).convert("RGB")
        except OSError as error:
            raise InputError(path, f"cannot read image: {error}") from None
        picture.thumbnail((_MAX_SIDE, _MAX_SIDE))
        images.append(np.asarray(picture))
    return images


def image_patch(images: list[np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float RGB in [0, 255]: a random square of a random image (a tenth to
    all of its shorter side), resampled, flipped left to right half the time."""
    image = images[int(rng.integers(len(images)))]
    height, width = image.shape[:2]
    side = rng.uniform(0.1, 1.0) * min(height, width)
    left, top = rng.uniform(0, width - side), rng.uniform(0, height - side)
    patch = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR,
                                          box=(left, top, left + side, top + side))
    patch = np.asarray(patch, dtype=np.float64)
    return patch[:, ::-1] if rng.uniform() < 0.5 else patch
