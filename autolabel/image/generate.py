"""One training crop of a procedural car with its free targets, from a random generator.

The car stands on the ground of KITTI's camera rig (:mod:`autolabel.synth.rig`): its centre
depth is log-uniform over ``distance`` (so image heights spread evenly in scale, from about
270 px down to about 15 px), its lateral position anywhere in the field of view or a little
beyond (cars cut by the image border). Its observation angle is uniform over the circle, or,
for a share ``road_aligned`` of the cars, it heads along the road (towards or away from the
camera, as most cars on a road do), so that the front and rear views a road shows most are
seen more often; with the camera's height the distance then decides how much of the car's top
is seen, as on a road. A small random tilt stands for slopes and camera pitch.

Layers, back to front: a background (a road scene, a random texture or a patch of the user's
images), other cars behind, the car, maybe a car in front, maybe flat occluders (poles, walls,
foliage) in front of everything; pixels outside the image are black, as in a real crop. The
detection box is the image box of the car's 3D box (what KITTI's ``label_2`` holds), or
sometimes the box of its visible pixels (what a 2D detector reports), with every edge
jittered; the crop is that box's window (:mod:`autolabel.image.crops`). The picture is cast at
about the window's resolution in the image (at most ``max_render`` pixels a side) and
resampled to the crop, so far cars are as blurred as in a real crop; then light, materials
and camera artefacts are randomised (:mod:`autolabel.image.appearance`).

Targets, cast sharply at the crop's own pixel centres: the visible mask of the car, its NOCS
map (the renderer's convention, 0 off the mask), its observation angle and its shape code.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np
import torch

from autolabel.geometry import box_corners, rotation_to_yaw, yaw_to_rotation
from autolabel.image import backgrounds
from autolabel.image.appearance import Artefacts, Look, degrade, draw_look, shade
from autolabel.image.cars import PoolCar, cast, materials, nocs, shadowed
from autolabel.image.crops import crop_window, pixel_centres, resize
from autolabel.image.viewpoint import observation_angle
from autolabel.synth.annotate import truncation
from autolabel.synth.rig import IMAGE_HEIGHT, IMAGE_WIDTH, ground_y, kitti_calib

BACKGROUNDS = ("road", "texture", "images")
# Bumped whenever the same seed and settings draw different crops (a crop folder records it,
# so that a resumed generation never mixes crops of two versions). 2: environment
# reflections, road-aligned headings.
GENERATOR_VERSION = 2


@dataclasses.dataclass(frozen=True)
class CropConfig:
    """How crops are drawn (the window's size and margin are the fitter's render window's).

    Attributes:
        size: crop side in pixels. margin: fraction of the box's longer side added on each
            side of the window.
        distance: (near, far) metres; the car's centre depth is log-uniform in between.
        beyond_view: metres the car's centre may lie beyond the image's left or right edge.
        max_truncation: largest share of the car's image box outside the image.
        min_height: pixels; smallest height of the car's image box inside the image.
        min_visible: smallest share of the car's in-image pixels left visible by occluders.
        road_aligned: share of cars heading along the road (yaw +-pi/2 with a normal spread
            of ``road_spread`` radians) rather than at a uniform observation angle.
        tilt: standard deviation of the car's pitch and roll, radians.
        box_jitter: (pixels, fraction of the box's longer side): standard deviation of each
            box edge's error is ``pixels + fraction * side``.
        visible_box: probability that the detection box is the box of the visible pixels
            rather than the image box of the 3D box.
        front_car: probability of a car between the camera and the car.
        back_cars: probability of one or two cars behind the car.
        flat_occluders: probability of one or two flat occluders in front.
        backgrounds: weights of the ``BACKGROUNDS`` (road, texture, images; the last is
            skipped when no images are given).
        max_render: largest side, pixels, at which the picture is cast before resampling.
        artefacts: the camera artefacts.
        attempts: draws of a scene before giving up.
    """

    size: int = 64
    margin: float = 0.15
    distance: tuple[float, float] = (4.0, 70.0)
    beyond_view: float = 1.5
    max_truncation: float = 0.6
    min_height: float = 12.0
    min_visible: float = 0.2
    road_aligned: float = 0.5
    road_spread: float = 0.15
    tilt: float = 0.02
    box_jitter: tuple[float, float] = (1.0, 0.03)
    visible_box: float = 0.25
    front_car: float = 0.3
    back_cars: float = 0.5
    flat_occluders: float = 0.3
    backgrounds: tuple[float, float, float] = (0.6, 0.3, 0.1)
    max_render: int = 128
    artefacts: Artefacts = Artefacts()
    attempts: int = 100


class Crop(NamedTuple):
    """A training crop and its targets.

    Attributes:
        image: (S, S, 3) uint8 RGB.
        mask: (S, S) bool, the car's visible pixels.
        nocs: (S, S, 3) float32 in [0, 1], NOCS of the car's visible pixels, 0 elsewhere.
        alpha: KITTI observation angle, radians in [-pi, pi).
        latent: (D,) float32 shape code (NaN when the prior does not hold the car).
        seed: the procedural car's seed.
        box: (4,) the detection box (x1, y1, x2, y2) in the image; window: (4,) its window.
        center: (3,) box centre, camera frame; yaw: KITTI ``rotation_y``; size: (3,) l, w, h.
        visible: share of the car's in-image pixels that are visible.
        truncation: share of the car's image box outside the image.
    """

    image: np.ndarray
    mask: np.ndarray
    nocs: np.ndarray
    alpha: float
    latent: np.ndarray
    seed: int
    box: np.ndarray
    window: np.ndarray
    center: np.ndarray
    yaw: float
    size: np.ndarray
    visible: float
    truncation: float


class Placed(NamedTuple):
    """A pool car at a pose: rotation (3, 3) camera-from-object, center (3,) camera frame."""

    car: PoolCar
    rotation: np.ndarray
    center: np.ndarray

    def corners(self) -> np.ndarray:
        """(8, 3) the corners of its 3D box, camera frame."""
        return box_corners(torch.from_numpy(self.center), torch.from_numpy(self.rotation),
                           torch.from_numpy(self.car.size)).numpy()


class Flat(NamedTuple):
    """A flat occluder in image coordinates: kind ``pole`` (x-range, all rows), ``wall``
    (x-range, rows below a top) or ``blob`` (ellipse); params (4,) its ranges or centre and
    radii; texture (T, T, 3) float RGB stretched over the bounds ``extent`` (4,)."""

    kind: str
    params: np.ndarray
    texture: np.ndarray
    extent: np.ndarray

    def covers(self, uv: np.ndarray) -> np.ndarray:
        """(N,) bool for image points uv (N, 2)."""
        u, v = uv.T
        a, b, c, d = self.params
        if self.kind == "pole":
            return (u >= a) & (u <= b)
        if self.kind == "wall":
            return (u >= a) & (u <= b) & (v >= c)
        return ((u - a) / c) ** 2 + ((v - b) / d) ** 2 <= 1.0

    def colour(self, uv: np.ndarray) -> np.ndarray:
        """(N, 3) its colour at image points uv (N, 2)."""
        x0, y0, x1, y1 = self.extent
        side = len(self.texture)
        col = np.clip((uv[:, 0] - x0) / max(x1 - x0, 1e-6) * side, 0, side - 1).astype(int)
        row = np.clip((uv[:, 1] - y0) / max(y1 - y0, 1e-6) * side, 0, side - 1).astype(int)
        return self.texture[row, col]


class Camera(NamedTuple):
    """The rig: P2 (3, 4), its optical centre (3,), the ground's camera y, the image size."""

    P2: np.ndarray
    origin: np.ndarray
    ground_y: float
    width: int = IMAGE_WIDTH
    height: int = IMAGE_HEIGHT

    def rays(self, uv: np.ndarray) -> np.ndarray:
        """(N, 3) unit ray directions through image points uv (N, 2)."""
        homogeneous = np.concatenate([uv, np.ones((len(uv), 1))], axis=1)
        directions = homogeneous @ np.linalg.inv(self.P2[:, :3]).T
        return directions / np.linalg.norm(directions, axis=1, keepdims=True)

    def image_box(self, points: np.ndarray) -> np.ndarray:
        """(4,) the box (x1, y1, x2, y2) around camera-frame points (N, 3), not clipped."""
        projected = points @ self.P2[:, :3].T + self.P2[:, 3]
        pixels = projected[:, :2] / projected[:, 2:]
        return np.concatenate([pixels.min(axis=0), pixels.max(axis=0)])

    def inside(self, uv: np.ndarray) -> np.ndarray:
        """(N,) bool, image points uv (N, 2) within the image's pixels."""
        return ((uv[:, 0] >= -0.5) & (uv[:, 0] <= self.width - 0.5)
                & (uv[:, 1] >= -0.5) & (uv[:, 1] <= self.height - 0.5))


def kitti_camera() -> Camera:
    """The KITTI rig of the synthetic scenes."""
    calib = kitti_calib()
    P2 = calib.P2
    return Camera(P2, -np.linalg.solve(P2[:, :3], P2[:, 3]), ground_y(calib))


def generate_crop(rng: np.random.Generator, pool: list[PoolCar],
                  config: CropConfig = CropConfig(), images: list[np.ndarray] | None = None,
                  camera: Camera | None = None) -> Crop:
    """A random crop of a car of ``pool`` and its targets (see the module docstring).

    Args:
        rng: the source of every random choice. pool: the cars to draw from.
        images: background pictures for the ``images`` background (None: not used).
        camera: the rig (default :func:`kitti_camera`).
    """
    camera = kitti_camera() if camera is None else camera
    cars, flats, image_box, share = _draw_scene(rng, pool, config, camera)
    box = image_box
    if rng.uniform() < config.visible_box:
        box = _visible_box(cars, flats, camera, image_box)
    sigma = config.box_jitter[0] + config.box_jitter[1] * max(box[2] - box[0], box[3] - box[1])
    box = box + rng.normal(0.0, sigma, 4)
    box[2:] = np.maximum(box[2:], box[:2] + 2.0)
    window = crop_window(box, config.margin)
    look = draw_look(rng)
    side = int(np.clip(round(window[2] - window[0]), 16, config.max_render))
    picture = _picture(cars, flats, camera, window, side, look, rng, config, images)
    image = degrade(resize(picture.clip(0, 255).round().astype(np.uint8), config.size), rng,
                    config.artefacts)
    mask, nocs_map, visible = render_targets(cars, flats, camera, window, config.size)
    target = cars[0]
    yaw = rotation_to_yaw(torch.from_numpy(target.rotation))
    alpha = float(observation_angle(yaw, torch.from_numpy(target.center)))
    return Crop(image, mask, nocs_map, alpha, target.car.latent, target.car.params.seed,
                box, window, target.center, float(yaw), target.car.size, visible, share)


def _draw_scene(rng: np.random.Generator, pool: list[PoolCar], config: CropConfig,
                camera: Camera) -> tuple[list[Placed], list[Flat], np.ndarray, float]:
    """The car (first of the list), the other cars, the flat occluders, the car's image box
    clipped to the image and its truncation, redrawn until the car is seen well enough."""
    for _ in range(config.attempts):
        target = _place_target(rng, pool, config, camera)
        if target is None:
            continue
        placed, full_box, share = target
        box = np.clip(full_box, 0.0, [camera.width - 1, camera.height - 1] * 2)
        cars = [placed] + _others(rng, pool, config, camera, placed, box)
        flats = _flats(rng, box) if rng.uniform() < config.flat_occluders else []
        uv = pixel_centres(box, 32)
        target_hit, visible = _visibility(cars, flats, camera, uv)
        if visible.sum() >= config.min_visible * max(target_hit.sum(), 1) and visible.any():
            return cars, flats, box, share
    raise RuntimeError(f"no crop drawn in {config.attempts} attempts; check the CropConfig")


def _place_target(rng: np.random.Generator, pool: list[PoolCar], config: CropConfig,
                  camera: Camera) -> tuple[Placed, np.ndarray, float] | None:
    """The car at a random pose, its image box and truncation, or None when it is out of
    bounds (behind the camera, too truncated or too small)."""
    car = pool[int(rng.integers(len(pool)))]
    depth = math.exp(rng.uniform(*np.log(config.distance)))
    fx, cx = camera.P2[0, 0], camera.P2[0, 2]
    left = -cx / fx * depth - config.beyond_view
    right = (camera.width - cx) / fx * depth + config.beyond_view
    x = rng.uniform(left, right)
    if rng.uniform() < config.road_aligned:
        yaw = rng.choice([-math.pi / 2, math.pi / 2]) + rng.normal(0.0, config.road_spread)
    else:
        yaw = rng.uniform(-math.pi, math.pi) + math.atan2(x, depth)
    tilt = _tilt(rng.normal(0.0, config.tilt, 2))
    rotation = tilt @ yaw_to_rotation(torch.tensor(yaw, dtype=torch.float64)).numpy()
    placed = Placed(car, rotation, np.array([x, camera.ground_y - car.size[2] / 2, depth]))
    corners = placed.corners()
    if corners[:, 2].min() < 0.5:
        return None
    box = camera.image_box(corners)
    share = truncation(box, camera.width, camera.height)
    visible_height = min(box[3], camera.height - 1) - max(box[1], 0)
    if share > config.max_truncation or visible_height < config.min_height:
        return None
    return placed, box, share


def _tilt(angles: np.ndarray) -> np.ndarray:
    """(3, 3) rotation by ``angles`` (2,) = (pitch about camera x, roll about camera z)."""
    (cp, sp), (cr, sr) = (np.cos(angles[0]), np.sin(angles[0])), (np.cos(angles[1]),
                                                                  np.sin(angles[1]))
    pitch = np.array([[1.0, 0, 0], [0, cp, -sp], [0, sp, cp]])
    roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1.0]])
    return pitch @ roll


