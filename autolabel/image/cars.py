"""The procedural cars a crop generator draws from, ray-cast in their own object frame.

Each car's mesh goes into its own open3d ``RaycastingScene`` once, in the object frame (x
forward, y left, z up, origin at the centre of the tight box); a posed car is cast by moving
the rays into its frame instead of moving the mesh, so one scene serves every pose. A hit
gives the object-frame point (its NOCS coordinates are ``point / size + 1/2``, the renderer's
convention), the normal and the triangle.

Materials are decided per hit from where it lies on the car (the meshes carry no such parts):
glass above the window line, dark tyres with lighter rims, red tail lights and pale headlights
at the corners of the rear and front faces, number plates, a dark grille and dark lower trim.
They carry the cues that tell a car's front from its back.

Shape codes: a car whose tight box matches a training shape of the shape prior (the shipped
prior was trained on train seeds 0..255 in order) gets that shape's latent code, any other
car NaNs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import trimesh

from autolabel.extras import require_open3d
from shape_priors.meshes import (
    WHEEL_COLOUR,
    CarParams,
    axles_x,
    build_car_mesh,
    sample_car_params,
)

o3d = require_open3d("image-model training data")

PAINT, GLASS, TYRE, TAIL_LIGHT, HEAD_LIGHT, PLATE, TRIM, RIM = range(8)
MATERIALS = ("paint", "glass", "tyre", "tail light", "head light", "plate", "trim", "rim")
_SIZE_MATCH = 1e-4  # metres; a prior's training box equal to a car's within this is that car


@dataclasses.dataclass(frozen=True, eq=False)
class PoolCar:
    """One car of the pool.

    Attributes:
        params: its procedural parameters (seed, body type, dimensions).
        size: (3,) (length, width, height), metres.
        scene: the open3d ray-casting scene of the mesh in the object frame.
        tyre: (F,) bool, the triangles that belong to a wheel.
        latent: (D,) float32 shape code in the prior, NaN when the prior does not hold it.
    """

    params: CarParams
    size: np.ndarray
    scene: object
    tyre: np.ndarray
    latent: np.ndarray


class Hits(NamedTuple):
    """Where rays meet one posed car.

    Attributes:
        t: (N,) distance along the unit ray, metres; inf on a miss.
        point: (N, 3) hit points in the object frame (anything on a miss).
        normal: (N, 3) unit normals in the object frame, facing the ray's origin.
        face: (N,) int64 triangle index (anything on a miss).
    """

    t: np.ndarray
    point: np.ndarray
    normal: np.ndarray
    face: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        """(N,) bool, whether each ray meets the car."""
        return np.isfinite(self.t)

    def take(self, which: np.ndarray) -> Hits:
        """The hits of the rays selected by ``which`` (a bool mask or indices)."""
        return Hits(self.t[which], self.point[which], self.normal[which], self.face[which])


def build_pool(seeds: Iterable[int], train_sizes: np.ndarray | None = None,
               train_latents: np.ndarray | None = None) -> list[PoolCar]:
    """The cars of ``seeds`` with their ray-casting scenes and shape codes.

    Args:
        seeds: procedural car seeds (:mod:`shape_priors.meshes`).
        train_sizes: (S, 3) tight boxes of the prior's training shapes; train_latents: (S, D)
            their codes. Without them every car's latent is empty (D = 0).
    """
    pool = []
    for seed in seeds:
        params = sample_car_params(seed)
        pool.append(pool_car(params, build_car_mesh(params), train_sizes, train_latents))
    return pool


def pool_car(params: CarParams, mesh: trimesh.Trimesh, train_sizes: np.ndarray | None = None,
             train_latents: np.ndarray | None = None) -> PoolCar:
    """One car of the pool from its parameters and its mesh in the object frame (any closed
    mesh whose tight box is the parameters' size; wheels are its faces coloured
    ``WHEEL_COLOUR``). train_sizes, train_latents: as in :func:`build_pool`."""
    size = np.array([params.length, params.width, params.height])
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
    tyre = np.zeros(len(mesh.faces), dtype=bool)
    if mesh.visual.kind == "face":
        tyre = (mesh.visual.face_colors[:, :3] == np.array(WHEEL_COLOUR[:3])).all(axis=1)
    return PoolCar(params, size, scene, tyre,
                   _latent_of(size, train_sizes, train_latents))


def _latent_of(size: np.ndarray, train_sizes: np.ndarray | None,
               train_latents: np.ndarray | None) -> np.ndarray:
    """(D,) the code of the training shape with this tight box, NaNs when there is none."""
    if train_sizes is None or train_latents is None:
        return np.zeros(0, dtype=np.float32)
    match = np.flatnonzero(np.abs(train_sizes - size).max(axis=1) < _SIZE_MATCH)
    if len(match) == 0:
        return np.full(train_latents.shape[1], np.nan, dtype=np.float32)
    return train_latents[match[0]].astype(np.float32)


def cast(car: PoolCar, rotation: np.ndarray, center: np.ndarray, origin: np.ndarray,
         directions: np.ndarray) -> Hits:
    """Cast camera rays at a posed car.

    Args:
        rotation: (3, 3) camera-from-object rotation. center: (3,) box centre, camera frame.
        origin: (3,) the rays' common origin. directions: (N, 3) unit directions, camera frame.
    """
    local_origin = (origin - center) @ rotation
    local_directions = directions @ rotation
    rays = np.concatenate([np.broadcast_to(local_origin, local_directions.shape),
                           local_directions], axis=1).astype(np.float32)
    result = car.scene.cast_rays(o3d.core.Tensor(rays))
    t = result["t_hit"].numpy().astype(np.float64)
    normal = result["primitive_normals"].numpy().astype(np.float64)
    normal *= -np.sign(np.sum(normal * local_directions, axis=1, keepdims=True) + 1e-12)
    point = local_origin + np.where(np.isfinite(t), t, 0.0)[:, None] * local_directions
    return Hits(t, point, normal, result["primitive_ids"].numpy().astype(np.int64))


def shadowed(car: PoolCar, rotation: np.ndarray, center: np.ndarray, points: np.ndarray,
             light: np.ndarray) -> np.ndarray:
    """(N,) bool, whether camera-frame ``points`` (N, 3) lie in the car's shadow from a light
    in the unit direction ``light`` (3,) (towards the light)."""
    local = (points - center) @ rotation
    rays = np.concatenate([local, np.broadcast_to(light @ rotation, local.shape)], axis=1)
    return car.scene.test_occlusions(o3d.core.Tensor(rays.astype(np.float32))).numpy()


def materials(car: PoolCar, hits: Hits) -> np.ndarray:
    """(N,) int8 material of each hit (``PAINT`` ... ``RIM``; anything on a miss)."""
    p = car.params
    x, y, z = hits.point.T
    above_ground = z + p.height / 2
    side = np.abs(y)
    facing = hits.normal[:, 0]
    rear, front = facing < -0.5, facing > 0.5
    material = np.full(len(x), PAINT, dtype=np.int8)
    material[above_ground < p.ground_clearance + 0.1] = TRIM
    lamp_band = (above_ground > p.hood_height - 0.2) & (above_ground < p.hood_height - 0.04)
    material[front & lamp_band & (side < p.width / 2 - 0.45)] = TRIM  # grille
    material[front & lamp_band & (side > p.width / 2 - 0.42)] = HEAD_LIGHT
    tail_band = (above_ground > p.window_line - 0.25) & (above_ground < p.window_line - 0.03)
    material[rear & tail_band & (side > p.width / 2 - 0.38)] = TAIL_LIGHT
    plate_band = np.abs(above_ground - (p.ground_clearance + 0.22)) < 0.06
    material[(front | rear) & plate_band & (side < 0.26)] = PLATE
    glass = (above_ground > p.window_line + 0.03) & (np.abs(hits.normal[:, 2]) < 0.85)
    material[glass] = GLASS
    tyre = car.tyre[np.clip(hits.face, 0, len(car.tyre) - 1)] & hits.hit
    material[tyre] = TYRE
    wheel_height = z + p.height / 2 - p.wheel_radius
    hub = np.min([np.hypot(x - axle, wheel_height) for axle in axles_x(p)], axis=0)
    material[tyre & (hub < 0.62 * p.wheel_radius) & (np.abs(hits.normal[:, 1]) > 0.7)] = RIM
    return material


def nocs(car: PoolCar, hits: Hits) -> np.ndarray:
    """(N, 3) NOCS coordinates of hits in [0, 1]: ``point / size + 1/2`` (x forward, y left,
    z up), the renderer's convention."""
    return np.clip(hits.point / car.size + 0.5, 0.0, 1.0)
