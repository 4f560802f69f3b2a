"""Differentiable surfel renderer: silhouette, depth, NOCS and normal images per object.

Stages, each with one job:

* :func:`detection_windows` and :func:`window_projection` choose, per object, a small square
  render window around its 2D detection and crop/scale the camera matrix to it, so the cost
  does not depend on the image size;
* :func:`splat` projects camera-frame surfels (oriented discs) into their window and
  computes, for the K x K pixels around each surfel, a coverage weight with a soft edge
  (the disc's projected ellipse, widened by a small low-pass filter as in EWA splatting);
* :func:`composite` blends the splats: the silhouette is the soft union
  ``1 - prod(1 - alpha)``, depth, NOCS and normals a soft z-buffer with weights
  ``alpha * exp(-(z - z_front) / depth_temperature)``. Back-facing surfels are culled with a
  weight that falls smoothly to zero as the normal turns away from the camera, so that no
  gradient jumps when a surfel crosses the contour.

Everything is batched over objects and differentiable with respect to the surfel positions
and normals (and so to pose, size and latent). One call is a fixed sequence of batched
operations whatever the batch size and the surfels' visibility: no loop over objects, no shape
that depends on the data, nothing read back to the host, so that an iteration of the fitter
can be captured and replayed. Memory is O(B x N x K^2), bounded by the caller's batch.

Window pixel coordinates: the window spans the image region [x0, x1] x [y0, y1] (continuous
image coordinates, where integer values are pixel centres); its pixel (i, j) covers
``x0 + [j, j+1] * (x1 - x0) / S`` and so on, with S = ``settings.window_size``.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from autolabel.geometry import camera_centres, facing_cosine, project_points

CULL_LOGIT = 7.0  # surfels with a cull weight below sigmoid(-7) (~1e-3) are not splatted


@dataclasses.dataclass(frozen=True)
class RenderSettings:
    """Knobs of the renderer, with the defaults used by the fitter.

    Attributes:
        window_size: S, the side of the square render window in pixels.
        window_margin: fraction of the detection's longer side added on each side.
        footprint: K, the side of the pixel neighbourhood each splat touches (odd).
        radius_scale: disc radius as a multiple of the surfel spacing.
        max_radius: cap in pixels on a disc's projected semi-major axis (keeps splats inside
            the K x K neighbourhood).
        softness: pixels; standard deviation of the low-pass filter added to every
            footprint, i.e. the width of the soft silhouette edge.
        depth_temperature: metres; how quickly surfels behind the front-most lose weight.
        kernel_end: Mahalanobis distance at which a splat's coverage reaches zero; it ramps
            down from 1 over the unit interval before it.
        facing_offset: surfels count as camera-facing down to cos(angle) = -facing_offset,
            so discs seen edge-on at the contour keep their full weight.
        facing_softness: width of the back-face cull ramp in units of cos(angle).
        max_alpha: cap of one splat's coverage, so that log(1 - alpha) stays finite.
        max_spacing: pixels; an object whose surfels would lie further apart than this in
            its window (a car seen from behind fills the window with one small face) is
            rendered at a lower resolution and stretched over the window, so that its discs
            still close up without a larger neighbourhood.
    """

    window_size: int = 64
    window_margin: float = 0.15
    footprint: int = 7
    radius_scale: float = 0.9
    max_radius: float = 2.4
    softness: float = 0.4
    depth_temperature: float = 0.1
    kernel_end: float = 1.4
    facing_offset: float = 0.1
    facing_softness: float = 0.04
    max_alpha: float = 0.995
    max_spacing: float = 3.0


@dataclasses.dataclass
class Rendered:
    """Renderer output for B objects in S x S windows.

    Attributes:
        silhouette: (B, S, S) coverage in [0, 1].
        depth: (B, S, S) camera-frame z in metres; 0 where nothing is rendered.
        nocs: (B, S, S, 3) canonical coordinates mapped to [0, 1] (x, y, z + 0.5), or None
            when rendered without attributes.
        normals: (B, S, S, 3) camera-frame unit normals (blended, so not exactly unit), or
            None.
        window: (B, 4) the windows' image regions (x0, y0, x1, y1).
    """

    silhouette: Tensor
    depth: Tensor
    nocs: Tensor | None
    normals: Tensor | None
    window: Tensor


def detection_windows(box2d: Tensor, margin: float) -> Tensor:
    """Square image regions centred on 2D boxes, enlarged by a margin.

    Args:
        box2d: (B, 4) as (x1, y1, x2, y2) pixels. margin: fraction of the longer side added
            on each side.
    Returns:
        (B, 4) as (x0, y0, x1, y1).

    >>> detection_windows(torch.tensor([[100.0, 50, 140, 70]]), 0.25)
    tensor([[ 90.,  30., 150.,  90.]])
    """
    center = (box2d[:, :2] + box2d[:, 2:]) / 2
    half = (box2d[:, 2:] - box2d[:, :2]).amax(dim=1, keepdim=True) * (0.5 + margin)
    return torch.cat([center - half, center + half], dim=1)


def window_projection(projection: Tensor, window: Tensor, window_size: int) -> Tensor:
    """Camera matrices that map camera-frame points to window pixel coordinates.

    Args:
        projection: (B, 3, 4) full-image camera matrices. window: (B, 4) (x0, y0, x1, y1).
        window_size: S.
    Returns:
        (B, 3, 4) such that window pixel (i, j) has its centre at (j + 0.5, i + 0.5) in the
        projected coordinates.
    """
    # The crop [[s, 0, -s x0], [0, s, -s y0], [0, 0, 1]] applied to P, row by row.
    scale = (window_size / (window[:, 2] - window[:, 0])).view(-1, 1, 1)
    shifted = projection[:, :2] - window[:, :2].unsqueeze(-1) * projection[:, 2:]
    return torch.cat([scale * shifted, projection[:, 2:]], dim=1)


@dataclasses.dataclass
class Splats:
    """Per-surfel, per-neighbour-pixel contributions (B objects, N surfels, K^2 pixels).

    Attributes:
        pixel: (B, N, K*K) flat pixel index in the S*S window; -1 outside the window.
        alpha: (B, N, K*K) coverage of that pixel by that surfel, in [0, max_alpha].
        depth: (B, N) camera-frame z of each surfel.
    """

    pixel: Tensor
    alpha: Tensor
    depth: Tensor


def _screen_jacobian(points: Tensor, projection: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pixels, depth and the Jacobian of pixel coordinates w.r.t. camera-frame position.

    Args:
        points: (B, N, 3). projection: (B, 3, 4).
    Returns:
        pixels: (B, N, 2); depth: (B, N); jacobian: (B, N, 2, 3).
    """
    pixels, depth = project_points(points, projection)
    rows = projection[:, :, :3].unsqueeze(1)  # (B, 1, 3, 3)
    jacobian = (rows[:, :, :2] - pixels.unsqueeze(-1) * rows[:, :, 2:3])
    return pixels, depth, jacobian / depth.clamp(min=1e-3)[..., None, None]