def _others(rng: np.random.Generator, pool: list[PoolCar], config: CropConfig, camera: Camera,
            target: Placed, box: np.ndarray) -> list[Placed]:
    """Cars in front of and behind the target, overlapping its box in the image and never
    intersecting another car (their footprints' circumcircles stay apart)."""
    depth = target.center[2]
    wanted = []
    if rng.uniform() < config.front_car and depth > 5.0:
        wanted.append((max(2.5, 0.3 * depth), depth - 2.0, 0.3))
    if rng.uniform() < config.back_cars:
        wanted += [(depth + 2.0, depth + 30.0, 1.0)] * int(rng.integers(1, 3))
    placed = [target]
    fx, cx = camera.P2[0, 0], camera.P2[0, 2]
    width = box[2] - box[0]
    for near, far, spread in wanted:
        for _ in range(10):
            car = pool[int(rng.integers(len(pool)))]
            z = rng.uniform(near, far)
            u = rng.uniform(box[0] - spread * width, box[2] + spread * width)
            x = (u - cx) / fx * z
            yaw = (rng.choice([-math.pi / 2, math.pi / 2]) + rng.normal(0.0, 0.1)
                   if rng.uniform() < 0.7 else rng.uniform(-math.pi, math.pi))
            candidate = Placed(car, yaw_to_rotation(torch.tensor(yaw, dtype=torch.float64))
                               .numpy(), np.array([x, camera.ground_y - car.size[2] / 2, z]))
            if all(_apart(candidate, other) for other in placed):
                placed.append(candidate)
                break
    return placed


