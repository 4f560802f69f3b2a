"""Domain randomisation: the light, the car's materials, and the camera's artefacts.

Shading is a cheap physically-minded mix evaluated per hit in the camera frame (y down):
albedo times (ambient + light colour x Lambert), a Blinn-Phong highlight, and a mirror
reflection of a random environment map (sky above a band of trees or buildings, the ground
below) weighted by Schlick's Fresnel term, so that glass reads dark with bright reflections
and paint mirrors the street at grazing angles. Everything that is not geometry is drawn per
crop: light direction and colour, the environment, paint colour and gloss, glass tint, how
dark the tyres and trim are.
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
from PIL import Image, ImageFilter

from autolabel.image.cars import (
    GLASS,
    HEAD_LIGHT,
    MATERIALS,
    PAINT,
    PLATE,
    RIM,
    TAIL_LIGHT,
    TRIM,
    TYRE,
)

# Paint colours (RGB in [0, 1]) drawn with a small spread; the last entry stands for any hue.
_PAINTS = ((0.82, 0.82, 0.84), (0.08, 0.08, 0.09), (0.45, 0.47, 0.5), (0.62, 0.08, 0.08),
           (0.1, 0.2, 0.5), (0.93, 0.93, 0.9), (0.2, 0.35, 0.22), (0.55, 0.42, 0.25),
           (0.3, 0.3, 0.34), (0.75, 0.6, 0.15))


@dataclasses.dataclass(frozen=True, eq=False)
class Look:
    """The light and materials of one crop (colours RGB in [0, 1] unless stated).

    Attributes:
        light: (3,) unit direction towards the sun, camera frame.
        light_colour, ambient: (3,) the sun's and the sky's illumination.
        sky: (3,) the sky's colour.
        environment: (E, 2E, 3) what reflections show: rows from straight up to straight down,
            columns the azimuth around the camera's y axis.
        albedo: (M, 3) base colour of each material (``cars.MATERIALS``).
        reflectance: (M,) Fresnel reflectance at normal incidence of each material.
        gloss: strength of the highlight; shininess: its Blinn-Phong exponent.
    """

    light: np.ndarray
    light_colour: np.ndarray
    ambient: np.ndarray
    sky: np.ndarray
    environment: np.ndarray
    albedo: np.ndarray
    reflectance: np.ndarray
    gloss: float
    shininess: float


def draw_look(rng: np.random.Generator) -> Look:
    """A random light and set of materials."""
    elevation, azimuth = rng.uniform(0.15, 1.35), rng.uniform(-math.pi, math.pi)
    light = np.array([math.cos(elevation) * math.sin(azimuth), -math.sin(elevation),
                      math.cos(elevation) * math.cos(azimuth)])
    warmth = rng.uniform(-0.15, 0.15)
    light_colour = rng.uniform(0.6, 1.3) * np.array([1 + warmth, 1.0, 1 - warmth])
    sky = np.clip(rng.normal([0.6, 0.7, 0.85], 0.12), 0.05, 1.0)
    paint = np.array(_PAINTS[int(rng.integers(len(_PAINTS)))])
    if rng.uniform() < 0.2:
        paint = rng.uniform(0.0, 1.0, 3)
    albedo = np.empty((len(MATERIALS), 3))
    albedo[PAINT] = np.clip(paint + rng.normal(0, 0.04, 3), 0.0, 1.0)
    albedo[GLASS] = rng.uniform(0.02, 0.12) * np.array([0.9, 1.0, 1.1])
    albedo[TYRE] = rng.uniform(0.03, 0.1)
    albedo[TAIL_LIGHT] = np.array([rng.uniform(0.5, 0.9), rng.uniform(0.02, 0.12), 0.05])
    albedo[HEAD_LIGHT] = rng.uniform(0.6, 0.95) * np.array([1.0, 1.0, rng.uniform(0.85, 1.0)])
    albedo[PLATE] = rng.uniform(0.7, 0.95) * np.array([1.0, 1.0, rng.uniform(0.8, 1.0)])
    albedo[TRIM] = rng.uniform(0.03, 0.2) if rng.uniform() < 0.8 else albedo[PAINT]
    albedo[RIM] = rng.uniform(0.35, 0.8) if rng.uniform() < 0.7 else rng.uniform(0.05, 0.2)
    reflectance = np.array([rng.uniform(0.02, 0.2), rng.uniform(0.15, 0.5), 0.01,
                            0.1, 0.3, 0.02, 0.03, 0.1])
    return Look(light, light_colour, rng.uniform(0.25, 0.55) * sky / sky.mean(), sky,
                _environment(rng, sky), albedo, reflectance, float(rng.uniform(0.0, 0.8)),
                float(rng.uniform(8.0, 60.0)))


def shade(material: np.ndarray, normal: np.ndarray, direction: np.ndarray, look: Look,
          in_shadow: np.ndarray | None = None) -> np.ndarray:
    """Colours of surface hits.

    Args:
        material: (N,) material ids. normal: (N, 3) unit normals facing the camera, camera
            frame. direction: (N, 3) unit view rays (camera to surface). look: light and
            materials. in_shadow: (N,) bool, hits the sun does not reach (None: all lit).
    Returns:
        (N, 3) RGB in [0, 255] (not clipped).
    """
    lit = np.ones(len(normal)) if in_shadow is None else (~in_shadow).astype(np.float64)
    lambert = np.clip(normal @ look.light, 0.0, None) * lit
    colour = look.albedo[material] * (look.ambient + lambert[:, None] * look.light_colour)
    halfway = look.light - direction
    halfway /= np.linalg.norm(halfway, axis=1, keepdims=True)
    highlight = np.clip(np.sum(normal * halfway, axis=1), 0.0, 1.0) ** look.shininess
    gloss = look.gloss * (material != TYRE) * lit
    colour += (gloss * highlight)[:, None] * look.light_colour
    cosine = np.clip(-np.sum(normal * direction, axis=1), 0.0, 1.0)
    base = look.reflectance[material]
    fresnel = base + (1.0 - base) * (1.0 - cosine) ** 5
    mirrored = direction - 2.0 * np.sum(direction * normal, axis=1, keepdims=True) * normal
    rows, columns = look.environment.shape[:2]
    row = np.arccos(np.clip(-mirrored[:, 1], -1.0, 1.0)) / math.pi * (rows - 1)  # y is down
    column = (np.arctan2(mirrored[:, 0], mirrored[:, 2]) + math.pi) / (2 * math.pi) * columns
    environment = look.environment[row.round().astype(int),
                                   column.astype(int) % columns]
    colour = (1.0 - fresnel[:, None]) * colour + fresnel[:, None] * environment
    return 255.0 * colour


def _environment(rng: np.random.Generator, sky: np.ndarray, rows: int = 16) -> np.ndarray:
    """(rows, 2 rows, 3) environment map in [0, 1]: the sky down to a horizon band of random
    texture (trees, buildings) of random height, grey ground below the horizon."""
    elevation = np.linspace(0.0, 1.0, rows)[:, None, None]  # 0 straight up, 1 straight down
    band = texture(rng, 2 * rows)[:rows] / 255.0
    skyline = 0.5 - rng.uniform(0.05, 0.3) * fractal_noise(rng, 2 * rows, octaves=3)[:1]
    ground = np.clip(rng.uniform(0.15, 0.45) + rng.normal(0, 0.04, 3), 0.0, 1.0)
    above = (elevation[..., 0] < skyline)[..., None]
    return np.where(above, sky, np.where(elevation < 0.5, band, ground))


def fractal_noise(rng: np.random.Generator, size: int, octaves: int = 5) -> np.ndarray:
    """(size, size) values in [0, 1]: random grids of 2, 4, 8 ... cells, upsampled and summed
    with halving weights, then stretched to the full range."""
    total = np.zeros((size, size))
    for octave in range(octaves):
        cells = 2 ** (octave + 1)
        grid = rng.uniform(0.0, 1.0, (cells, cells)).astype(np.float32)
        total += 0.5 ** octave * np.asarray(
            Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC))
    low, high = total.min(), total.max()
    return (total - low) / max(high - low, 1e-9)


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float RGB in [0, 255]: fractal noise through a palette of three random
    colours (muted most of the time), with stripes in a random direction a third of the time."""
    value = fractal_noise(rng, size, octaves=int(rng.integers(2, 7)))
    if rng.uniform() < 1 / 3:
        rows, cols = np.mgrid[0:size, 0:size]
        angle, period = rng.uniform(0, math.pi), rng.uniform(3.0, size / 2)
        phase = (cols * math.cos(angle) + rows * math.sin(angle)) / period
        value = 0.5 * value + 0.5 * (np.sin(2 * math.pi * phase) > 0)
    palette = rng.uniform(0.0, 255.0, (3, 3))
    if rng.uniform() < 0.6:  # muted: foliage, walls, asphalt, sky rather than any colour
        grey = palette.mean(axis=1, keepdims=True)
        palette = grey + 0.3 * (palette - grey)
    weights = np.stack([(1 - value) ** 2, 2 * value * (1 - value), value ** 2], axis=-1)
    return weights @ palette


