"""The batched render-and-compare optimiser: pose, size and shape of many objects at once.

Every object of a batch (all detections of a chunk of frames, each with several initial yaw
hypotheses) gets its own translation, rotation (yaw about the camera y axis, or a 6D rotation
with ``free_rotation``), log-size and latent. One Adam loop moves them all; each iteration
re-projects the surfels onto the current shapes, places them, renders every object into its
window, and sums the loss terms of :mod:`autolabel.losses` with the weights of
:class:`LossWeights`. The first ``pose_iterations`` keep the shape at the prior mean (its
surfels are then computed once), the rest fit shape and pose together.

An iteration (:meth:`_Fit.step`) is a fixed sequence of batched tensor operations: the same
operators for every batch size, no loop over objects, no tensor whose shape depends on the
data and nothing read back to the host, so that a device never waits for Python and the
iteration could be captured and replayed. What needs the host (early stopping, re-extracting
surfels that went stale) is checked between iterations, every ``FitConfig.check_every``.

Inputs are tensors in an :class:`ObjectBatch`; building it from frames (I/O, hypotheses,
masks) is :mod:`autolabel.pipeline`'s job.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
from torch import Tensor

from autolabel import geometry as g
from autolabel import losses
from autolabel.render import Rendered, RenderSettings, render
from autolabel.surfels import (
    Surfels,
    SurfelSettings,
    extract_surface_points,
    pose_surfels,
    project_facing,
    project_to_surface,
    surfel_spacing,
)

LOSS_TERMS = ("points", "free_space", "silhouette", "box", "nocs", "ground", "latent", "size",
              "overlap")


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (see :mod:`autolabel.losses` for each term's units)."""

    points: float = 4.0
    free_space: float = 1.0
    silhouette: float = 1.0
    box: float = 0.5
    nocs: float = 1.0
    ground: float = 1.0
    latent: float = 0.05
    size: float = 0.01
    overlap: float = 2.0


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Knobs of the optimisation, with the defaults used by ``autolabel fit``.

    Attributes:
        iterations: Adam steps in all.
        pose_iterations: the first steps, which keep the shape at the prior mean.
        lr_translation: metres per step. lr_rotation: radians (or 6D units) per step.
        lr_log_size: per step. lr_latent: per step, in standard deviations of the prior.
        free_rotation: fit a full rotation (6D) instead of a yaw about camera y.
        fit_shape: optimise the latent at all (False keeps the mean shape).
        early_stop: stop when no object's loss improved by more than this in ``patience``
            steps (checked after the pose stage, every ``check_every`` steps).
        patience: steps of the early-stopping window.
        check_every: steps between the checks that read values back to the host (early
            stopping, stale surfels); the steps between them never wait for the device.
        reextract_distance: re-extract an object's surfels when its latent has moved this far
            (Mahalanobis) since the last extraction; Newton steps track smaller changes.
        reextract_dropped: ... or when this fraction of its surfels failed to converge.
        silhouette_halo: the silhouette is compared with the mask widened by a ring of pixels
            at this coverage (:func:`autolabel.losses.widen_mask`): the splats' soft edge
            reaches about 0.75 window pixels past the true outline of a car (measured against
            a ray-cast silhouette), and an unwidened mask pulls every car smaller.
        point_inside_weight: weight of observed points inside the shape in the point loss
            (:func:`autolabel.losses.point_sdf_loss`): LiDAR returns through car windows
            pulled roofs down (kitti_dev's moderate cars: mean 3D IoU 0.712 at 1, 0.730 at
            0.3; docs/decisions.md).
        facing_cos: the shape stage re-projects only surfels whose normal makes a cosine above
            this with the direction to the camera (the renderer culls the others).
        weights, render, surfels: loss weights, renderer and surfel settings.
    """

    iterations: int = 60
    pose_iterations: int = 30
    lr_translation: float = 0.05
    lr_rotation: float = 0.03
    lr_log_size: float = 0.01
    lr_latent: float = 0.1
    free_rotation: bool = False
    fit_shape: bool = True
    early_stop: float = 1e-4
    patience: int = 15
    check_every: int = 5
    reextract_distance: float = 8.0
    reextract_dropped: float = 0.1
    weights: LossWeights = LossWeights()
    render: RenderSettings = RenderSettings()
    facing_cos: float = -0.3
    point_inside_weight: float = 0.3
    silhouette_halo: float = 0.75
    surfels: SurfelSettings = SurfelSettings(differentiable_normals=False)


@dataclasses.dataclass
class ObjectBatch:
    """Observations and initial parameters of B objects (hypotheses), all tensors.

    Attributes:
        projection: (B, 3, 4) camera matrices. box2d: (B, 4) detection boxes (pixels).
        free_edges: (B, 4) bool, box edges that do not bound the object: cut by the image
            border or against a nearer object.
        window: (B, 4) render windows (x0, y0, x1, y1).
        points: (B, M, 3) the object's observed surface points (camera frame).
        points_valid: (B, M) bool.
        observed_depth: (B, S, S) nearest sensor return per window pixel, 0 where none.
        mask: (B, S, S) instance mask resampled into the window. has_mask: (B,) bool.
        mask_weight: (B, S, S) 1 where the mask speaks, 0 over nearer objects' masks (see
            :mod:`autolabel.occlusion`); None for everywhere.
        nocs: (B, S, S, 3) given NOCS map, or None. nocs_valid: (B, S, S) bool or None.
        ground: (B, 4) plane (normal (3), offset) with the normal up. has_ground: (B,) bool.
        size_log_mean: (B, 3) and size_log_std: (B, 3) class size statistics.
        center: (B, 3), yaw: (B,), size: (B, 3) initial box.
        obstacles: (B, K, 5) bird's-eye footprints (x, z, length, width, yaw) of the other
            objects of each hypothesis's frame, or None. obstacles_valid: (B, K) bool.
    """

    projection: Tensor
    box2d: Tensor
    free_edges: Tensor
    window: Tensor
    points: Tensor
    points_valid: Tensor
    observed_depth: Tensor
    mask: Tensor
    has_mask: Tensor
    ground: Tensor
    has_ground: Tensor
    size_log_mean: Tensor
    size_log_std: Tensor
    center: Tensor
    yaw: Tensor
    size: Tensor
    nocs: Tensor | None = None
    nocs_valid: Tensor | None = None
    mask_weight: Tensor | None = None
    obstacles: Tensor | None = None
    obstacles_valid: Tensor | None = None

    def __len__(self) -> int:
        return self.center.shape[0]

    def rows(self, index: Tensor) -> ObjectBatch:
        """The batch of the objects ``index`` (K,) of this one, in that order."""
        return ObjectBatch(**{field.name: None if value is None else value[index]
                              for field in dataclasses.fields(self)
                              for value in [getattr(self, field.name)]})


@dataclasses.dataclass
class FitOutput:
    """Fitted parameters and final diagnostics of B objects (detached tensors).

    Attributes:
        center: (B, 3) centre of the fitted shape's box, camera frame.
        rotation: (B, 3, 3) camera-from-object. size: (B, 3) its (l, w, h): every shape of
            the prior fills the normalised cube, so the fitted scale is its tight box.
        latent: (B, D).
        losses: term name -> (B,) weighted-free value of each loss term at the end.
        total: (B,) the weighted sum. extent: (B, 4) projected extent of the shape (pixels).
        inlier_fraction: (B,) share of observed points within 0.2 m of the surface (NaN
            without points). mahalanobis: (B,) squared distance of the latent to the prior.
        finite: (B,) bool, False where a NaN or infinity appeared and the object was frozen.
        silhouette: (B, S, S) final rendered coverage.
        iterations: steps run. seconds: wall time of the loop.
    """

    center: Tensor
    rotation: Tensor
    size: Tensor
    latent: Tensor
    losses: dict[str, Tensor]
    total: Tensor
    extent: Tensor
    inlier_fraction: Tensor
    mahalanobis: Tensor
    finite: Tensor
    silhouette: Tensor
    iterations: int
    seconds: float


class _Parameters(torch.nn.Module):
    """The optimised tensors of a batch.

    The shape is optimised in whitened coordinates ``u`` (``latent = mean + L u`` with
    ``L L^T`` the prior's covariance), so one learning rate fits every latent dimension and
    the squared Mahalanobis distance is simply ``|u|^2``.
    """

    def __init__(self, batch: ObjectBatch, prior, free_rotation: bool):
        super().__init__()
        self.free_rotation = free_rotation
        self.translation = torch.nn.Parameter(batch.center.clone())
        rotation = g.yaw_to_rotation(batch.yaw)
        self.rotation = torch.nn.Parameter(
            g.matrix_to_rotation_6d(rotation) if free_rotation else batch.yaw.clone())
        self.log_size = torch.nn.Parameter(batch.size.log())
        self.shape = torch.nn.Parameter(batch.center.new_zeros(len(batch), prior.latent_size))
        self.register_buffer("latent_mean", prior.latent_mean.to(batch.center))
        self.register_buffer("latent_factor",
                             torch.linalg.cholesky(prior.latent_cov.double()).to(batch.center))

    @property
    def latent(self) -> Tensor:
        """(B, D) shape codes."""
        return self.latent_mean + self.shape @ self.latent_factor.T

    def rotation_matrix(self) -> Tensor:
        if self.free_rotation:
            return g.rotation_6d_to_matrix(self.rotation)
        return g.yaw_to_rotation(self.rotation)


def _metric_sdf(prior, latent: Tensor, points: Tensor, center: Tensor, rotation: Tensor,
                size: Tensor) -> Tensor:
    """Approximate metric signed distances (B, M) of camera-frame points to the shapes.

    The decoder answers in the normalised frame, where a shape fills the unit cube; a distance
    there is turned into metres with the geometric mean of the size. Beyond the cube the
    decoder's values are unsupervised, so the metric distance to the cube is added: points
    far from the shape are pulled towards it instead of sitting on a flat plateau.
    """
    local = g.camera_to_object(points, center, rotation, size)
    scale = size.prod(-1, keepdim=True).pow(1 / 3)
    inside = prior.sdf(latent, local.clamp(-0.55, 0.55)) * scale
    outside = ((local.abs() - 0.55).clamp(min=0) * size.unsqueeze(1)).norm(dim=-1)
    return inside + outside


def _projected_extent(points: Tensor, valid: Tensor, projection: Tensor) -> Tensor:
    """(B, 4) box (x1, y1, x2, y2) around the projections of the valid surfels."""
    pixels, _ = g.project_points(points, projection)
    far = torch.finfo(pixels.dtype).max
    low = torch.where(valid.unsqueeze(-1), pixels, torch.full_like(pixels, far)).amin(1)
    high = torch.where(valid.unsqueeze(-1), pixels, torch.full_like(pixels, -far)).amax(1)
    return torch.cat([low, high], dim=-1)


def _bottom_height(center: Tensor, rotation: Tensor, size: Tensor, ground: Tensor) -> Tensor:
    """(B,) height above the ground plane of the centre of each box's bottom face.

    Every shape of the prior rests on the bottom face of its normalised cube (the wheels
    touch z = -0.5), so the box bottom is the shape's ground contact.
    """
    bottom = center - rotation[..., 2] * size[..., 2:3] / 2
    return (bottom * ground[:, :3]).sum(-1) + ground[:, 3]


@dataclasses.dataclass
class _Evaluation:
    terms: dict[str, Tensor]
    total: Tensor
    rendered: Rendered
    extent: Tensor
    distances: Tensor
    surfel_points: Tensor
    surfel_valid: Tensor


def _evaluate(prior, params: _Parameters, batch: ObjectBatch, surfels, config: FitConfig
              ) -> _Evaluation:
    """All loss terms of the current parameters, per object."""
    rotation = params.rotation_matrix()
    size = params.log_size.exp()
    points, normals = pose_surfels(surfels, params.translation, rotation, size)
    rendered = render(points, normals, surfels.points, surfels.valid,
                      surfel_spacing(size, config.surfels.count), batch.projection, batch.window,
                      config.render, with_attributes=batch.nocs is not None)
    extent = _projected_extent(points, surfels.valid, batch.projection)
    distances = _metric_sdf(prior, params.latent, batch.points, params.translation, rotation,
                            size)
    terms = {
        "points": losses.point_sdf_loss(distances, batch.points_valid,
                                        inside_weight=config.point_inside_weight),
        "free_space": losses.free_space_loss(rendered.depth, rendered.silhouette,
                                             batch.observed_depth),
        "silhouette": losses.silhouette_loss(rendered.silhouette, batch.mask,
                                             batch.mask_weight) * batch.has_mask,
        "box": losses.box_loss(extent, batch.box2d, batch.free_edges),
        "ground": losses.ground_loss(
            _bottom_height(params.translation, rotation, size, batch.ground), batch.has_ground),
        "latent": params.shape.pow(2).mean(-1),
        "size": losses.size_prior_loss(params.log_size, batch.size_log_mean,
                                       batch.size_log_std),
    }
    if batch.obstacles is not None:
        terms["overlap"] = losses.footprint_overlap_loss(
            params.translation, rotation, size, batch.obstacles, batch.obstacles_valid)
    else:
        terms["overlap"] = torch.zeros_like(terms["box"])
    if batch.nocs is not None:
        terms["nocs"] = losses.nocs_loss(rendered.nocs, rendered.silhouette, batch.nocs,
                                         batch.nocs_valid)
    else:
        terms["nocs"] = torch.zeros_like(terms["box"])
    weights = dataclasses.asdict(config.weights)
    total = sum(weights[name] * value for name, value in terms.items())
    return _Evaluation(terms, total, rendered, extent, distances, points, surfels.valid)


def _optimiser(params: _Parameters, config: FitConfig) -> torch.optim.Adam:
    """Adam with a learning rate per parameter group; the fused implementation updates every
    group in one operator and keeps its step counts on the device (the others read them back
    to the host at every step)."""
    return torch.optim.Adam([
        {"params": [params.translation], "lr": config.lr_translation},
        {"params": [params.rotation], "lr": config.lr_rotation},
        {"params": [params.log_size], "lr": config.lr_log_size},
        {"params": [params.shape], "lr": config.lr_latent},
    ], fused=True)


def _per_object(mask: Tensor, like: Tensor) -> Tensor:
    """(B,) mask viewed so that it broadcasts over ``like`` (B, ...)."""
    return mask.view(-1, *[1] * (like.dim() - 1))


def _freeze_broken(params: _Parameters, loss: Tensor, finite: Tensor) -> Tensor:
    """Zero the gradients of objects whose loss or gradients are not finite; (B,) finite."""
    grads = [p.grad for p in params.parameters() if p.grad is not None]
    ok = torch.isfinite(loss)
    for grad in grads:
        ok = ok & torch.isfinite(grad.reshape(grad.shape[0], -1)).all(-1)
    finite = finite & ok
    for grad in grads:
        grad.copy_(torch.where(_per_object(finite, grad), grad, 0.0))
    return finite


def _restore(params: _Parameters, saved: list[Tensor], finite: Tensor) -> None:
    """Put back the saved values of objects that are no longer finite."""
    with torch.no_grad():
        for parameter, value in zip(params.parameters(), saved, strict=True):
            parameter.copy_(torch.where(_per_object(finite, parameter), parameter, value))


class _Fit:
    """A fit in progress: the parameters of B objects, their optimiser, their surfels and the
    per-object bookkeeping.

    :meth:`step` is one iteration and never waits for the device (see the module's
    docstring); :meth:`stalled` and :meth:`refresh_surfels` read values back to the host and
    run between steps.

    Attributes:
        batch: the observations (with the widened mask). params, optimiser, tracker.
        finite: (B,) bool, False once an object's loss or gradients were not finite.
        history: (B,) best total loss of every object after each of the last
            ``patience + 1`` steps, oldest first.
    """

    def __init__(self, prior, batch: ObjectBatch, config: FitConfig, seed: int = 0):
        self.prior, self.config, self.seed = prior, config, seed
        # The silhouette's target, made once: the mask as the splats would draw it.
        self.batch = dataclasses.replace(batch, mask=losses.widen_mask(batch.mask,
                                                                       config.silhouette_halo))
        self.params = _Parameters(self.batch, prior, config.free_rotation)
        self.optimiser = _optimiser(self.params, config)
        mean_surfels = _extract(prior, self.params.latent.detach(), batch.size, config, seed)
        self.tracker = _SurfelTracker(mean_surfels, self.params.shape.detach().clone(),
                                      g.camera_centres(batch.projection))
        self.finite = torch.ones(len(batch), dtype=torch.bool, device=batch.center.device)
        self.history = [torch.full((len(batch),), math.inf, device=batch.center.device)]

    def step(self, shape_stage: bool) -> None:
        """One Adam step of every object; the shape stage also moves the latents."""
        params, config = self.params, self.config
        params.shape.requires_grad_(shape_stage)
        surfels = (self.tracker.project(self.prior, params, config) if shape_stage
                   else self.tracker.surfels)
        total = _evaluate(self.prior, params, self.batch, surfels, config).total
        self.optimiser.zero_grad(set_to_none=True)
        torch.where(self.finite, total, torch.zeros_like(total)).sum().backward()
        self.finite = _freeze_broken(params, total.detach(), self.finite)
        last_good = [p.detach().clone() for p in params.parameters()]
        self.optimiser.step()
        _restore(params, last_good, self.finite)
        best = self.history[-1]
        best = torch.minimum(best, torch.where(self.finite, total.detach(), best))
        self.history = [*self.history[-config.patience:], best]

    def stalled(self) -> bool:
        """Whether no object's best loss improved by more than ``early_stop`` over the last
        ``patience`` steps (one read back to the host)."""
        if len(self.history) <= self.config.patience:
            return False
        gain = self.history[0] - self.history[-1]
        return bool((gain < self.config.early_stop).all())

    def refresh_surfels(self) -> None:
        """Extract afresh the surfels of the objects whose shapes left them behind."""
        self.tracker.reextract_stale(self.prior, self.params, self.config, self.seed)

    def output(self, iterations: int, seconds: float) -> FitOutput:
        return _final(self.prior, self.params, self.batch, self.config, self.tracker.surfels,
                      self.finite, iterations, seconds)


def fit(prior, batch: ObjectBatch, config: FitConfig = FitConfig(), seed: int = 0) -> FitOutput:
    """Fit pose, size and shape of every object of the batch.

    Args:
        prior: a :class:`autolabel.prior.ShapePrior` (or anything with ``sdf``,
            ``latent_mean``, ``latent_size``, ``mahalanobis``).
        batch: observations and initial boxes of B objects.
        config: optimisation knobs.
        seed: seeds the surfel extraction.
    Returns:
        :class:`FitOutput` for the B objects. Objects whose loss became non-finite keep their
        last finite parameters and are flagged in ``finite``.
    """
    start = time.perf_counter()
    run = _Fit(prior, batch, config, seed)
    iterations = 0
    for iterations in range(1, config.iterations + 1):
        shape_stage = config.fit_shape and iterations > config.pose_iterations
        run.step(shape_stage)
        if iterations % config.check_every or iterations <= config.pose_iterations:
            continue
        if run.stalled():
            break
        if shape_stage and iterations < config.iterations:
            run.refresh_surfels()
    return run.output(iterations, time.perf_counter() - start)


def _extract(prior, latent: Tensor, size: Tensor, config: FitConfig, seed: int) -> Surfels:
    """Fresh surfels (B, N) of the shapes ``latent`` at ``size``, detached."""
    points, valid = extract_surface_points(prior.sdf, latent, size, config.surfels, seed)
    surfels = project_to_surface(prior.sdf, latent, points, valid, config.surfels)
    surfels.dropped = torch.zeros_like(surfels.dropped)
    return surfels


class _SurfelTracker:
    """The surfels of every object as its latent moves (the shape stage of :func:`fit`).

    Each iteration re-projects the surfels facing the camera (the renderer culls the others)
    from where they were last, and keeps those that converged for the next; an object's
    surfels are extracted afresh when its latent has moved far or too many failed to
    converge, which is checked between iterations.

    Attributes:
        surfels: canonical surfels (B, N) of all objects, detached; ``dropped`` counts the
            failures of the last re-projection.
        extracted_shape: (B, D) whitened latent at each object's last extraction.
        camera_centre: (B, 3) optical centres in the camera frame.
    """

    def __init__(self, surfels: Surfels, extracted_shape: Tensor, camera_centre: Tensor):
        self.surfels = surfels
        self.extracted_shape = extracted_shape
        self.camera_centre = camera_centre

    def project(self, prior, params: _Parameters, config: FitConfig) -> Surfels:
        """Surfels (B, N) of the current shapes, with gradients to the latent; only the
        facing ones that converged are valid."""
        state = self.surfels
        projected = project_facing(
            prior.sdf, params.latent, state, params.translation.detach(),
            params.rotation_matrix().detach(), params.log_size.exp().detach(),
            self.camera_centre, config.facing_cos, config.surfels)
        moved = projected.valid.unsqueeze(-1)
        self.surfels = Surfels(torch.where(moved, projected.points.detach(), state.points),
                               torch.where(moved, projected.normals.detach(), state.normals),
                               state.valid, projected.dropped)
        return projected

    def reextract_stale(self, prior, params: _Parameters, config: FitConfig, seed: int):
        """Extract the surfels of stale objects afresh (reads back to the host)."""
        moved = (params.shape.detach() - self.extracted_shape).norm(dim=-1)
        stale = (moved > config.reextract_distance) | (
            self.surfels.dropped > config.reextract_dropped * self.surfels.valid.sum(-1))
        if not stale.any():
            return
        fresh = _extract(prior, params.latent.detach()[stale],
                         params.log_size.exp().detach()[stale], config, seed)
        for name in ("points", "normals", "valid", "dropped"):
            getattr(self.surfels, name)[stale] = getattr(fresh, name)
        self.extracted_shape[stale] = params.shape.detach()[stale]


def _final(prior, params, batch, config, surfels, finite, iterations, seconds) -> FitOutput:
    """Diagnostics and tight boxes of the fitted shapes."""
    surfels = project_to_surface(prior.sdf, params.latent.detach(), surfels.points,
                                 surfels.valid, config.surfels)
    with torch.no_grad():
        evaluation = _evaluate(prior, params, batch, surfels, config)
        rotation = params.rotation_matrix()
        counted = batch.points_valid.sum(-1)
        near = ((evaluation.distances.abs() < 0.2) & batch.points_valid).sum(-1)
        inlier = torch.where(counted > 0, near / counted.clamp(min=1), math.nan)
        return FitOutput(
            center=params.translation.detach().clone(), rotation=rotation.detach(),
            size=params.log_size.detach().exp(),
            latent=params.latent.detach(),
            losses={k: v.detach() for k, v in evaluation.terms.items()},
            total=evaluation.total.detach(), extent=evaluation.extent.detach(),
            inlier_fraction=inlier.detach(),
            mahalanobis=params.shape.detach().pow(2).sum(-1),
            finite=finite & torch.isfinite(evaluation.total.detach()),
            silhouette=evaluation.rendered.silhouette.detach(),
            iterations=iterations, seconds=seconds)