def _apart(a: Placed, b: Placed, gap: float = 0.3) -> bool:
    """Whether the footprints' circumcircles of two cars are ``gap`` metres apart."""
    radius = (np.hypot(*a.car.size[:2]) + np.hypot(*b.car.size[:2])) / 2
    return bool(np.hypot(*(a.center[[0, 2]] - b.center[[0, 2]])) > radius + gap)


def _flats(rng: np.random.Generator, box: np.ndarray) -> list[Flat]:
    """One or two flat occluders over the box (x1, y1, x2, y2): a pole, a wall from one side or
    a blob of foliage, each with a random texture."""
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    flats = []
    for _ in range(int(rng.integers(1, 3))):
        kind = str(rng.choice(["pole", "wall", "blob"]))
        if kind == "pole":
            centre = rng.uniform(x1 - 0.1 * width, x2 + 0.1 * width)
            half = max(0.75, rng.uniform(0.01, 0.08) * width)
            params = np.array([centre - half, centre + half, 0.0, 0.0])
        elif kind == "wall":
            reach = rng.uniform(0.1, 0.5) * width
            top = y1 + rng.uniform(0.0, 0.8) * height
            params = (np.array([x1 - width, x1 + reach, top, 0.0]) if rng.uniform() < 0.5
                      else np.array([x2 - reach, x2 + width, top, 0.0]))
        else:
            params = np.array([rng.uniform(x1, x2), rng.uniform(y1, y2),
                               rng.uniform(0.1, 0.35) * width, rng.uniform(0.1, 0.5) * height])
        shade_factor = rng.uniform(0.3, 1.0)
        extent = np.array([x1 - width, y1 - height, x2 + width, y2 + height])
        flats.append(Flat(kind, params, shade_factor * backgrounds.texture(rng, 32), extent))
    return flats