@dataclasses.dataclass(frozen=True)
class Artefacts:
    """Camera and processing artefacts applied to a finished crop.

    Attributes:
        exposure: (low, high) factor on all values; gamma: (low, high) exponent on [0, 1]
            values; white_balance: standard deviation of the per-channel gain.
        blur: (low, high) standard deviation of a Gaussian blur, pixels.
        noise: (low, high) standard deviation of per-pixel noise, 0-255 units.
        jpeg: probability of a JPEG round trip; jpeg_quality: (low, high) its quality.
    """

    exposure: tuple[float, float] = (0.6, 1.5)
    gamma: tuple[float, float] = (0.75, 1.35)
    white_balance: float = 0.06
    blur: tuple[float, float] = (0.0, 1.2)
    noise: tuple[float, float] = (0.0, 8.0)
    jpeg: float = 0.6
    jpeg_quality: tuple[int, int] = (25, 95)


def degrade(image: np.ndarray, rng: np.random.Generator,
            artefacts: Artefacts = Artefacts()) -> np.ndarray:
    """(S, S, 3) uint8: a rendered (S, S, 3) crop in [0, 255] (float) after random exposure,
    gamma, white balance, blur, noise and JPEG compression."""
    gain = rng.uniform(*artefacts.exposure) * rng.normal(1.0, artefacts.white_balance, 3)
    values = np.clip(image * gain / 255.0, 0.0, 1.0) ** rng.uniform(*artefacts.gamma)
    picture = Image.fromarray((255.0 * values).round().astype(np.uint8))
    radius = rng.uniform(*artefacts.blur)
    if radius > 0.2:
        picture = picture.filter(ImageFilter.GaussianBlur(radius))
    noisy = np.asarray(picture, dtype=np.float64)
    noisy += rng.normal(0.0, rng.uniform(*artefacts.noise), noisy.shape)
    picture = Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8))
    if rng.uniform() < artefacts.jpeg:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=int(rng.integers(*artefacts.jpeg_quality)))
        picture = Image.open(buffer)
    return np.asarray(picture.convert("RGB"))
