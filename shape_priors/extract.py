"""Meshes from shape codes: the decoded SDF on a grid, then marching cubes (scikit-image)."""

from __future__ import annotations

import numpy as np
import torch
import trimesh
from skimage.measure import marching_cubes
from torch import Tensor

from shape_priors.decoder import SdfDecoder


@torch.no_grad()
def decode_grid(decoder: SdfDecoder, latents: Tensor, resolution: int = 65,
                bound: float = 0.55, stride: int = 4, chunk: int = 32_768) -> Tensor:
    """Decoded SDF (B, R, R, R) on a regular grid over ``[-bound, bound]^3``, codes (B, D).

    Index ``[b, i, j, k]`` is the point ``(x_i, y_j, z_k)`` of ``linspace(-bound, bound, R)``.
    When ``stride`` > 1 divides ``R - 1``, the SDF is decoded at every ``stride``-th grid point
    first and then, at full resolution, only where the trilinear interpolation of those values
    is within 1.5 coarse cells of the surface (an SDF changes by at most the distance, and
    interpolation errs by less than a cell); elsewhere the interpolated value is kept. The zero
    level set is the same and decoding is faster. Otherwise every grid point is decoded.
    ``chunk`` points are decoded at a time (32 768 keeps each layer's activations under the
    32 MB above which the allocator maps and unmaps memory on every call).
    """
    batch = len(latents)
    axis = torch.linspace(-bound, bound, resolution, device=latents.device)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
    if stride <= 1 or (resolution - 1) % stride:
        flat = grid.reshape(1, -1, 3).expand(batch, -1, -1)
        return _decode_points(decoder, latents, flat, chunk).reshape(batch, *grid.shape[:3])
    coarse = (resolution - 1) // stride + 1
    rough = decode_grid(decoder, latents, coarse, bound, 1, chunk)
    values = torch.nn.functional.interpolate(rough[:, None], size=(resolution,) * 3,
                                             mode="trilinear", align_corners=True)[:, 0]
    band = 1.5 * 2.0 * bound / (coarse - 1)
    for index in range(batch):
        near = values[index].abs() < band
        points = grid[near][None]
        values[index][near] = _decode_points(decoder, latents[index:index + 1], points, chunk)[0]
    return values


def _decode_points(decoder: SdfDecoder, latents: Tensor, points: Tensor, chunk: int) -> Tensor:
    """Decoder output (B, N) at points (B, N, 3), evaluated in chunks of points."""
    return torch.cat([decoder(latents, part) for part in points.split(chunk, dim=1)], dim=1)


def grid_to_mesh(values: np.ndarray, bound: float = 0.55,
                 size: np.ndarray | None = None) -> trimesh.Trimesh:
    """Zero level set of one SDF grid (R, R, R) over ``[-bound, bound]^3`` as a mesh.

    The mesh is in the normalised frame, or scaled per axis by ``size`` (3,) (l, w, h in
    metres). Raises ValueError when the grid has no zero crossing.

    >>> axis = np.linspace(-0.55, 0.55, 32)
    >>> x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    >>> sphere = grid_to_mesh(np.sqrt(x**2 + y**2 + z**2) - 0.4)
    >>> sphere.is_watertight, round(float(sphere.volume), 2)  # 4/3 pi 0.4^3 = 0.268
    (True, 0.27)
    """
    values = np.asarray(values, dtype=np.float32)
    if not values.min() < 0.0 < values.max():
        raise ValueError("the decoded SDF has no zero crossing on the grid: no surface")
    resolution = values.shape[0]
    spacing = 2.0 * bound / (resolution - 1)
    vertices, faces, _, _ = marching_cubes(values, level=0.0, spacing=(spacing,) * 3)
    vertices = vertices - bound
    if size is not None:
        vertices = vertices * np.asarray(size, dtype=np.float64)
    # scikit-image's winding makes the normals point towards increasing values: outwards.
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=True)


def extract_meshes(decoder: SdfDecoder, latents: Tensor, resolution: int = 97,
                   bound: float = 0.55, sizes: np.ndarray | None = None,
                   stride: int = 4) -> list[trimesh.Trimesh]:
    """One mesh per code latents (B, D), optionally scaled by sizes (B, 3) in metres.

    ``resolution``, ``bound`` and ``stride`` are those of :func:`decode_grid`.
    """
    grids = decode_grid(decoder, latents, resolution, bound, stride).cpu().numpy()
    return [grid_to_mesh(grid, bound, None if sizes is None else sizes[i])
            for i, grid in enumerate(grids)]
