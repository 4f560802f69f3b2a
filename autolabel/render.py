"""Differentiable surfel renderer: silhouette, depth, NOCS and normal images per object.

Stages, each with one job:

* :func:`detection_windows` and :class:`WindowCameras` choose, per object, a small square
  render window around its 2D detection and crop/scale the camera matrix to it, so the cost
  does not depend on the image size (the cameras are made once per batch);
* :func:`splat` projects camera-frame surfels (oriented discs) into their windows: per surfel
  a centre, the conic of its projected ellipse (widened by a small low-pass filter as in EWA
  splatting) and an opacity, zero for surfels culled as back-facing;
* :func:`rasterise` covers the K x K pixels around each splat with a soft-edged footprint and
  blends the splats: the silhouette is the soft union ``1 - prod(1 - alpha)``, depth, NOCS
  and normals a soft z-buffer with weights ``alpha * exp(-(z - z_front) / depth_temperature)``.
  Its backward pass is written by hand (:class:`_Rasterise`), so that the per-pixel work of an
  iteration is a few wide operators whatever the settings. Back-facing surfels are culled with
  a weight that falls smoothly to zero as the normal turns away from the camera, so that no
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
import functools

import torch
from torch import Tensor
from torch.nn import functional

from autolabel.geometry import camera_centres

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
        pixels: (B, N, 2) every surfel's projection in full-resolution window pixels, culled
            or not (meaningless for surfels behind the camera).
    """

    silhouette: Tensor
    depth: Tensor
    nocs: Tensor | None
    normals: Tensor | None
    window: Tensor
    pixels: Tensor


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
class WindowCameras:
    """The cameras of B render windows in the forms the renderer reads, made once per batch.

    Attributes:
        window: (B, 4) image regions (x0, y0, x1, y1).
        matrix: (B, 3, 4) camera matrices onto full-resolution window pixels
            (:func:`window_projection`).
        linear: (B, 3, 3) the matrices' left 3 x 3 blocks, transposed (``x @ linear``).
        offset: (B, 1, 3) their last columns.
        rows: (B, 1, 2, 3) and last_row: (B, 1, 1, 3), rows of the left blocks: the
            Jacobian of pixel (u, v) with respect to a camera-frame point at depth w is
            ``(rows - (u, v) last_row) / w``.
        centre: (B, 3) optical centres in the camera frame.
        focal: (B,) window pixels per unit of x/z (the larger focal length).
    """

    window: Tensor
    matrix: Tensor
    linear: Tensor
    offset: Tensor
    rows: Tensor
    last_row: Tensor
    centre: Tensor
    focal: Tensor

    @classmethod
    def of(cls, projection: Tensor, window: Tensor, window_size: int) -> WindowCameras:
        """Cameras of windows (B, 4) of S = ``window_size`` pixels in images taken with
        ``projection`` (B, 3, 4)."""
        matrix = window_projection(projection, window, window_size)
        block = matrix[:, None, :, :3]
        return cls(window, matrix, matrix[:, :, :3].transpose(1, 2), matrix[:, None, :, 3],
                   block[:, :, :2], block[:, :, 2:], camera_centres(projection),
                   torch.maximum(matrix[:, 0, 0], matrix[:, 1, 1]))


@dataclasses.dataclass
class Splats:
    """Screen-space splats of B objects' N surfels.

    Attributes:
        pixels: (B, N, 2) projected centres in full-resolution window pixels.
        depth: (B, N) homogeneous depth ``w`` of the centres (camera z plus the camera's
            small ``P[2, 3]``).
        resolution: (B,) fraction of the window's resolution the object is rendered at
            (:func:`render_resolution`), detached; render pixels are ``pixels * resolution``.
        conic: (B, N, 3) the inverse Q of the footprint's covariance as (uu, uv, vv), render
            pixels^-2: a pixel at offset d from the centre is at Mahalanobis distance
            ``sqrt(d^T Q d)``.
        opacity: (B, N) coverage at the centre: ``max_alpha`` times the back-face cull
            weight; 0 for surfels that are invalid, behind the camera or culled.
    """

    pixels: Tensor
    depth: Tensor
    resolution: Tensor
    conic: Tensor
    opacity: Tensor


