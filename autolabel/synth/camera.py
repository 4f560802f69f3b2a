"""The simulated colour camera: a ray per pixel, shaded from the hit normals, and masks.

Pixel ``(u, v)`` (column, row) is the ray through the point that ``P2`` maps to ``(u, v)``, so
pixel centres sit at integer coordinates, as in KITTI's 2D boxes. Each ray is cast through the
scene's :class:`~autolabel.synth.scene.Raycaster`; the hit car (or the ground, or the sky)
gives the instance map, the hit point's camera z the depth map, and the hit normal, a random
sun, cast shadows, paint, glass, tyres, lane markings and texture noise give the colour.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.ndimage import map_coordinates

from autolabel.extras import require_open3d
from autolabel.geometry import projected_box2d
from autolabel.synth.rig import IMAGE_HEIGHT, IMAGE_WIDTH
from autolabel.synth.scene import PlacedCar, Raycaster, Scene, build_raycaster
from shape_priors.meshes import WHEEL_COLOUR

o3d = require_open3d("scene synthesis")

GROUND = -1  # instance id of ground pixels
SKY = -2  # instance id of pixels whose ray hits nothing
_GLASS = np.array([45.0, 55.0, 70.0])
_LANE_LINES = (-9.0, -5.4, -1.8, 1.8, 5.4, 9.0)  # camera x of the dashed lane lines, metres
_KERB = 12.0  # |x| beyond which the ground is pavement, metres


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    """The image.

    Attributes:
        width, height: image size in pixels (the rig's calibration is for 1242 x 375).
        pixel_noise: standard deviation of the per-pixel colour noise, in 0-255 units.
        sun_elevation: (low, high) radians the sun's elevation is drawn from.
    """

    width: int = IMAGE_WIDTH
    height: int = IMAGE_HEIGHT
    pixel_noise: float = 3.0
    sun_elevation: tuple[float, float] = (math.radians(25.0), math.radians(70.0))


class CameraRender(NamedTuple):
    """What the camera sees.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        instance: (H, W) int64, the car index seen at each pixel, ``GROUND`` or ``SKY``.
        depth: (H, W) float64 camera-frame z of the hit point in metres, 0 for the sky.
        unoccluded: (C,) int64 pixels each car would cover in the image if it were alone.
    """

    image: np.ndarray
    instance: np.ndarray
    depth: np.ndarray
    unoccluded: np.ndarray


def pixel_rays(P2: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera rays through the pixel centres.

    Args:
        P2: (3, 4) projection matrix. width, height: image size in pixels.
    Returns:
        origin: (3,) the optical centre in the rectified frame; directions: (H * W, 3) unit
        vectors in row-major pixel order.

    >>> P = np.array([[100.0, 0, 2, 0], [0, 100, 1, 0], [0, 0, 1, 0]])
    >>> origin, directions = pixel_rays(P, 5, 3)
    >>> directions[1 * 5 + 2].tolist()  # the principal point (u, v) = (2, 1) looks along z
    [0.0, 0.0, 1.0]
    """
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    homogeneous = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    directions = homogeneous @ np.linalg.inv(P2[:, :3]).T
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    origin = -np.linalg.solve(P2[:, :3], P2[:, 3])
    return origin, directions


def box_window(corners: np.ndarray, P2: np.ndarray, width: int, height: int
               ) -> tuple[int, int, int, int] | None:
    """Pixel window ``(u0, v0, u1, v1)`` (end exclusive) covering projected corners, clipped.

    Args:
        corners: (N, 3) camera-frame points in front of the camera. P2: (3, 4).
    Returns:
        The window, or None when it lies outside the image.
    """
    box = projected_box2d(torch.from_numpy(corners), torch.from_numpy(P2)).numpy()
    u0, v0 = np.floor(box[:2]).astype(int)
    u1, v1 = np.ceil(box[2:]).astype(int) + 1
    u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, width), min(v1, height)
    return (int(u0), int(v0), int(u1), int(v1)) if u0 < u1 and v0 < v1 else None


def render_camera(scene: Scene, raycaster: Raycaster, rng: np.random.Generator,
                  config: CameraConfig = CameraConfig()) -> CameraRender:
    """Render the image, instance map and depth map of ``scene``, and each car's full area."""
    origin, directions = pixel_rays(scene.calib.P2, config.width, config.height)
    hits = raycaster.cast(origin, directions)
    hit = np.isfinite(hits["t_hit"])
    points = origin + np.where(hit, hits["t_hit"], 0.0)[:, None] * directions
    depth = np.where(hit, points[:, 2], 0.0)

    light = _sun(rng, config)
    albedo = _albedo(scene, hits, points, rng)
    shadowed = _shadowed(raycaster, points, hits["normal"], light, hit)
    diffuse = np.clip(np.sum(hits["normal"] * light, axis=1), 0.0, None) * ~shadowed
    ambient = rng.uniform(0.35, 0.5)
    colour = albedo * (ambient + (1.0 - ambient) * diffuse)[:, None]
    # A glossy highlight on the cars (Blinn-Phong).
    halfway = light - directions
    halfway /= np.linalg.norm(halfway, axis=1, keepdims=True)
    gloss = np.clip(np.sum(hits["normal"] * halfway, axis=1), 0.0, 1.0) ** 30
    colour += (90.0 * gloss * (hits["car"] >= 0) * ~shadowed)[:, None]
    sky = _sky(config, rng)
    colour = np.where(hit[:, None], colour, sky)
    colour += rng.normal(0.0, config.pixel_noise, colour.shape)
    shape = (config.height, config.width)
    image = np.clip(colour, 0, 255).round().astype(np.uint8).reshape(*shape, 3)
    rays = directions.reshape(*shape, 3)
    unoccluded = np.array([_alone_area(scene, index, origin, rays)
                           for index in range(len(scene.cars))], dtype=np.int64)
    return CameraRender(image, hits["car"].reshape(shape), depth.reshape(shape), unoccluded)