def _facing_logit(points: Tensor, normals: Tensor, projection: Tensor,
                  settings: RenderSettings) -> Tensor:
    """(B, N) argument of the back-face cull's sigmoid: positive for camera-facing surfels."""
    facing = facing_cosine(points, normals, camera_centres(projection))
    return (facing + settings.facing_offset) / settings.facing_softness


def splat(
    points: Tensor, normals: Tensor, valid: Tensor, spacing: Tensor,
    projection: Tensor, settings: RenderSettings,
) -> Splats:
    """Project oriented surfel discs into their windows with soft-edged footprints.

    Each surfel is a disc of radius ``radius_scale * spacing`` tangent to the surface. Its
    footprint is the projected ellipse ``Sigma = r^2 J (I - n n^T) J^T`` widened by a
    low-pass filter ``softness^2 I`` (as in EWA splatting), so a disc seen edge-on at the
    contour stays thin and the silhouette does not bulge by a splat radius. Coverage of a
    pixel at Mahalanobis distance ``m`` falls from 1 at ``m = kernel_end - 1`` to 0 at
    ``m = kernel_end`` along a smoothstep, which is C1 and exactly zero outside the K x K
    neighbourhood. Surfels facing away from the camera (cull weight below
    ``sigmoid(-CULL_LOGIT)``, about 1e-3; the cull keeps surfels down to cos -0.38, so that
    edge-on discs keep their weight) cover nothing and do not enter the z-buffer.

    Args:
        points: (B, N, 3) camera frame. normals: (B, N, 3) camera frame, unit.
        valid: (B, N) bool. spacing: (B,) metres between neighbouring surfels.
        projection: (B, 3, 4) window camera matrices (see :func:`window_projection`).
        settings: renderer knobs.
    Returns:
        :class:`Splats`.
    """
    size, k = settings.window_size, settings.footprint
    pixels, depth, jacobian = _screen_jacobian(points, projection)
    # J (I - n n^T) J^T = J J^T - (J n)(J n)^T, written out per entry.
    radius_sq = (settings.radius_scale * spacing).pow(2).view(-1, 1)
    along = (jacobian * normals.unsqueeze(-2)).sum(-1)  # (B, N, 2): J n
    u_row, v_row = jacobian[..., 0, :], jacobian[..., 1, :]
    a = radius_sq * ((u_row * u_row).sum(-1) - along[..., 0] ** 2)
    b = radius_sq * ((u_row * v_row).sum(-1) - along[..., 0] * along[..., 1])
    c = radius_sq * ((v_row * v_row).sum(-1) - along[..., 1] ** 2)
    # Cap the ellipse so that it fits the K x K neighbourhood (scaling keeps its shape).
    largest = (a + c) / 2 + torch.sqrt(((a - c) / 2) ** 2 + b * b + 1e-12)
    shrink = (settings.max_radius**2 / largest.clamp(min=1e-12)).clamp(max=1.0)
    filtered = settings.softness**2
    a, b, c = a * shrink + filtered, b * shrink, c * shrink + filtered
    determinant = a * c - b * b

    facing_logit = _facing_logit(points, normals, projection, settings)

    offsets = torch.arange(k, device=points.device) - k // 2
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    base = torch.floor(pixels.detach()).long()
    column = base[..., 0:1] + dx.reshape(1, 1, -1)
    row = base[..., 1:2] + dy.reshape(1, 1, -1)
    du = column.to(points.dtype) + 0.5 - pixels[..., 0:1]
    dv = row.to(points.dtype) + 0.5 - pixels[..., 1:2]
    mahalanobis_sq = (c.unsqueeze(-1) * du * du - 2 * b.unsqueeze(-1) * du * dv
                      + a.unsqueeze(-1) * dv * dv) / determinant.unsqueeze(-1)
    ramp = (settings.kernel_end - torch.sqrt(mahalanobis_sq + 1e-12)).clamp(0, 1)
    coverage = ramp * ramp * (3 - 2 * ramp)  # smoothstep: C1 and exactly zero at the edge
    inside = (column >= 0) & (column < size) & (row >= 0) & (row < size)
    front = valid & (depth > 1e-3) & (facing_logit.detach() > -CULL_LOGIT)
    usable = inside & front.unsqueeze(-1)
    alpha = settings.max_alpha * coverage * torch.sigmoid(facing_logit).unsqueeze(-1)
    alpha = torch.where(usable, alpha, torch.zeros_like(alpha))
    pixel = torch.where(usable, row * size + column, torch.full_like(row, -1))
    return Splats(pixel, alpha, depth)