@dataclasses.dataclass(frozen=True)
class _Tables:
    """Constant tensors of a renderer setting on one device (see :func:`_tables`).

    Attributes:
        pad: pixels of canvas around the window. side: canvas side, S + 2 pad.
        tap_offsets: (2, K*K) offset (u, v) of each tap's pixel centre from its surfel's
            pixel corner. tap_index: (K*K,) the same offset in flat canvas pixels, plus
            the padding. stride: (2,) flat canvas pixels per step in u and v.
        gram_left, gram_right: (3,) row pairs (0, 0), (0, 1), (1, 1) of a 2 x N matrix.
        eigen: (3, 3) maps (a, b, c) to ((a + c) / 2, (a - c) / 2, b).
        filtered: (3,) the low-pass filter's covariance (uu, uv, vv).
        adjugate: (3,) signs that turn (a, b, c) reversed into the adjugate (c, -b, a).
        symmetric: (2, 2) [[1, 1/2], [1/2, 1]] and doubled: (2, 2) [[2, 1], [1, 2]], the
            factors between the gradients of (uu, uv, vv) and of the symmetric matrix.
        upper: (3,) entries (0, 0), (0, 1), (1, 1) of a flattened 2 x 2 matrix.
        inverse_fold: (3,) -(1, 2, 1): times the upper entries of ``Q G Q``, the gradient of
            (uu, uv, vv) of a matrix whose inverse Q has gradient G (the minus of
            ``-Q G Q``, the off-diagonal counted twice).
        stretch_scale, stretch_shift: (2, 3) the stretch's affine map is
            ``resolution * scale + shift``.
    """

    pad: int
    side: int
    tap_offsets: Tensor
    tap_index: Tensor
    stride: Tensor
    gram_left: Tensor
    gram_right: Tensor
    eigen: Tensor
    filtered: Tensor
    adjugate: Tensor
    symmetric: Tensor
    doubled: Tensor
    upper: Tensor
    inverse_fold: Tensor
    stretch_scale: Tensor
    stretch_shift: Tensor


@functools.lru_cache(maxsize=16)
def _tables(settings: RenderSettings, dtype: torch.dtype, device: torch.device) -> _Tables:
    """The constant tensors of ``settings`` on ``device``, made once (never written to).

    Taps of a splat lie within ``footprint // 2`` pixels of its pixel; a splat's pixel is
    kept within ``footprint // 2 + 1`` pixels of the window (:class:`_Rasterise`), so the
    canvas pads the window by ``2 (footprint // 2) + 1``.
    """
    half = settings.footprint // 2
    pad = 2 * half + 1
    side = settings.window_size + 2 * pad
    steps = torch.arange(-half, half + 1)
    dv, du = torch.meshgrid(steps, steps, indexing="ij")  # row-major taps, v outer
    offsets = torch.stack([du.reshape(-1), dv.reshape(-1)], dim=-1)
    table = functools.partial(torch.tensor, dtype=dtype, device=device)
    return _Tables(
        pad, side, (offsets.T + 0.5).to(dtype=dtype, device=device),
        ((offsets[:, 1] + pad) * side + offsets[:, 0] + pad).to(device),
        torch.tensor([1, side], device=device),
        torch.tensor([0, 0, 1], device=device), torch.tensor([0, 1, 1], device=device),
        table([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.5, -0.5, 0.0]]),
        table([settings.softness**2, 0.0, settings.softness**2]), table([1.0, -1.0, 1.0]),
        table([[1.0, 0.5], [0.5, 1.0]]), table([[2.0, 1.0], [1.0, 2.0]]),
        torch.tensor([0, 1, 3], device=device), table([-1.0, -2.0, -1.0]),
        table([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]), table([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]]))


def render_resolution(depth: Tensor, valid: Tensor, spacing: Tensor, cameras: WindowCameras,
                      settings: RenderSettings) -> Tensor:
    """(B,) fraction of the window's resolution at which to render each object, in (0, 1].

    The surfel spacing in window pixels is largest at the object's nearest point; the
    fraction brings it down to ``settings.max_spacing`` (1 where it already is). Detached: a
    choice of resolution, not a parameter.

    Args:
        depth: (B, N) homogeneous depth of the surfels (see :class:`Splats`). valid: (B, N).
        spacing: (B,) metres. cameras: the windows' cameras.
    """
    with torch.no_grad():
        nearest = depth.masked_fill(~valid, torch.inf).amin(1)
        # Window pixels per unit of x/z: the cameras are K [I | t] (the rectified frame).
        pixels = cameras.focal * spacing / nearest.clamp(min=1e-3)
        return (settings.max_spacing / pixels.clamp(min=1e-12)).clamp(max=1.0)


