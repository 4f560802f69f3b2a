"""Random street scenes: held-out procedural cars standing on a ground plane.

Everything lives in KITTI's rectified camera frame (x right, y down, z forward). The ground is
the plane ``y = ground_y`` (see :mod:`autolabel.synth.rig`); the road runs along +z. A car is
an upright mesh of :mod:`shape_priors.meshes` placed by its box centre and KITTI yaw, so that
its wheels rest on the ground. Cars never interpenetrate: their footprints, grown by a gap,
may not overlap in the bird's-eye view.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import trimesh

from autolabel.evaluate import bev_intersection
from autolabel.extras import require_open3d
from autolabel.geometry import box_corners, yaw_to_rotation
from autolabel.io.kitti import Calib
from autolabel.synth.rig import IMAGE_WIDTH, ground_y, kitti_calib
from shape_priors.meshes import (
    HELDOUT_SEEDS,
    CarParams,
    build_car_mesh,
    heldout_seeds,
    sample_car_params,
)

o3d = require_open3d("scene synthesis")

# Paint colours (RGB, 0-255) cars are drawn from; each car gets one with some variation.
_PAINTS = ((200, 200, 205), (30, 30, 35), (120, 125, 130), (170, 30, 30), (30, 60, 140),
           (235, 235, 230), (60, 100, 60), (150, 110, 60), (90, 90, 100), (200, 160, 40))
_GROUND_EXTENT = ((-150.0, 150.0), (-150.0, 250.0))  # (x, z) range of the ground quad, metres


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """How cars are placed.

    Attributes:
        min_cars, max_cars: number of cars attempted per frame (uniform, inclusive).
        min_distance, max_distance: range of the cars' centre depth z, metres.
        max_lateral: largest |x| of a car's centre, metres; it is also kept within the
            camera's field of view (plus 2 m, so that some cars are truncated).
        road_aligned: fraction of cars heading along or against the road (+-z), with a
            normal yaw spread of ``yaw_spread`` radians; the others have a uniform yaw.
        gap: clearance kept between the footprints of two cars, metres.
        min_corner_depth: every box corner stays at least this far in front of the camera.
        attempts: placement attempts per car before it is given up.
    """

    min_cars: int = 2
    max_cars: int = 7
    min_distance: float = 5.0
    max_distance: float = 50.0
    max_lateral: float = 13.0
    road_aligned: float = 0.8
    yaw_spread: float = 0.08
    gap: float = 0.4
    min_corner_depth: float = 1.0
    attempts: int = 40

    def __post_init__(self) -> None:
        if not 0 <= self.min_cars <= self.max_cars:
            raise ValueError(f"need 0 <= min_cars <= max_cars, got {self.min_cars}, "
                             f"{self.max_cars}")
        if not 0 < self.min_distance < self.max_distance:
            raise ValueError(f"need 0 < min_distance < max_distance, got {self.min_distance}, "
                             f"{self.max_distance}")


@dataclasses.dataclass(frozen=True, eq=False)
class PlacedCar:
    """One car of a scene.

    Attributes:
        params: the parameters of its procedural shape (held-out seed, body type, ...).
        center: (3,) centre of its tight box in the camera frame, metres.
        yaw: KITTI ``rotation_y``, radians.
        size: (3,) (length, width, height), metres.
        mesh: the mesh in the object frame (x forward, y left, z up, centred).
        paint: (3,) body colour, RGB in [0, 255]; reflectance: LiDAR reflectance in [0, 1].
    """

    params: CarParams
    center: np.ndarray
    yaw: float
    size: np.ndarray
    mesh: trimesh.Trimesh
    paint: np.ndarray
    reflectance: float

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) camera-from-object rotation."""
        return yaw_to_rotation(torch.tensor(self.yaw, dtype=torch.float64)).numpy()

    def vertices_camera(self) -> np.ndarray:
        """(V, 3) the mesh's vertices in the camera frame."""
        return np.asarray(self.mesh.vertices) @ self.rotation.T + self.center

    def corners(self) -> np.ndarray:
        """(8, 3) box corners in the camera frame (order of ``geometry.box_corners``)."""
        return box_corners(torch.from_numpy(self.center), torch.from_numpy(self.rotation),
                           torch.from_numpy(self.size)).numpy()


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
    """A frame's world: the cars, the calibration and the ground plane ``y = ground_y``."""

    cars: tuple[PlacedCar, ...]
    calib: Calib
    ground_y: float


def place_car(params: CarParams, x: float, z: float, yaw: float, ground: float,
              paint=(128.0, 128.0, 128.0), reflectance: float = 0.4) -> PlacedCar:
    """The car of ``params`` standing on the ground plane ``y = ground`` at camera ``(x, z)``.

    >>> car = place_car(sample_car_params(1_000_000), 0.0, 10.0, 0.0, ground=1.65)
    >>> round(float(car.vertices_camera()[:, 1].max()), 6)  # the wheels touch the ground
    1.65
    """
    size = np.array([params.length, params.width, params.height])
    center = np.array([x, ground - params.height / 2, z])
    return PlacedCar(params, center, float(yaw), size, build_car_mesh(params),
                     np.asarray(paint, dtype=np.float64), float(reflectance))