def composite(
    splats: Splats, attributes: Tensor | None, settings: RenderSettings
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Blend splats into silhouette, depth and attribute images.

    Args:
        splats: from :func:`splat` for B objects and N surfels.
        attributes: (B, N, C) per-surfel values blended with the soft z-buffer, or None.
        settings: renderer knobs.
    Returns:
        silhouette: (B, S, S); depth: (B, S, S), 0 where empty; blended attributes
        (B, S, S, C), 0 where empty (None without attributes).
    """
    batch, count, taps = splats.alpha.shape
    pixels_per_object = settings.window_size**2
    offset = torch.arange(batch, device=splats.alpha.device).view(batch, 1, 1) * pixels_per_object
    used = splats.pixel >= 0
    index = torch.where(used, splats.pixel + offset, torch.zeros_like(splats.pixel)).reshape(-1)
    total = batch * pixels_per_object

    log_transmittance = torch.log1p(-splats.alpha).reshape(-1)
    empty = torch.zeros(total, dtype=splats.alpha.dtype, device=splats.alpha.device)
    silhouette = 1 - torch.exp(empty.index_add(0, index, log_transmittance))

    depth = splats.depth.unsqueeze(-1).expand(-1, -1, taps).reshape(-1)
    front = torch.full((total,), float("inf"), dtype=depth.dtype, device=depth.device)
    front = front.scatter_reduce(0, index, torch.where(used.reshape(-1), depth.detach(),
                                                       torch.full_like(depth, float("inf"))),
                                 reduce="amin")
    behind = (depth - front[index]).clamp(min=0)
    weight = splats.alpha.reshape(-1) * torch.exp(-behind / settings.depth_temperature)
    normaliser = empty.index_add(0, index, weight).clamp(min=1e-8)
    shape = (batch, settings.window_size, settings.window_size)
    blended_depth = empty.index_add(0, index, weight * depth) / normaliser
    if attributes is None:
        return silhouette.reshape(shape), blended_depth.reshape(shape), None
    values = attributes.unsqueeze(2).expand(-1, -1, taps, -1).reshape(-1, attributes.shape[-1])
    blended = torch.zeros(total, values.shape[-1], dtype=values.dtype, device=values.device)
    blended = blended.index_add(0, index, weight.unsqueeze(-1) * values)
    blended = blended / normaliser.unsqueeze(-1)
    return (silhouette.reshape(shape), blended_depth.reshape(shape),
            blended.reshape(*shape, -1))


def render(
    points: Tensor, normals: Tensor, canonical: Tensor, valid: Tensor, spacing: Tensor,
    projection: Tensor, window: Tensor, settings: RenderSettings = RenderSettings(),
    with_attributes: bool = True,
) -> Rendered:
    """Render posed surfels of B objects into their windows.

    Args:
        points: (B, N, 3) camera frame. normals: (B, N, 3) camera frame.
        canonical: (B, N, 3) the same surfels in the canonical frame (for NOCS).
        valid: (B, N) bool. spacing: (B,) metres between neighbouring surfels.
        projection: (B, 3, 4) full-image camera matrices. window: (B, 4) (x0, y0, x1, y1).
        settings: renderer knobs.
        with_attributes: also blend NOCS and normal images (without them one channel, depth,
            is blended per tap instead of seven).
    Returns:
        :class:`Rendered` with S x S images per object (``nocs`` and ``normals`` None
        without attributes).
    """
    size = settings.window_size
    resolution = render_resolution(points, valid, spacing,
                                   window_projection(projection, window, size), settings)
    window_cameras = window_projection(projection, window, size * resolution)
    splats = splat(points, normals, valid, spacing, window_cameras, settings)
    attributes = torch.cat([canonical + 0.5, normals], dim=-1) if with_attributes else None
    silhouette, depth, blended = stretch(*composite(splats, attributes, settings), resolution)
    if blended is None:
        return Rendered(silhouette, depth, None, None, window)
    return Rendered(silhouette, depth, blended[..., :3], blended[..., 3:], window)


def render_resolution(points: Tensor, valid: Tensor, spacing: Tensor, window_cameras: Tensor,
                      settings: RenderSettings) -> Tensor:
    """(B,) fraction of the window's resolution at which to render each object, in (0, 1].

    The surfel spacing in window pixels is largest at the object's nearest point; the
    fraction brings it down to ``settings.max_spacing`` (1 where it already is). Detached: a
    choice of resolution, not a parameter.

    Args:
        points: (B, N, 3) camera frame. valid: (B, N). spacing: (B,) metres.
        window_cameras: (B, 3, 4) full-resolution window cameras.
    """
    with torch.no_grad():
        _, depth = project_points(points, window_cameras)
        nearest = torch.where(valid, depth, torch.full_like(depth, torch.inf)).amin(1)
        # Window pixels per unit of x/z: the cameras are K [I | t] (the rectified frame).
        focal = torch.maximum(window_cameras[:, 0, 0], window_cameras[:, 1, 1])
        pixels = focal * spacing / nearest.clamp(min=1e-3)
        return (settings.max_spacing / pixels.clamp(min=1e-12)).clamp(max=1.0)


def stretch(silhouette: Tensor, depth: Tensor, blended: Tensor | None, resolution: Tensor
            ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Stretch each object's top-left ``S * resolution`` pixels over its whole window.

    Bilinear resampling (differentiable); depth and attributes are resampled premultiplied
    by the coverage, so that empty pixels (depth 0) do not drag the values at the edge. Every
    object is resampled (asking whether any needs it would wait for the device), and objects
    at resolution 1 keep their images exactly.

    Args:
        silhouette: (B, S, S). depth: (B, S, S). blended: (B, S, S, C) or None.
        resolution: (B,) in (0, 1]; objects at 1 are returned as they are.
    Returns:
        The same images at full resolution.
    """
    batch = silhouette.shape[0]
    layers = [silhouette.unsqueeze(1), (depth * silhouette).unsqueeze(1)]
    if blended is not None:
        layers.append((blended * silhouette.unsqueeze(-1)).permute(0, 3, 1, 2))
    stack = torch.cat(layers, dim=1)
    zero = torch.zeros_like(resolution)
    theta = torch.stack([resolution, zero, resolution - 1,
                         zero, resolution, resolution - 1], dim=-1).view(batch, 2, 3)
    grid = torch.nn.functional.affine_grid(theta, list(stack.shape), align_corners=False)
    stack = torch.nn.functional.grid_sample(stack, grid, mode="bilinear",
                                            padding_mode="zeros", align_corners=False)
    coverage = stack[:, 0]
    weight = coverage.clamp(min=1e-6)
    covered = coverage > 1e-6
    full = (resolution >= 1).view(-1, 1, 1)
    depth = torch.where(full, depth,
                        torch.where(covered, stack[:, 1] / weight, torch.zeros_like(depth)))
    if blended is not None:
        resampled = stack[:, 2:].permute(0, 2, 3, 1) / weight.unsqueeze(-1)
        resampled = torch.where(covered.unsqueeze(-1), resampled, torch.zeros_like(blended))
        blended = torch.where(full.unsqueeze(-1), blended, resampled)
    return torch.where(full, silhouette, coverage), depth, blended