def splat(points: Tensor, normals: Tensor, valid: Tensor, spacing: Tensor,
          cameras: WindowCameras, settings: RenderSettings) -> Splats:
    """Project oriented surfel discs into their windows.

    Each surfel is a disc of radius ``radius_scale * spacing`` tangent to the surface. Its
    footprint is the projected ellipse ``Sigma = r^2 J (I - n n^T) J^T`` (J the Jacobian of
    the render pixel with respect to the camera-frame point), capped so that its semi-major
    axis stays within ``max_radius`` (scaling keeps its shape) and widened by a low-pass
    filter ``softness^2 I`` (as in EWA splatting), so a disc seen edge-on at the contour stays
    thin and the silhouette does not bulge by a splat radius. Surfels facing away from the
    camera (cull weight below ``sigmoid(-CULL_LOGIT)``, about 1e-3; the cull keeps surfels down
    to cos -0.38, so that edge-on discs keep their weight) get opacity 0.

    Args:
        points: (B, N, 3) camera frame. normals: (B, N, 3) camera frame, unit.
        valid: (B, N) bool. spacing: (B,) metres between neighbouring surfels.
        cameras: the windows' cameras. settings: renderer knobs.
    Returns:
        :class:`Splats`, differentiable with respect to points, normals and spacing
        (:class:`_Splat`).
    """
    return Splats(*_Splat.apply(points, normals, spacing, valid, cameras, settings))