def sample_scene(rng: np.random.Generator, config: SceneConfig = SceneConfig()) -> Scene:
    """A random scene; the same generator state gives the same scene.

    Cars that cannot be placed without overlap in ``config.attempts`` tries are left out, so a
    crowded frame may hold fewer than drawn.
    """
    calib = kitti_calib()
    ground = ground_y(calib)
    fx, cx = calib.P2[0, 0], calib.P2[0, 2]
    count = int(rng.integers(config.min_cars, config.max_cars + 1))
    cars: list[PlacedCar] = []
    boxes = torch.zeros((0, 7), dtype=torch.float64)
    for _ in range(count):
        offset = int(rng.integers(0, len(HELDOUT_SEEDS)))
        params = sample_car_params(heldout_seeds(1, offset)[0])
        size = np.array([params.length, params.width, params.height])
        for _ in range(config.attempts):
            z = rng.uniform(config.min_distance, config.max_distance)
            # Field of view at depth z (the image spans u in [0, W]) plus 2 m either side.
            left, right = -cx / fx * z - 2.0, (IMAGE_WIDTH - cx) / fx * z + 2.0
            x = rng.uniform(max(left, -config.max_lateral), min(right, config.max_lateral))
            if rng.uniform() < config.road_aligned:
                yaw = rng.choice([-math.pi / 2, math.pi / 2]) + rng.normal(0, config.yaw_spread)
            else:
                yaw = rng.uniform(-math.pi, math.pi)
            center = np.array([x, ground - size[2] / 2, z])
            box = torch.tensor([[x, center[1], z, size[0] + config.gap, size[1] + config.gap,
                                 size[2], yaw]], dtype=torch.float64)
            corners = box_corners(torch.from_numpy(center),
                                  yaw_to_rotation(torch.tensor(yaw, dtype=torch.float64)),
                                  torch.from_numpy(size))
            if float(corners[:, 2].min()) < config.min_corner_depth:
                continue
            if len(boxes) and float(bev_intersection(box.expand(len(boxes), 7), boxes).max()) > 0:
                continue
            boxes = torch.cat([boxes, box])
            paint = np.clip(np.array(_PAINTS[int(rng.integers(len(_PAINTS)))])
                            + rng.normal(0, 12, 3), 0, 255)
            cars.append(place_car(params, x, z, float(yaw), ground, paint,
                                  float(rng.uniform(0.15, 0.6))))
            break
    return Scene(tuple(cars), calib, ground)


@dataclasses.dataclass(frozen=True, eq=False)
class Raycaster:
    """An open3d ray-casting scene of a :class:`Scene`.

    Attributes:
        scene: the ``o3d.t.geometry.RaycastingScene`` holding the ground quad and the cars.
        car_of_geometry: (G,) int, the car index of each open3d geometry id, -1 for the ground.
    """

    scene: o3d.t.geometry.RaycastingScene
    car_of_geometry: np.ndarray

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> dict[str, np.ndarray]:
        """Cast rays; unit ``directions`` make ``t_hit`` a distance in metres.

        Args:
            origins: (N, 3) or (3,). directions: (N, 3).
        Returns:
            ``t_hit`` (N,) float (inf on a miss), ``car`` (N,) int (car index, -1 for the
            ground, -2 for a miss), ``normal`` (N, 3) unit normals of the hit triangles facing
            the ray's origin, ``face`` (N,) the hit triangle's index within its mesh.
        """
        origins = np.broadcast_to(origins, directions.shape)
        rays = np.concatenate([origins, directions], axis=1).astype(np.float32)
        hits = self.scene.cast_rays(o3d.core.Tensor(rays))
        t_hit = hits["t_hit"].numpy().astype(np.float64)
        geometry = hits["geometry_ids"].numpy().astype(np.int64)
        missed = ~np.isfinite(t_hit)
        car = np.full(len(t_hit), -2, dtype=np.int64)
        car[~missed] = self.car_of_geometry[geometry[~missed]]
        normal = hits["primitive_normals"].numpy().astype(np.float64)
        normal *= -np.sign(np.sum(normal * directions, axis=1, keepdims=True) + 1e-12)
        face = hits["primitive_ids"].numpy().astype(np.int64)
        return {"t_hit": t_hit, "car": car, "normal": normal, "face": face}


def build_raycaster(scene: Scene, cars: list[int] | None = None, ground: bool = True
                    ) -> Raycaster:
    """The ray-casting scene of ``scene``: the ground quad (optional) and the chosen cars.

    Args:
        cars: indices of the cars to add; all when None.
        ground: whether to add the ground quad.
    """
    raycasting = o3d.t.geometry.RaycastingScene()
    owners = []
    if ground:
        (x0, x1), (z0, z1) = _GROUND_EXTENT
        y = scene.ground_y
        quad = np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]], np.float32)
        raycasting.add_triangles(o3d.core.Tensor(quad),
                                 o3d.core.Tensor(np.array([[0, 1, 2], [0, 2, 3]], np.uint32)))
        owners.append(-1)
    for index in range(len(scene.cars)) if cars is None else cars:
        car = scene.cars[index]
        raycasting.add_triangles(
            o3d.core.Tensor(car.vertices_camera().astype(np.float32)),
            o3d.core.Tensor(np.asarray(car.mesh.faces, dtype=np.uint32)))
        owners.append(index)
    return Raycaster(raycasting, np.array(owners, dtype=np.int64))
