"""Loss terms of render-and-compare, one per class, batched over objects.

A term is made once from the observations of a batch (what it compares with, which pixels
or points count and by how much), so that what depends only on them is computed once and an
evaluation is a few wide operators; calling it with the current predictions returns one value
per object, shape (B,), so the fitter can weight, sum and report each term separately. A
function of the same name in lower case makes and evaluates a term in one go.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional


class SilhouetteLoss:
    """One minus the soft IoU of rendered coverage and an observed mask (dimensionless).

    Args:
        mask: (B, S, S) target in [0, 1].
        weight: (B, S, S) in [0, 1], how much each pixel counts (0 where the mask cannot
            tell, e.g. behind a nearer object); None counts every pixel.
        present: (B,) bool, False for objects without a mask (their loss is 0); None for all.
    Called with:
        silhouette: (B, S, S) rendered coverage in [0, 1].
    Returns:
        (B,) in [0, 1]; 0 when they agree exactly.
    """

    def __init__(self, mask: Tensor, weight: Tensor | None = None,
                 present: Tensor | None = None):
        weight = torch.ones_like(mask) if weight is None else weight
        inside = weight * mask
        present = torch.ones(len(mask), dtype=mask.dtype, device=mask.device) \
            if present is None else present.to(mask.dtype)
        # intersection = sum(s inside), union = sum(s outside) + sum(inside); the mask's
        # area is floored so that an empty union does not divide by zero.
        self.masks = torch.stack([inside * present.view(-1, 1, 1), weight - inside], dim=1)
        self.present = present
        self.area = inside.sum((-1, -2)).clamp(min=1e-6)

    def __call__(self, silhouette: Tensor) -> Tensor:
        intersection, outside = (silhouette.unsqueeze(1) * self.masks).sum((-1, -2)).unbind(-1)
        return self.present - intersection / (outside + self.area)


def silhouette_loss(silhouette: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
    """:class:`SilhouetteLoss` of ``mask`` and ``weight`` for ``silhouette``.

    >>> m = torch.zeros(1, 4, 4); m[:, :2] = 1
    >>> silhouette_loss(m, m).item(), silhouette_loss(m, 1 - m).item()
    (0.0, 1.0)
    >>> silhouette_loss(torch.ones(1, 4, 4), m, weight=m).item()
    0.0
    """
    return SilhouetteLoss(mask, weight)(silhouette)


def widen_mask(mask: Tensor, halo: float) -> Tensor:
    """A binary mask with the ring of pixels around it at ``halo`` coverage: the target that a
    splatted silhouette, whose soft edge reaches past the true outline, should match.

    Args:
        mask: (B, S, S) in {0, 1}. halo: in [0, 1], the coverage of the ring.
    Returns:
        (B, S, S) in [0, 1].

    >>> widen_mask(torch.tensor([[[0.0, 0, 0, 0], [0, 1, 0, 0]]]), 0.75).tolist()
    [[[0.75, 0.75, 0.75, 0.0], [0.75, 1.0, 0.75, 0.0]]]
    """
    grown = torch.nn.functional.max_pool2d(mask.unsqueeze(1), 3, stride=1, padding=1)[:, 0]
    return mask + halo * (grown - mask)


def depth_loss(depth: Tensor, silhouette: Tensor, target: Tensor, huber: float = 0.2) -> Tensor:
    """Robust depth error in metres over pixels where both renders have depth.

    Args:
        depth: (B, S, S) rendered depth. silhouette: (B, S, S) rendered coverage, weighting
            each pixel (so that depth is continuous where coverage ends).
        target: (B, S, S) observed depth in metres, 0 where unknown.
        huber: metres; errors beyond it count linearly.
    Returns:
        (B,) coverage-weighted mean Huber error in metres; 0 where nothing overlaps.

    >>> d = torch.full((1, 2, 2), 10.0)
    >>> round(depth_loss(d, torch.ones(1, 2, 2), d + 1.0, huber=0.2).item(), 6)
    0.9
    """
    weight = silhouette * (target > 0)
    # In metres: |e| - huber / 2 beyond ``huber``, e^2 / 2 huber below.
    error = functional.smooth_l1_loss(depth, target, reduction="none", beta=huber)
    return (weight * error).sum((-1, -2)) / weight.sum((-1, -2)).clamp(min=1e-6)


class PointSdfLoss:
    """Robust mean |SDF| of observed surface points (LiDAR or depth), in metres.

    Observed points lie on the object's surface, so their signed distance to the fitted shape
    should be zero. The Huber penalty keeps stray background points from dominating.

    Args:
        valid: (B, M) bool, False for padding.
        huber: metres; distances beyond it count linearly.
        inside_weight: weight of points inside the shape (negative distance): LiDAR passes
            through car windows and returns from the cabin, points a shape must not shrink
            onto.
    Called with:
        distance: (B, M) signed distances of the points to the fitted surface, metres.
    Returns:
        (B,) mean penalty in metres; 0 for objects without points.
    """

    def __init__(self, valid: Tensor, huber: float = 0.1, inside_weight: float = 1.0,
                 dtype: torch.dtype = torch.float32):
        weight = valid.to(dtype)
        self.outside = weight / weight.sum(-1, keepdim=True).clamp(min=1)
        self.inside = self.outside * inside_weight
        self.zero = torch.zeros_like(weight)
        self.huber = huber

    def __call__(self, distance: Tensor) -> Tensor:
        # In metres: |d| - huber / 2 beyond ``huber``, d^2 / 2 huber below.
        error = functional.smooth_l1_loss(distance, self.zero, reduction="none", beta=self.huber)
        return (error * torch.where(distance < 0, self.inside, self.outside)).sum(-1)


def point_sdf_loss(distance: Tensor, valid: Tensor, huber: float = 0.1,
                   inside_weight: float = 1.0) -> Tensor:
    """:class:`PointSdfLoss` of ``valid`` points at ``distance``.

    >>> round(point_sdf_loss(torch.tensor([[0.0, 0.5]]), torch.tensor([[True, True]])).item(), 6)
    0.225
    """
    return PointSdfLoss(valid, huber, inside_weight, distance.dtype)(distance)


class FreeSpaceLoss:
    """Penalty for rendered surface in front of points the sensor saw through it, metres.

    A sensor ray that reached depth ``observed`` passed through free space up to there, so
    rendered surface on that ray closer than ``observed - margin`` contradicts it.

    Args:
        observed: (B, S, S) depth of the sensor's nearest return per window pixel, 0 if none.
        margin: metres of tolerance for sensor noise.
        cap: metres; a violation counts at most this much, so that background far behind a
            soft silhouette edge (or seen past it from the LiDAR's slightly different
            viewpoint) does not outweigh everything else.
    Called with:
        depth: (B, S, S) rendered depth. silhouette: (B, S, S) rendered coverage.
    Returns:
        (B,) mean violation in metres over the window pixels with a return.
    """

    def __init__(self, observed: Tensor, margin: float = 0.1, cap: float = 0.5):
        seen = (observed > 0).to(observed.dtype)
        self.share = seen / seen.sum((-1, -2), keepdim=True).clamp(min=1)
        self.reach = observed - margin
        self.cap = cap

    def __call__(self, depth: Tensor, silhouette: Tensor) -> Tensor:
        violation = functional.hardtanh(self.reach - depth, 0.0, self.cap)
        return (violation * silhouette * self.share).sum((-1, -2))


def free_space_loss(depth: Tensor, silhouette: Tensor, observed: Tensor,
                    margin: float = 0.1, cap: float = 0.5) -> Tensor:
    """:class:`FreeSpaceLoss` of ``observed`` depth for a rendered ``depth`` and coverage.

    >>> round(free_space_loss(torch.full((1, 1, 2), 5.0), torch.ones(1, 1, 2),
    ...                       torch.tensor([[[5.3, 5.0]]])).item(), 6)
    0.1
    """
    return FreeSpaceLoss(observed, margin, cap)(depth, silhouette)


class FreeRayLoss:
    """Share of the places the sensor's rays crossed that the shape swallows (dimensionless).

    The samples (:func:`autolabel.lidar.rays.free_samples`) lie on rays before their
    returns, so each belongs outside the shape. A sample counts by how surely it lies more
    than ``tolerance`` inside: ``sigmoid(-(d + tolerance) / softness)`` at signed distance
    ``d``. A count, not a depth: the rays that graze past a car's far end cross only a thin
    wedge of a box fitted too long, and their depth inside it is a few centimetres.

    Args:
        valid: (B, F) bool, False for padding.
        tolerance: metres inside the surface that a sample may lie uncounted (range noise,
            the shape's smoothing of a real car's corners).
        softness: metres over which a sample goes from uncounted to counted.
    Called with:
        distance: (B, F) signed distances of the samples to the fitted surface, metres.
    Returns:
        (B,) mean count over the valid samples; 0 for objects without any.
    """

    def __init__(self, valid: Tensor, tolerance: float = 0.05, softness: float = 0.02,
                 dtype: torch.dtype = torch.float32):
        weight = valid.to(dtype)
        self.share = weight / weight.sum(-1, keepdim=True).clamp(min=1)
        self.tolerance, self.softness = tolerance, softness

    def __call__(self, distance: Tensor) -> Tensor:
        swallowed = torch.sigmoid(-(distance + self.tolerance) / self.softness)
        return (swallowed * self.share).sum(-1)


def free_ray_loss(distance: Tensor, valid: Tensor, tolerance: float = 0.05,
                  softness: float = 0.02) -> Tensor:
    """:class:`FreeRayLoss` of ``valid`` samples at ``distance``: outside, on the surface,
    well inside, and padding.

    >>> round(float(free_ray_loss(torch.tensor([[0.5, 0.0, -0.5, -2.0]]),
    ...                           torch.tensor([[True, True, True, False]]))), 4)
    0.3586
    """
    return FreeRayLoss(valid, tolerance, softness, distance.dtype)(distance)


class BoxLoss:
    """Disagreement of the shape's projected extent with the detected 2D box (dimensionless).

    A free edge (cut by the image border or by a nearer object) does not say where the shape
    ends, only that it reaches about that far: there the shape's extent counts only when it
    falls short of the edge by more than ``huber`` (a rounded shape's outline may stop a
    little short of where a box cut at the border ends).

    Args:
        box2d: (B, 4) detection box, pixels.
        free_edges: (B, 4) bool, True for edges that do not bound the shape.
        huber: in units of the box's longer side.
    Called with:
        extent: (B, 4) projected extent of the shape (x1, y1, x2, y2), pixels.
    Returns:
        (B,) Huber error in units of the box's longer side, summed over the edges and divided
        by the number of bounding edges.
    """

    def __init__(self, box2d: Tensor, free_edges: Tensor, huber: float = 0.05):
        self.scale = 1 / (box2d[:, 2:] - box2d[:, :2]).amax(-1, keepdim=True).clamp(min=1)
        self.target = box2d * self.scale
        self.free = free_edges
        bound = (~free_edges).to(box2d.dtype)
        self.weight = 1 / bound.sum(-1, keepdim=True).clamp(min=1)
        self.huber = huber
        # A free edge's target lies ``huber`` inside the box (x1, y1 larger, x2, y2 smaller);
        # an extent reaching past it, (extent - target) * outward < 0, is compared with itself.
        outward = box2d.new_tensor([1.0, 1.0, -1.0, -1.0])
        self.target = torch.where(free_edges, self.target + huber * outward, self.target)
        self.outward = outward

    def __call__(self, extent: Tensor) -> Tensor:
        scaled = extent * self.scale
        beyond = self.free & ((scaled - self.target) * self.outward < 0)
        target = torch.where(beyond, scaled.detach(), self.target)
        error = functional.smooth_l1_loss(scaled, target, reduction="none", beta=self.huber)
        return (error * self.weight).sum(-1)


def box_loss(extent: Tensor, box2d: Tensor, free_edges: Tensor, huber: float = 0.05) -> Tensor:
    """:class:`BoxLoss` of a detection for a projected ``extent``.

    >>> round(box_loss(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[0.0, 0, 10, 12]]),
    ...                torch.zeros(1, 4, dtype=torch.bool), huber=1.0).item(), 6)
    0.003472
    """
    return BoxLoss(box2d, free_edges, huber)(extent)


class NocsLoss:
    """Mean L1 distance between rendered and given NOCS maps (canonical units in [0, 1]).

    Args:
        target: (B, S, S, 3) given NOCS. target_valid: (B, S, S) bool.
        either_end: compare each object with the target as given and turned end for end
            (``(1 - x, 1 - y, z)``, the same car heading the other way) and keep the closer:
            the map then says where the car's ends are but not which is the front.
    Called with:
        nocs: (B, S, S, 3) rendered. silhouette: (B, S, S) coverage.
    Returns:
        (B,) coverage-weighted mean L1 over valid pixels.

    >>> target = torch.full((1, 2, 2, 3), 0.5); target[..., 0] = torch.tensor([0.0, 1.0])
    >>> turned = target.clone(); turned[..., :2] = 1 - turned[..., :2]
    >>> valid, cover = torch.ones(1, 2, 2, dtype=torch.bool), torch.ones(1, 2, 2)
    >>> as_given, either_end = NocsLoss(target, valid), NocsLoss(target, valid, True)
    >>> as_given(turned, cover).item(), either_end(turned, cover).item()
    (1.0, 0.0)
    """

    def __init__(self, target: Tensor, target_valid: Tensor, either_end: bool = False):
        self.target, self.valid = target, target_valid.to(target.dtype)
        self.turned = None
        if either_end:
            self.turned = torch.cat([1 - target[..., :2], target[..., 2:]], dim=-1)

    def __call__(self, nocs: Tensor, silhouette: Tensor) -> Tensor:
        weight = silhouette * self.valid
        total = weight.sum((-1, -2)).clamp(min=1e-6)

        def mean_l1(target: Tensor) -> Tensor:
            return (weight * (nocs - target).abs().sum(-1)).sum((-1, -2)) / total

        error = mean_l1(self.target)
        return error if self.turned is None else torch.minimum(error, mean_l1(self.turned))


def nocs_loss(nocs: Tensor, silhouette: Tensor, target: Tensor, target_valid: Tensor) -> Tensor:
    """:class:`NocsLoss` of a given NOCS map for a rendered one and its coverage."""
    return NocsLoss(target, target_valid)(nocs, silhouette)


class GroundLoss:
    """Ground contact: the shape's lowest point should sit on the ground plane, metres.

    Args:
        has_ground: (B,) bool, False where no plane was estimated.
        huber: metres; heights beyond it count linearly.
    Called with:
        bottom_height: (B,) signed height of the shape's bottom above the ground plane.
    Returns:
        (B,) Huber penalty in metres, 0 without a plane.
    """

    def __init__(self, has_ground: Tensor, huber: float = 0.1, dtype=torch.float32):
        self.present = has_ground.to(dtype)
        self.zero = torch.zeros_like(self.present)
        self.huber = huber

    def __call__(self, bottom_height: Tensor) -> Tensor:
        return functional.smooth_l1_loss(bottom_height, self.zero, reduction="none",
                                         beta=self.huber) * self.present


def ground_loss(bottom_height: Tensor, has_ground: Tensor, huber: float = 0.1) -> Tensor:
    """:class:`GroundLoss` of ``bottom_height`` where ``has_ground``."""
    return GroundLoss(has_ground, huber, bottom_height.dtype)(bottom_height)


class SizePriorLoss:
    """Squared z-score of the log-size under the class's size distribution (dimensionless).

    Args:
        log_mean: (B, 3). log_std: (B, 3).
    Called with:
        log_size: (B, 3).
    Returns:
        (B,) mean over the three axes of ((log_size - log_mean) / log_std)^2.
    """

    def __init__(self, log_mean: Tensor, log_std: Tensor):
        self.scale = 1 / log_std
        self.target = log_mean * self.scale

    def __call__(self, log_size: Tensor) -> Tensor:
        return functional.mse_loss(log_size * self.scale, self.target, reduction="none").mean(-1)


def size_prior_loss(log_size: Tensor, log_mean: Tensor, log_std: Tensor) -> Tensor:
    """:class:`SizePriorLoss` of a class's statistics for ``log_size``."""
    return SizePriorLoss(log_mean, log_std)(log_size)