class _Splat(torch.autograd.Function):
    """:func:`splat`, with a hand-written backward pass: the chain rule through its steps in
    reverse, per surfel (tests/test_render.py checks it against finite differences)."""

    @staticmethod
    def forward(ctx, points: Tensor, normals: Tensor, spacing: Tensor, valid: Tensor,
                cameras: WindowCameras, settings: RenderSettings):
        tables = _tables(settings, points.dtype, points.device)
        homogeneous = torch.baddbmm(cameras.offset, points, cameras.linear)
        depth = homogeneous[..., 2:]  # (B, N, 1)
        pixels = homogeneous[..., :2] / depth
        resolution = render_resolution(depth[..., 0], valid, spacing, cameras, settings)
        # The rows of w J, projected onto the disc's plane: J (I - n n^T) J^T is their Gram
        # matrix (a, b, c) over w^2.
        rows = torch.addcmul(cameras.rows, pixels.unsqueeze(-1), cameras.last_row, value=-1)
        normal = normals.unsqueeze(-2)
        along = (rows * normal).sum(-1, keepdim=True)  # (B, N, 2, 1)
        tangent = torch.addcmul(rows, along, normal, value=-1)
        gram = (tangent[..., tables.gram_left, :] * tangent[..., tables.gram_right, :]).sum(-1)
        scale = ((settings.radius_scale * resolution * spacing).view(-1, 1, 1) / depth).square()
        footprint = gram * scale
        # Cap the largest eigenvalue (a + c) / 2 + |((a - c) / 2, b)|, then add the filter.
        eigen = footprint @ tables.eigen
        spread = eigen[..., 1:].norm(dim=-1, keepdim=True)
        largest = eigen[..., :1] + spread
        shrink = functional.hardtanh(largest.reciprocal() * settings.max_radius**2, 0.0, 1.0)
        covariance = torch.addcmul(tables.filtered, footprint, shrink)
        a, b, c = covariance.unbind(-1)
        determinant = torch.addcmul(a * c, b, b, value=-1)
        conic = covariance.flip(-1) * tables.adjugate / determinant.unsqueeze(-1)
        # The back-face cull: a sigmoid of the cosine between normal and the view direction.
        towards = cameras.centre.unsqueeze(1) - points
        distance = towards.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        direction = towards / distance
        facing = (normals * direction).sum(-1)
        logit = (facing + settings.facing_offset) / settings.facing_softness
        front = valid & (depth[..., 0] > 1e-3) & (logit > -CULL_LOGIT)
        cull = torch.sigmoid(logit)
        peak = front * settings.max_alpha
        opacity = cull * peak
        ctx.save_for_backward(normals, spacing, pixels, depth, rows, along, tangent, gram,
                              scale, footprint, eigen, spread, largest, shrink, conic,
                              distance, direction, facing, cull, peak)
        ctx.cameras, ctx.settings = cameras, settings
        ctx.mark_non_differentiable(resolution)
        return pixels, depth[..., 0], resolution, conic, opacity

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_pixels: Tensor, grad_depth: Tensor, _, grad_conic: Tensor,
                 grad_opacity: Tensor):
        (normals, spacing, pixels, depth, rows, along, tangent, gram, scale, footprint, eigen,
         spread, largest, shrink, conic, distance, direction, facing, cull,
         peak) = ctx.saved_tensors
        cameras, settings = ctx.cameras, ctx.settings
        tables = _tables(settings, normals.dtype, normals.device)
        # conic = covariance^-1 as symmetric matrices: d/d covariance = -Q (d/d Q) Q.
        inverse = conic.unfold(-1, 2, 1)
        grad_inverse = grad_conic.unfold(-1, 2, 1) * tables.symmetric
        grad_matrix = _products(_products(inverse, grad_inverse), inverse)
        grad_covariance = grad_matrix.flatten(-2)[..., tables.upper] * tables.inverse_fold
        # covariance = shrink footprint + filter, shrink = min(1, max_radius^2 / largest),
        # largest = (a + c) / 2 + |e|, e = ((a - c) / 2, b).
        grad_shrink = (grad_covariance * footprint).sum(-1, keepdim=True)
        grad_largest = grad_shrink * shrink / largest * (shrink < 1)
        rising = torch.addmm(tables.eigen[:, 0], (eigen[..., 1:] / spread.clamp(min=1e-30))
                             .flatten(0, 1), tables.eigen[:, 1:].T).view_as(footprint)
        grad_footprint = torch.addcmul(grad_covariance * shrink, grad_largest, rising, value=-1)
        # footprint = gram scale, scale = (radius_scale resolution spacing / w)^2.
        grad_scale = (grad_footprint * gram).sum(-1, keepdim=True) * scale
        grad_spacing = 2 * grad_scale.sum((1, 2)) / spacing
        # gram = (t0.t0, t0.t1, t1.t1) of the tangent rows t.
        grad_tangent = _products((grad_footprint * scale).unfold(-1, 2, 1) * tables.doubled,
                                 tangent)
        # tangent = rows - (rows n) n^T.
        normal = normals.unsqueeze(-2)
        projected = (grad_tangent * normal).sum(-1, keepdim=True)
        grad_rows = torch.addcmul(grad_tangent, projected, normal, value=-1)
        # rows = camera rows - pixels last row; pixels = homogeneous[:2] / w.
        grad_pixels = grad_pixels - (grad_rows * cameras.last_row).sum(-1)
        grad_w = grad_depth.unsqueeze(-1) - torch.add(
            (grad_pixels * pixels).sum(-1, keepdim=True), grad_scale, alpha=2) / depth
        grad_points = torch.bmm(torch.cat([grad_pixels / depth, grad_w], dim=-1),
                                cameras.matrix[:, :, :3])
        # opacity = max_alpha front sigmoid(logit), logit = (cos + offset) / softness, cos =
        # n . (centre - x) / |centre - x|.
        grad_facing = torch.ops.aten.sigmoid_backward(grad_opacity * peak, cull) \
            .unsqueeze(-1) / settings.facing_softness
        grad_normals = (grad_facing * direction
                        - torch.addcmul(projected * rows, along, grad_tangent).sum(-2))
        grad_points = torch.addcmul(grad_points, grad_facing / distance,
                                    torch.addcmul(normals, facing.unsqueeze(-1), direction,
                                                  value=-1), value=-1)
        return grad_points, grad_normals, grad_spacing, None, None, None


def _products(left: Tensor, right: Tensor) -> Tensor:
    """Batched products of small matrices (..., I, J) @ (..., J, K), elementwise: a few
    wide operators instead of a batched matrix product per surfel."""
    return (left.unsqueeze(-1) * right.unsqueeze(-3)).sum(-2)


