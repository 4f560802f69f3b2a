"""Signed-distance samples of a mesh, DeepSDF style, cached on disk.

A mesh in the object frame (x forward, y left, z up; metres) is first normalised: its tight
axis-aligned box is centred on the origin and scaled *per axis* onto the cube
``[-0.5, 0.5]^3`` (see docs/decisions.md, "Canonical space"). Signed distances are computed in
that normalised space with open3d's ``RaycastingScene`` (Embree), so they are exact distances
to the normalised surface; negative inside.

Most samples lie near the surface (surface points displaced by Gaussian offsets of two
widths), the rest are uniform in a slightly enlarged cube.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import trimesh

from autolabel.extras import require_open3d

# Bump when the sampling procedure changes, so old cache files are not reused.
SAMPLER_VERSION = 1


@dataclass(frozen=True)
class SdfSampling:
    """How many SDF samples to draw per mesh and where.

    All lengths are in the normalised space, where the mesh's tight box is the unit cube.
    """

    count: int = 60_000
    """Total samples per mesh."""
    uniform_fraction: float = 0.1
    """Share of samples drawn uniformly in the cube ``[-bound, bound]^3``."""
    sigma_wide: float = 0.04
    """Standard deviation of the wide Gaussian offsets around surface points."""
    sigma_narrow: float = 0.008
    """Standard deviation of the narrow Gaussian offsets around surface points."""
    bound: float = 0.6
    """Half side of the cube for the uniform samples (the shape fills ``[-0.5, 0.5]^3``)."""
    sign_rays: int = 5
    """Odd number of rays open3d casts per point to vote on the sign (robust at edges)."""
    seed: int = 0
    """Base seed; each mesh's generator is seeded by this and the mesh's content hash."""


@dataclass(frozen=True)
class SdfSamples:
    """SDF samples of one mesh in its normalised frame.

    points: (N, 3) float32 in the normalised frame; sdf: (N,) float32, negative inside;
    centre: (3,) tight box centre and extent: (3,) tight box size (l, w, h) of the original
    mesh, in its own units (metres), so ``original = centre + normalised * extent``.
    """

    points: np.ndarray
    sdf: np.ndarray
    centre: np.ndarray
    extent: np.ndarray


def tight_box(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    """Centre (3,) and extent (3,) of the mesh's axis-aligned tight box."""
    low, high = np.asarray(mesh.bounds, dtype=np.float64)
    return (low + high) / 2.0, high - low


def normalise_mesh(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, np.ndarray, np.ndarray]:
    """Scale the mesh per axis so that its tight box becomes ``[-0.5, 0.5]^3``.

    Returns the normalised copy, the box centre (3,) and the box extent (3,).

    >>> box = trimesh.creation.box(extents=(4.0, 2.0, 1.0))
    >>> unit, centre, extent = normalise_mesh(box)
    >>> unit.bounds.tolist(), extent.tolist()
    ([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]], [4.0, 2.0, 1.0])
    """
    centre, extent = tight_box(mesh)
    if np.any(extent <= 0):
        raise ValueError(f"mesh is flat along an axis (tight box extent {extent.tolist()})")
    vertices = (np.asarray(mesh.vertices, dtype=np.float64) - centre) / extent
    unit = trimesh.Trimesh(vertices=vertices, faces=np.asarray(mesh.faces), process=False)
    return unit, centre, extent


def signed_distance(mesh: trimesh.Trimesh, points: np.ndarray, sign_rays: int = 5) -> np.ndarray:
    """Signed distance (M,) from points (M, 3) to a watertight mesh; negative inside.

    >>> sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    >>> d = signed_distance(sphere, np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]]))
    >>> np.round(d, 2).tolist()
    [-1.0, 1.0]
    """
    o3d = require_open3d("computing SDF samples")
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
    )
    query = o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32))
    return scene.compute_signed_distance(query, nsamples=sign_rays).numpy()


def mesh_hash(mesh: trimesh.Trimesh) -> str:
    """Hex SHA-256 of the mesh's vertices and faces (its identity for the cache)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(mesh.vertices, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(mesh.faces, dtype=np.int64).tobytes())
    return digest.hexdigest()


def sample_sdf(mesh: trimesh.Trimesh, sampling: SdfSampling = SdfSampling()) -> SdfSamples:
    """Draw SDF samples of a watertight mesh in its normalised frame (no caching).

    The random generator is seeded by ``sampling.seed`` and the mesh's content, so the same
    mesh and settings always give the same samples.
    """
    if not mesh.is_watertight:
        raise ValueError("mesh is not watertight, so inside and outside are not defined")
    unit, centre, extent = normalise_mesh(mesh)
    rng = np.random.default_rng([sampling.seed, int(mesh_hash(mesh)[:15], 16)])
    n_uniform = int(round(sampling.count * sampling.uniform_fraction))
    n_near = sampling.count - n_uniform
    n_wide = n_near // 2
    surface = _surface_points(unit, n_near, rng)
    sigma = np.where(np.arange(n_near) < n_wide, sampling.sigma_wide, sampling.sigma_narrow)
    near = surface + rng.normal(size=(n_near, 3)) * sigma[:, None]
    uniform = rng.uniform(-sampling.bound, sampling.bound, size=(n_uniform, 3))
    points = np.concatenate([near, uniform]).astype(np.float32)
    sdf = signed_distance(unit, points, sampling.sign_rays).astype(np.float32)
    return SdfSamples(points=points, sdf=sdf, centre=centre, extent=extent)


def _surface_points(mesh: trimesh.Trimesh, count: int, rng: np.random.Generator) -> np.ndarray:
    """Area-uniform random points (count, 3) on the mesh surface."""
    triangles = np.asarray(mesh.triangles)
    area = np.asarray(mesh.area_faces)
    face = rng.choice(len(area), size=count, p=area / area.sum())
    u, v = rng.uniform(size=(2, count))
    flip = u + v > 1.0
    u, v = np.where(flip, 1.0 - u, u), np.where(flip, 1.0 - v, v)
    a, b, c = triangles[face, 0], triangles[face, 1], triangles[face, 2]
    return a + u[:, None] * (b - a) + v[:, None] * (c - a)


def cache_key(mesh: trimesh.Trimesh, sampling: SdfSampling) -> str:
    """Cache file stem for a mesh and sampling settings (changes when either changes)."""
    settings = repr(sorted(asdict(sampling).items())) + f"v{SAMPLER_VERSION}"
    return hashlib.sha256((mesh_hash(mesh) + settings).encode()).hexdigest()[:24]


def cached_sdf(
    mesh: trimesh.Trimesh, sampling: SdfSampling = SdfSampling(), cache_dir: Path | None = None
) -> SdfSamples:
    """:func:`sample_sdf` with an on-disk cache of ``<cache_dir>/<key>.npz`` files.

    A repeated call with the same mesh and settings loads the file instead of sampling.
    Without ``cache_dir`` nothing is cached.
    """
    if cache_dir is None:
        return sample_sdf(mesh, sampling)
    path = Path(cache_dir) / f"{cache_key(mesh, sampling)}.npz"
    if path.exists():
        with np.load(path) as data:
            return SdfSamples(**{name: data[name] for name in data.files})
    samples = sample_sdf(mesh, sampling)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npz")
    np.savez(partial, **asdict(samples))
    partial.replace(path)
    return samples
