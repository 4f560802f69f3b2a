"""Surface points (surfels) of SDF shapes that stay differentiable with respect to the latent.

Two stages, as in the design:

1. :func:`extract_surface_points` runs once per shape (and again only when the latent has
   moved far): the SDF is evaluated on a coarse grid, the narrow band around the zero level
   set is projected onto the surface, and the points are thinned to an even spacing *in
   metres* for the object's current size (a canonical-space spacing would be stretched by the
   anisotropic size scaling), padded to a common count with a validity mask.
2. :func:`project_to_surface` runs every iteration: Newton steps
   ``p <- p - f(p) grad f / |grad f|^2`` move the points back onto the zero level set of the
   current latent. The steps run without a graph (as chord steps along the points' previous
   normals when those are known, which need no gradient); one last step keeps it, which gives
   exactly the implicit-function gradient ``dp/dz = -(df/dz) grad f / |grad f|^2``. Normals
   are that step's ``grad f``: with ``create_graph`` they too depend differentiably on the
   latent; without, ``f`` enters that step linearised in the latent with its per-point
   derivative ``df/dz`` (same value, same first-order gradient), so the fit's backward pass
   never runs through the network.

Points are in the canonical object frame (x forward, y left, z up; tight box about
[-0.5, 0.5]^3); :func:`pose_surfels` places them in the camera frame.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from autolabel.geometry import facing_cosine
from autolabel.shapes import ShapeSource


@dataclasses.dataclass(frozen=True)
class SurfelSettings:
    """Knobs of surfel extraction and re-projection.

    Attributes:
        count: surfels per object (N), the same for every object of a batch.
        grid_resolution: grid points per axis for the one-off band extraction.
        grid_extent: half side of the canonical cube that the grid covers.
        newton_steps: graph-free Newton steps per re-projection (one more keeps the graph).
        extraction_newton_steps: the same for the grid points of an extraction, which start
            up to a grid cell away from the surface.
        differentiable_normals: keep the normals' graph to the latent (``create_graph``).
            Without it positions still get the exact first-order gradient
            ``-(df/dz) grad f / |grad f|^2`` (the term with ``d grad f / dz`` is multiplied by
            f, which is zero on the surface), from per-point derivatives ``df/dz`` taken in
            the same pass as ``grad f``, and one iteration costs about a third as much.
        tolerance: canonical units; a point whose last Newton step is longer than this has
            not converged (the step is first-order exact, so a short last step lands on the
            surface to within its square times the curvature).
        query_chunk: points per SDF call during grid extraction (bounds its memory).
            Re-projection treats the whole batch at once, so that its operations do not
            depend on the batch size.
    """

    count: int = 1024
    grid_resolution: int = 32
    grid_extent: float = 0.6
    newton_steps: int = 1
    extraction_newton_steps: int = 2
    differentiable_normals: bool = True
    tolerance: float = 1e-2
    query_chunk: int = 65536


@dataclasses.dataclass
class Surfels:
    """Surface points of a batch of shapes in the canonical object frame.

    Attributes:
        points: (B, N, 3) on the zero level set (differentiable w.r.t. the latent).
        normals: (B, N, 3) unit outward normals (differentiable w.r.t. the latent).
        valid: (B, N) bool; False for padding and for points that did not converge.
        dropped: (B,) number of points that failed to converge in the last projection.
    """

    points: Tensor
    normals: Tensor
    valid: Tensor
    dropped: Tensor


def _sdf_and_gradient(
    sdf: ShapeSource, latent: Tensor, points: Tensor, create_graph: bool
) -> tuple[Tensor, Tensor]:
    """SDF values (B, N) and spatial gradients (B, N, 3) at ``points`` (B, N, 3).

    The values keep their graph to ``latent``; the gradients keep theirs only with
    ``create_graph``.
    """
    with torch.enable_grad():
        points = points.detach().requires_grad_(True)
        values = sdf(latent, points)
        (gradient,) = torch.autograd.grad(values.sum(), points, create_graph=create_graph,
                                          retain_graph=values.requires_grad)
    return values, gradient


def _value_and_gradients(sdf: ShapeSource, latent: Tensor, points: Tensor
                         ) -> tuple[Tensor, Tensor, Tensor]:
    """SDF values (B, N) and their derivatives with respect to the points (B, N, 3) and to the
    latent at every point (B, N, D), from one pass through the shape source, all detached.
    (``torch.func.vjp`` rather than ``torch.autograd.grad``: torch.compile traces it.)"""
    codes = latent.detach().unsqueeze(1).expand(-1, points.shape[1], -1)
    values, pull_back = torch.func.vjp(sdf, codes, points.detach())
    code_gradient, point_gradient = pull_back(torch.ones_like(values))
    return values, point_gradient, code_gradient


def _length_and_direction(gradient: Tensor) -> tuple[Tensor, Tensor]:
    """Norms (..., 1) of SDF gradients (..., 3), kept off zero, and the unit directions."""
    length = gradient.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return length, gradient / length


def project_to_surface(
    sdf: ShapeSource, latent: Tensor, points: Tensor, valid: Tensor,
    settings: SurfelSettings = SurfelSettings(), normals: Tensor | None = None,
) -> Surfels:
    """Re-project points onto the zero level set of the current latent.

    Args:
        sdf: shape source. latent: (B, D), may require grad.
        points: (B, N, 3) starting points near the surface (their gradient is ignored).
        valid: (B, N) bool mask of the points to keep.
        settings: Newton step count and convergence tolerance.
        normals: (B, N, 3) unit normals at the starting points (from their last projection),
            or None. With them the graph-free steps are chord steps along them, which need
            the SDF's values only (an SDF's gradient has unit length).
    Returns:
        :class:`Surfels` whose points and normals carry gradients to ``latent``.
    """
    frozen_latent = latent.detach()
    current = points.detach()
    for _ in range(settings.newton_steps):
        if normals is None:
            values, gradient = _sdf_and_gradient(sdf, frozen_latent, current, False)
            length, unit = _length_and_direction(gradient)
            current = torch.addcmul(current, (values.detach().unsqueeze(-1) / length),
                                    unit, value=-1).detach()
        else:
            with torch.no_grad():
                current = torch.addcmul(current, sdf(frozen_latent, current).unsqueeze(-1),
                                        normals, value=-1)
    if settings.differentiable_normals or not latent.requires_grad:
        values, gradient = _sdf_and_gradient(sdf, latent, current,
                                             settings.differentiable_normals)
        values = values.unsqueeze(-1)
    else:
        # The values to first order in the latent: their gradient with respect to it is the
        # exact one, and the backward pass of the fit no longer runs through the network.
        values, gradient, latent_gradient = _value_and_gradients(sdf, latent, current)
        values = torch.baddbmm(values.unsqueeze(-1), latent_gradient,
                               (latent - frozen_latent).unsqueeze(-1))
    # One Newton step p - f grad f / |grad f|^2. It is short (within the tolerance), so the
    # gradient where it started is its normal; reusing it saves a second pass through the
    # network.
    length, normals = _length_and_direction(gradient)
    surface = torch.addcmul(current, values / length, normals, value=-1)
    if not latent.requires_grad:  # keep no graph to the (detached) starting points
        surface, normals = surface.detach(), normals.detach()
    converged = (values.detach().abs() < settings.tolerance * length.detach()).squeeze(-1)
    converged &= torch.isfinite(surface.detach()).all(-1)
    dropped = (valid & ~converged).sum(-1)
    keep = valid & converged
    drop = ~keep.unsqueeze(-1)
    return Surfels(surface.masked_fill(drop, 0.0), normals.masked_fill(drop, 0.0), keep, dropped)


def surface_area_estimate(size: Tensor) -> Tensor:
    """Surface area of boxes of the given size in m^2, a stand-in for the shape's area.

    Args:
        size: (B, 3) as (l, w, h).
    Returns:
        (B,) area of the box surface 2 (lw + lh + wh).

    >>> surface_area_estimate(torch.tensor([[4.0, 2.0, 1.5]]))
    tensor([34.])
    """
    return 2 * (size * size.roll(1, -1)).sum(-1)


def surfel_spacing(size: Tensor, count: int) -> Tensor:
    """Typical distance in metres between neighbouring surfels: (B,) from size (B, 3)."""
    return (surface_area_estimate(size) / count).sqrt()


def _grid(settings: SurfelSettings, dtype: torch.dtype, device) -> Tensor:
    """(R^3, 3) grid points covering the canonical cube."""
    axis = torch.linspace(-settings.grid_extent, settings.grid_extent,
                          settings.grid_resolution, dtype=dtype, device=device)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def _surface_points(sdf: ShapeSource, latent: Tensor, settings: SurfelSettings,
                    generator: torch.Generator) -> Tensor:
    """Points on the zero level set of one shape: (M, 3) from latent (1, D).

    The grid points within one cell diagonal of the surface are subsampled to a few times the
    surfel count (the band holds far more than needed) and Newton-projected onto it.
    """
    grid = _grid(settings, latent.dtype, latent.device)
    cell = 2 * settings.grid_extent / (settings.grid_resolution - 1)
    with torch.no_grad():
        values = torch.cat([sdf(latent, chunk[None]) for chunk in
                            grid.split(settings.query_chunk)], dim=1)[0]
    band = grid[values.abs() < cell * 3**0.5]
    limit = 4 * settings.count
    if band.shape[0] > limit:
        band = band[torch.randperm(band.shape[0], generator=generator)[:limit].to(band.device)]
    valid = torch.ones(1, band.shape[0], dtype=torch.bool, device=band.device)
    steps = dataclasses.replace(settings, newton_steps=settings.extraction_newton_steps)
    projected = project_to_surface(sdf, latent, band[None], valid, steps)
    return projected.points[0][projected.valid[0]].detach()


def _voxel_keys(voxels: Tensor) -> Tensor:
    """One int64 per integer voxel (M, 3) -> (M,), equal exactly for equal voxels (a 1-D
    ``unique`` is many times faster than ``unique(dim=0)``)."""
    low = voxels.amin(0)
    extent = voxels.amax(0) - low + 1
    shifted = voxels - low
    return (shifted[:, 0] * extent[1] + shifted[:, 1]) * extent[2] + shifted[:, 2]


def _thin_evenly(points: Tensor, scale: Tensor, spacing: float, count: int,
                 generator: torch.Generator) -> Tensor:
    """Keep the point nearest the centre of each occupied metric voxel, at most ``count``.

    The voxel side is the smallest of a few multiples of ``spacing`` that leaves at most
    ``count`` occupied voxels, so the kept points are spread evenly (a random cut of a denser
    set would leave gaps that a disc of one spacing's radius does not close).

    Args:
        points: (M, 3) canonical. scale: (3,) metres per canonical unit along each axis.
    Returns:
        (K, 3) with K <= count.
    """
    metric = points * scale
    for factor in (0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.35, 1.5):
        side = spacing * factor
        voxels = torch.floor(metric / side)
        _, inverse = torch.unique(_voxel_keys(voxels.long()), return_inverse=True)
        if int(inverse.max()) + 1 <= count:
            break
    offset = (metric / side - voxels - 0.5).pow(2).sum(-1)
    # Order by (voxel, distance to its centre); the first point of every voxel is kept.
    order = torch.argsort(offset)
    order = order[torch.argsort(inverse[order], stable=True)]
    first = torch.ones_like(order, dtype=torch.bool)
    first[1:] = inverse[order][1:] != inverse[order][:-1]
    kept = points[order[first]]
    if kept.shape[0] > count:
        kept = kept[torch.randperm(kept.shape[0], generator=generator)[:count].to(points.device)]
    # Thinning can miss the shape's extremes (a wheel touches the ground along a line), which
    # set its projected extent: put back the support points in 26 directions.
    directions = torch.stack(torch.meshgrid(*[torch.tensor([-1.0, 0.0, 1.0])] * 3,
                                            indexing="ij"), -1).reshape(-1, 3)
    directions = directions[directions.abs().sum(-1) > 0].to(points)
    support = points[((points * scale) @ directions.T).argmax(0)]
    return torch.cat([support, kept])[:count]


def extract_surface_points(
    sdf: ShapeSource, latent: Tensor, size: Tensor,
    settings: SurfelSettings = SurfelSettings(), seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Evenly spaced surface points of each shape for its metric size.

    Args:
        sdf: shape source. latent: (B, D). size: (B, 3) metres (l, w, h) used for spacing.
        settings: grid and count. seed: seed of the random thinning.
    Returns:
        points: (B, N, 3) canonical, on the surface to Newton precision, N = settings.count;
        valid: (B, N) bool, False for padding where a shape yields fewer points.
    """
    generator = torch.Generator().manual_seed(seed)
    latent, size = latent.detach(), size.detach()
    spacing = surfel_spacing(size, settings.count)
    batch = latent.shape[0]
    points = latent.new_zeros(batch, settings.count, 3)
    valid = torch.zeros(batch, settings.count, dtype=torch.bool, device=latent.device)
    # Objects often share a latent (every fit starts at the prior mean): extract once each.
    shapes, which = torch.unique(latent, dim=0, return_inverse=True)
    surfaces = [_surface_points(sdf, shape[None], settings, generator) for shape in shapes]
    for b in range(batch):
        on_surface = surfaces[int(which[b])]
        if on_surface.shape[0] == 0:
            continue
        kept = _thin_evenly(on_surface, size[b], float(spacing[b]), settings.count, generator)
        points[b, : kept.shape[0]] = kept
        valid[b, : kept.shape[0]] = True
    return points, valid


def project_facing(
    sdf: ShapeSource, latent: Tensor, surfels: Surfels, center: Tensor, rotation: Tensor,
    size: Tensor, camera_centre: Tensor, min_cos: float,
    settings: SurfelSettings = SurfelSettings(),
) -> tuple[Surfels, Tensor]:
    """Re-project only the surfels that face the camera at the given pose.

    Surfels turned away from the camera are culled by the renderer, so an iteration only
    needs the others; ``min_cos`` leaves a margin below the renderer's cull. The others are
    marked invalid rather than left out: every object keeps its N surfels, so the shapes of
    the tensors do not depend on the pose (the SDF is evaluated at them all the same).

    Args:
        sdf: shape source. latent: (B, D), may require grad.
        surfels: canonical surfels (B, N) near the surface, with normals (detached).
        center: (B, 3). rotation: (B, 3, 3). size: (B, 3): the pose, detached.
        camera_centre: (B, 3) optical centres in the camera frame.
        min_cos: keep surfels whose normal makes a cosine above this with the direction to
            the camera.
        settings: Newton steps and tolerance.
    Returns:
        The projected surfels (B, N); only the facing ones that converged are valid, and
        ``dropped`` counts the facing ones that did not.
    """
    with torch.no_grad():
        points, normals = pose_surfels(surfels, center, rotation, size)
        facing = facing_cosine(points, normals, camera_centre) > min_cos
    return project_to_surface(sdf, latent, surfels.points, surfels.valid & facing, settings,
                              surfels.normals)


def pose_surfels(
    surfels: Surfels, center: Tensor, rotation: Tensor, size: Tensor
) -> tuple[Tensor, Tensor]:
    """Scale canonical surfels by the object size and place them in the camera frame.

    Args:
        surfels: canonical surfels (B, N). center: (B, 3). rotation: (B, 3, 3)
            camera-from-object. size: (B, 3) metres (l, w, h).
    Returns:
        points: (B, N, 3) camera frame; normals: (B, N, 3) unit camera-frame normals (the
        inverse-transpose of the scaling keeps them perpendicular to the scaled surface).
        Differentiable with respect to every argument (:class:`_Posed`).
    """
    return _Posed.apply(surfels.points, surfels.normals, center, rotation, size)


class _Posed(torch.autograd.Function):
    """:func:`pose_surfels`, with a hand-written backward pass: points and normals are rotated
    in one product, and the gradients of the pose are sums over the surfels
    (tests/test_surfels.py checks them against finite differences)."""

    @staticmethod
    def forward(ctx, points: Tensor, normals: Tensor, center: Tensor, rotation: Tensor,
                size: Tensor) -> tuple[Tensor, Tensor]:
        scale = size.unsqueeze(1)
        scaled = normals / scale
        length = scaled.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        local = torch.cat([points * scale, scaled / length], dim=1)  # (B, 2N, 3), object frame
        posed = torch.bmm(local, rotation.transpose(1, 2))
        ctx.save_for_backward(points, scaled, length, local, rotation, size)
        count = points.shape[1]
        return posed[:, :count] + center.unsqueeze(1), posed[:, count:]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_points: Tensor, grad_normals: Tensor):
        points, scaled, length, local, rotation, size = ctx.saved_tensors
        count = points.shape[1]
        grad_posed = torch.cat([grad_points, grad_normals], dim=1)
        grad_rotation = torch.bmm(grad_posed.transpose(1, 2), local)
        grad_metric, grad_unit = torch.bmm(grad_posed, rotation).split(count, dim=1)
        # unit = scaled / |scaled|, scaled = normals / size, metric = points * size.
        unit = local[:, count:]
        grad_scaled = torch.addcmul(grad_unit, (grad_unit * unit).sum(-1, keepdim=True), unit,
                                    value=-1) / length
        grad_size = (grad_metric * points).sum(1) - (grad_scaled * scaled).sum(1) / size
        grad_canonical = grad_metric * size.unsqueeze(1) if ctx.needs_input_grad[0] else None
        grad_directions = grad_scaled / size.unsqueeze(1) if ctx.needs_input_grad[1] else None
        return grad_canonical, grad_directions, grad_points.sum(1), grad_rotation, grad_size