def _nearest(cars: list[Placed], camera: Camera, directions: np.ndarray
             ) -> tuple[np.ndarray, list]:
    """Which car each ray sees first (-1: none) and every car's hits."""
    hits = [cast(p.car, p.rotation, p.center, camera.origin, directions) for p in cars]
    distances = np.stack([h.t for h in hits])
    first = distances.argmin(axis=0)
    first[~np.isfinite(distances.min(axis=0))] = -1
    return first, hits


def _visibility(cars: list[Placed], flats: list[Flat], camera: Camera, uv: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """At image points uv (N, 2): where the target (cars[0]) lies inside the image, and where
    it is also visible (in front of the other cars, not behind a flat occluder)."""
    first, hits = _nearest(cars, camera, camera.rays(uv))
    present = hits[0].hit & camera.inside(uv)
    visible = present & (first == 0)
    for flat in flats:
        visible &= ~flat.covers(uv)
    return present, visible


def _visible_box(cars: list[Placed], flats: list[Flat], camera: Camera, box: np.ndarray
                 ) -> np.ndarray:
    """(4,) the box of the target's visible pixels, from a 48 x 48 grid over its image box."""
    uv = pixel_centres(box, 48)
    _, visible = _visibility(cars, flats, camera, uv)
    seen = uv[visible]
    return np.concatenate([seen.min(axis=0), seen.max(axis=0)])


def render_targets(cars: list[Placed], flats: list[Flat], camera: Camera, window: np.ndarray,
                   size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The targets of the first car of ``cars`` in a crop of ``window`` (4,) with ``size``
    pixels a side: its visible mask (S, S) bool and NOCS map (S, S, 3) (0 off the mask) at the
    crop's pixel centres, and the share of its in-image pixels there that are visible."""
    uv = pixel_centres(window, size)
    directions = camera.rays(uv)
    present, visible = _visibility(cars, flats, camera, uv)
    hits = cast(cars[0].car, cars[0].rotation, cars[0].center, camera.origin, directions)
    nocs_map = np.where(visible[:, None], nocs(cars[0].car, hits), 0.0)
    share = float(visible.sum() / max(present.sum(), 1))
    return (visible.reshape(size, size), nocs_map.reshape(size, size, 3).astype(np.float32),
            share)


def _picture(cars: list[Placed], flats: list[Flat], camera: Camera, window: np.ndarray,
             side: int, look: Look, rng: np.random.Generator, config: CropConfig,
             images: list[np.ndarray] | None) -> np.ndarray:
    """(side, side, 3) float RGB of the window: background, cars, shadows, flat occluders."""
    uv = pixel_centres(window, side)
    directions = camera.rays(uv)
    weights = np.array(config.backgrounds[:2] + ((config.backgrounds[2],) if images else (0,)))
    kind = BACKGROUNDS[int(rng.choice(3, p=weights / weights.sum()))]
    ground = np.full((len(uv), 3), np.nan)
    if kind == "road":
        backdrop = max(p.center[2] for p in cars) + rng.uniform(5.0, 40.0)
        colour, ground = backgrounds.road(camera.origin, directions, camera.ground_y, backdrop,
                                          look, rng)
    elif kind == "texture":
        colour = backgrounds.texture(rng, side).reshape(-1, 3)
    else:
        colour = backgrounds.image_patch(images, rng, side).reshape(-1, 3)
    first, hits = _nearest(cars, camera, directions)
    on_ground = ~np.isnan(ground[:, 0]) & (first < 0)
    dark = _in_shadow(cars, ground[on_ground], look.light)
    under = np.zeros(on_ground.sum(), dtype=bool)
    for p in cars:
        local = (ground[on_ground] - p.center) @ p.rotation
        under |= (np.abs(local[:, :2]) < p.car.size[:2] / 2 + 0.15).all(axis=1)
    colour[on_ground] *= np.where(dark | under, rng.uniform(0.3, 0.6), 1.0)[:, None]
    for index, p in enumerate(cars):
        seen = first == index
        if not seen.any():
            continue
        own = hits[index].take(seen)
        normal = own.normal @ p.rotation.T
        points = camera.origin + own.t[:, None] * directions[seen]
        lit_from = points + 0.02 * normal
        colour[seen] = shade(materials(p.car, own), normal, directions[seen], look,
                             _in_shadow(cars, lit_from, look.light))
    for flat in flats:
        covered = flat.covers(uv)
        colour[covered] = flat.colour(uv[covered])
    colour[~camera.inside(uv)] = 0.0
    return colour.reshape(side, side, 3)


def _in_shadow(cars: list[Placed], points: np.ndarray, light: np.ndarray) -> np.ndarray:
    """(N,) bool, camera-frame points (N, 3) that any of the cars hides from the sun."""
    dark = np.zeros(len(points), dtype=bool)
    for p in cars:
        if len(points):
            dark |= shadowed(p.car, p.rotation, p.center, points, light)
    return dark