class _Rasterise(torch.autograd.Function):
    """Splats and their values to window images, with a hand-written backward pass.

    Forward: every splat covers the K x K pixels around its centre with
    ``alpha = opacity * smoothstep(kernel_end - m)``, m the pixel's Mahalanobis distance
    (C1 and exactly zero at the edge). The taps are accumulated on a canvas that pads the
    window (a splat's pixel is clamped into the padding, so splats far off the window leave
    their taps there and the padding is cut off): ``sum log(1 - alpha)`` gives the silhouette,
    ``sum w`` and ``sum w v`` with ``w = alpha exp(-(z - z_front) / depth_temperature)`` (the
    front-most depth per pixel detached) give the blended values. The object's
    ``S * resolution`` top-left pixels are then stretched bilinearly over the window, values
    premultiplied by the coverage (objects at resolution 1 keep their images).

    Backward: the chain rule through these steps in reverse, per pixel, then per tap, then
    per surfel (:func:`tests.test_render` checks it against finite differences).
    """

    @staticmethod
    def forward(ctx, pixels: Tensor, conic: Tensor, opacity: Tensor, values: Tensor,
                resolution: Tensor, settings: RenderSettings) -> tuple[Tensor, Tensor]:
        # Per-tap tensors are (B, N, K*K), per-pixel ones channels first (C, B, S, S).
        tables = _tables(settings, pixels.dtype, pixels.device)
        centre = pixels * resolution.view(-1, 1, 1)
        batch, _, channels = values.shape
        size, half, pad, side = settings.window_size, settings.footprint // 2, tables.pad, \
            tables.side
        corner = centre.clamp(-half - 1, size + half).nan_to_num(-half - 1).floor()
        offset = tables.tap_offsets - (centre - corner).unsqueeze(-1)  # (B, N, 2, K*K)
        du, dv = offset.unbind(2)
        basis = torch.stack([du * du, 2 * du * dv, dv * dv, du, dv], dim=2)  # (B, N, 5, K*K)
        distance = ((basis[:, :, :3] * conic.unsqueeze(-1)).sum(2) + 1e-12).sqrt()
        ramp = (settings.kernel_end - distance).clamp(0, 1)
        squared = ramp * ramp
        coverage = torch.addcmul(3 * squared, squared, ramp, value=-2)  # smoothstep
        slope = 3 * (squared - ramp) / distance  # d coverage / d distance^2
        alpha = coverage * opacity.unsqueeze(-1)

        start = torch.arange(0, batch * side * side, side * side, device=centre.device)
        pixel = ((corner.long() * tables.stride).sum(-1) + start.view(-1, 1)).unsqueeze(-1) \
            + tables.tap_index  # (B, N, K*K) flat canvas pixels
        flat = pixel.view(-1)
        depth = values[..., 0]
        hiding = depth.masked_fill(opacity == 0, torch.inf).unsqueeze(-1).expand_as(alpha)
        front = depth.new_full((batch * side * side,), torch.inf).scatter_reduce_(
            0, flat, hiding.reshape(-1), "amin")
        behind = (depth.unsqueeze(-1) - front.index_select(0, flat).view_as(alpha)).clamp(min=0)
        falloff = torch.exp(behind / -settings.depth_temperature)
        weight = alpha * falloff
        channelled = values.permute(2, 0, 1).unsqueeze(-1)  # (C, B, N, 1)
        sources = torch.cat([torch.log1p(-alpha).unsqueeze(0), weight.unsqueeze(0),
                             weight * channelled])
        canvas = sources.new_zeros(channels + 2, batch * side * side).index_add_(
            1, flat, sources.view(channels + 2, -1))
        window = canvas.view(-1, batch, side, side)[:, :, pad:pad + size, pad:pad + size]
        silhouette = 1 - window[0].exp()
        total = window[1].clamp(min=1e-8)
        blended = window[2:] / total

        image = torch.cat([silhouette.unsqueeze(0), blended * silhouette]).transpose(0, 1)
        theta = torch.addcmul(tables.stretch_shift, resolution.view(-1, 1, 1),
                              tables.stretch_scale)
        grid = functional.affine_grid(theta, [batch, channels + 1, size, size],
                                      align_corners=False)
        stretched = functional.grid_sample(image, grid, mode="bilinear", padding_mode="zeros",
                                           align_corners=False)  # (B, C + 1, S, S)
        kept = (resolution >= 1).view(-1, 1, 1)  # objects at full resolution keep their images
        covered = torch.where(kept, silhouette, stretched[:, 0])
        # 1 / coverage of the stretched objects' covered pixels, 0 elsewhere.
        inverse = (stretched[:, 0] > 1e-6) * ~kept / stretched[:, 0].clamp(min=1e-6)
        out = torch.where(kept.unsqueeze(1), blended.transpose(0, 1),
                          stretched[:, 1:] * inverse.unsqueeze(1))  # (B, C, S, S)
        ctx.save_for_backward(pixel, basis, slope, coverage, falloff, opacity, conic, values,
                              silhouette, blended, total, window[1] > 1e-8, image, grid,
                              kept, inverse, out, resolution)
        ctx.settings = settings
        return covered, out.permute(0, 2, 3, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_covered: Tensor, grad_out: Tensor):
        (pixel, basis, slope, coverage, falloff, opacity, conic, values, silhouette, blended,
         total, weighed, image, grid, kept, inverse, out, resolution) = ctx.saved_tensors
        settings = ctx.settings
        pad = _tables(settings, values.dtype, values.device).pad
        # The stretch (of the objects not kept as they are), then the premultiplication.
        grad_out = grad_out.permute(0, 3, 1, 2)
        grad_values = grad_out * inverse.unsqueeze(1)
        grad_stretched = torch.cat([(grad_covered * ~kept - (grad_values * out).sum(1))
                                    .unsqueeze(1), grad_values], dim=1)
        grad_image = torch.ops.aten.grid_sampler_2d_backward(
            grad_stretched, image, grid, 0, 0, False, [True, False])[0].transpose(0, 1)
        grad_silhouette = (grad_image[0] + (grad_image[1:] * blended).sum(0)
                           + grad_covered * kept)
        grad_blended = grad_image[1:] * silhouette + grad_out.transpose(0, 1) * kept
        # The canvas: silhouette = 1 - exp(sum log(1 - alpha)), blended = sum w v / sum w.
        grad_sums = grad_blended / total
        grad_total = -(grad_sums * blended).sum(0) * weighed
        grad_window = torch.cat([((silhouette - 1) * grad_silhouette).unsqueeze(0),
                                 grad_total.unsqueeze(0), grad_sums])
        grad_canvas = functional.pad(grad_window, (pad, pad, pad, pad))
        # Per tap: d/d log(1 - alpha), d/d w and d/d (w v), then per surfel.
        grad_taps = grad_canvas.view(len(grad_canvas), -1).index_select(1, pixel.view(-1)) \
            .view(-1, *pixel.shape)
        channelled = values.permute(2, 0, 1).unsqueeze(-1)
        grad_weight = grad_taps[1] + (grad_taps[2:] * channelled).sum(0)
        alpha = coverage * opacity.unsqueeze(-1)
        weight = alpha * falloff
        grad_alpha = grad_weight * falloff + grad_taps[0] / (alpha - 1)
        grad_values = (grad_taps[2:] * weight).sum(-1).permute(1, 2, 0)
        # Every tap that weighs is at or behind its pixel's front (a minimum over those taps).
        grad_values[..., 0] += (weight * grad_weight).sum(-1) / -settings.depth_temperature
        grad_opacity = (grad_alpha * coverage).sum(-1)
        grad_distance = grad_alpha * opacity.unsqueeze(-1) * slope
        moments = (grad_distance.unsqueeze(2) * basis).sum(-1)  # (B, N, 5)
        # centre = pixels * resolution; the offsets d are corner + taps - centre.
        grad_pixels = (conic.unfold(-1, 2, 1) * moments[..., 3:].unsqueeze(-2)).sum(-1) \
            * (-2 * resolution.view(-1, 1, 1))
        return grad_pixels, moments[..., :3], grad_opacity, grad_values, None, None