class FootprintOverlapLoss:
    """How deep a box's bird's-eye footprint reaches into other objects' footprints, metres.

    Two cars cannot share ground. The centres of a ``samples`` x ``samples`` grid of cells
    over the footprint are tested against each obstacle rectangle; a point inside counts its
    distance to the rectangle's nearest edge.

    Args:
        obstacles: (B, K, 5) other objects' footprints as (x, z, length, width, yaw), KITTI yaw
            (forward is (cos yaw, -sin yaw) in the (x, z) plane).
        valid: (B, K) bool, False for padding.
    Called with:
        center: (B, 3) camera frame. rotation: (B, 3, 3) camera-from-object (object x
            forward, y left). size: (B, 3) (l, w, h).
    Returns:
        (B,) mean over the grid points of the summed penetration depths.
    """

    def __init__(self, obstacles: Tensor, valid: Tensor, samples: int = 3):
        steps = (torch.arange(samples, dtype=obstacles.dtype, device=obstacles.device) + 0.5
                 ) / samples - 0.5
        along, across = torch.meshgrid(steps, steps, indexing="ij")
        self.cells = torch.stack([along.reshape(-1), across.reshape(-1)], dim=-1)  # (G, 2)
        x, z, length, width, yaw = obstacles.unbind(-1)
        cos, sin = torch.cos(yaw), torch.sin(yaw)
        # (B, 2, 2K) columns: the obstacles' forward axes (cos, -sin), then their left axes
        # (sin, cos), in (x, z); (B, 1, 2K) minus their centres along these axes.
        self.axes = torch.stack([torch.cat([cos, sin], -1), torch.cat([-sin, cos], -1)], dim=1)
        self.offset = -torch.cat([x * cos - z * sin, x * sin + z * cos], -1).unsqueeze(1)
        self.half = torch.cat([length, width], -1).unsqueeze(1) / 2
        self.count = obstacles.shape[1]
        self.weight = valid.to(obstacles.dtype).unsqueeze(1) / len(self.cells)

    def __call__(self, center: Tensor, rotation: Tensor, size: Tensor) -> Tensor:
        # The cells in (x, z): centre + rotation's (forward, left) columns times the offsets.
        plane = rotation[:, 0::2, :2]  # (B, 2, 2): rows x and z
        offsets = self.cells * size[:, None, :2]
        points = torch.baddbmm(center[:, None, 0::2], offsets, plane.transpose(1, 2))
        inside = self.half - torch.baddbmm(self.offset, points, self.axes).abs()
        length, width = inside.split(self.count, dim=-1)
        depth = (length - (length - width).relu()).relu()  # min(length, width), at least 0
        return (depth * self.weight).sum((-1, -2))


def footprint_overlap_loss(center: Tensor, rotation: Tensor, size: Tensor, obstacles: Tensor,
                           valid: Tensor, samples: int = 3) -> Tensor:
    """:class:`FootprintOverlapLoss` of ``obstacles`` for boxes (center, rotation, size).

    >>> from autolabel.geometry import yaw_to_rotation
    >>> box = (torch.tensor([[0.0, 0.0, 10.0]]), yaw_to_rotation(torch.zeros(1)),
    ...        torch.tensor([[4.0, 2.0, 1.5]]))
    >>> far = torch.tensor([[[0.0, 20.0, 4.0, 2.0, 0.0]]])
    >>> footprint_overlap_loss(*box, far, torch.tensor([[True]])).item()
    0.0
    >>> same = torch.tensor([[[0.0, 10.0, 4.0, 2.0, 0.0]]])
    >>> round(footprint_overlap_loss(*box, same, torch.tensor([[True]])).item(), 4)
    0.4815
    """
    return FootprintOverlapLoss(obstacles, valid, samples)(center, rotation, size)