def _sun(rng: np.random.Generator, config: CameraConfig) -> np.ndarray:
    """(3,) unit direction towards the sun in the camera frame (y down)."""
    elevation = rng.uniform(*config.sun_elevation)
    azimuth = rng.uniform(-math.pi, math.pi)
    return np.array([math.cos(elevation) * math.sin(azimuth), -math.sin(elevation),
                     math.cos(elevation) * math.cos(azimuth)])


def _albedo(scene: Scene, hits: dict[str, np.ndarray], points: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """(N, 3) surface colour of each ray's hit (anything for misses)."""
    albedo = np.zeros((len(points), 3))
    ground = hits["car"] == GROUND
    albedo[ground] = ground_colour(points[ground], rng)
    for index, car in enumerate(scene.cars):
        on_car = hits["car"] == index
        albedo[on_car] = _face_colours(car)[hits["face"][on_car]]
    return albedo


def _face_colours(car: PlacedCar) -> np.ndarray:
    """(F, 3) colour of each face: paint, glass above the window line, dark tyres."""
    mesh = car.mesh
    colours = np.tile(car.paint, (len(mesh.faces), 1))
    centres, normals = mesh.triangles_center, mesh.face_normals
    window_line = car.params.window_line - car.params.height / 2
    glass = (centres[:, 2] > window_line + 0.03) & (np.abs(normals[:, 2]) < 0.85)
    colours[glass] = _GLASS
    tyre = (mesh.visual.face_colors[:, :3] == np.array(WHEEL_COLOUR[:3])).all(axis=1)
    colours[tyre] = np.array(WHEEL_COLOUR[:3], dtype=np.float64)
    return colours


def ground_colour(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) RGB in [0, 255] of camera-frame ground points (N, 3): asphalt with lane markings,
    pavement beyond the kerb, a world-fixed texture (also the image model's road backgrounds)."""
    x, z = points[:, 0], points[:, 2]
    texture = rng.normal(0.0, 1.0, (64, 64))  # one value per 0.75 m cell, tiled
    grain = map_coordinates(texture, [x / 0.75, z / 0.75], order=1, mode="grid-wrap")
    asphalt = rng.uniform(85.0, 120.0)
    colour = np.repeat((asphalt * (1.0 + 0.06 * grain))[:, None], 3, axis=1)
    pavement = np.abs(x) > _KERB
    colour[pavement] = np.array([150.0, 145.0, 135.0]) * (1.0 + 0.04 * grain[pavement, None])
    dashes = np.mod(z, 9.0) < 3.0
    for line in _LANE_LINES:
        colour[(np.abs(x - line) < 0.07) & dashes] = 210.0
    return colour


def _shadowed(raycaster: Raycaster, points: np.ndarray, normals: np.ndarray,
              light: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """(N,) bool, whether each hit point is in the shadow of a car."""
    shadowed = np.zeros(len(points), dtype=bool)
    starts = points[hit] + 0.01 * normals[hit]
    rays = np.concatenate([starts, np.broadcast_to(light, starts.shape)], axis=1)
    occluded = raycaster.scene.test_occlusions(o3d.core.Tensor(rays.astype(np.float32)))
    shadowed[hit] = occluded.numpy()
    return shadowed


def _sky(config: CameraConfig, rng: np.random.Generator) -> np.ndarray:
    """(H * W, 3) sky colour: a vertical gradient from blue at the top to haze at the horizon."""
    top = np.array([95.0, 140.0, 200.0]) + rng.normal(0.0, 10.0, 3)
    horizon = np.array([205.0, 215.0, 225.0]) + rng.normal(0.0, 6.0, 3)
    rows = np.linspace(0.0, 1.0, config.height)[:, None]
    gradient = top + (horizon - top) * np.sqrt(rows)
    return np.repeat(gradient, config.width, axis=0)


def _alone_area(scene: Scene, index: int, origin: np.ndarray, rays: np.ndarray) -> int:
    """Pixels the car ``index`` covers in the image when nothing else is in the scene.

    Args:
        origin: (3,) the optical centre. rays: (H, W, 3) the pixels' ray directions.
    """
    height, width = rays.shape[:2]
    window = box_window(scene.cars[index].corners(), scene.calib.P2, width, height)
    if window is None:
        return 0
    u0, v0, u1, v1 = window
    directions = rays[v0:v1, u0:u1]
    alone = build_raycaster(scene, cars=[index], ground=False)
    return int(np.isfinite(alone.cast(origin, directions.reshape(-1, 3))["t_hit"]).sum())