def rasterise(splats: Splats, values: Tensor, settings: RenderSettings
              ) -> tuple[Tensor, Tensor]:
    """Cover the pixels around the splats and blend their values into window images.

    Args:
        splats: from :func:`splat` for B objects and N surfels.
        values: (B, N, C) per-surfel values blended with the soft z-buffer; channel 0 is the
            depth by which it orders them.
        settings: renderer knobs.
    Returns:
        silhouette: (B, S, S) coverage; images: (B, S, S, C) blended values, 0 where nothing
        is covered.
    """
    return _Rasterise.apply(splats.pixels, splats.conic, splats.opacity, values,
                            splats.resolution, settings)


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
    cameras = WindowCameras.of(projection, window, settings.window_size)
    return render_in_windows(points, normals, canonical, valid, spacing, cameras, settings,
                             with_attributes)


def render_in_windows(
    points: Tensor, normals: Tensor, canonical: Tensor, valid: Tensor, spacing: Tensor,
    cameras: WindowCameras, settings: RenderSettings = RenderSettings(),
    with_attributes: bool = True,
) -> Rendered:
    """:func:`render` with the windows' cameras made beforehand (once for many calls)."""
    splats = splat(points, normals, valid, spacing, cameras, settings)
    values = splats.depth.unsqueeze(-1)
    if with_attributes:
        values = torch.cat([values, canonical + 0.5, normals], dim=-1)
    silhouette, images = rasterise(splats, values, settings)
    if not with_attributes:
        return Rendered(silhouette, images[..., 0], None, None, cameras.window, splats.pixels)
    return Rendered(silhouette, images[..., 0], images[..., 1:4], images[..., 4:],
                    cameras.window, splats.pixels)
