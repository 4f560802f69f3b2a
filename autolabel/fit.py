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
Everything that depends only on the observations is made once per batch (:class:`_Objective`),
the parameters are two tensors updated by one fused Adam operator (:class:`_Parameters`), and
the renderer and the posing of surfels have hand-written backward passes: an iteration is
about 800 operators in the pose stage and 1055 in the shape stage as dispatched
(tests/test_fit.py counts them; the profiler, which does not see the operators called inside
others, counts 687 and 905, benchmarks/speed.py), whatever the batch size, of which the shape
decoder's passes are about 100 and 250. Compiled (``FitConfig.compile``) the profiler counts
49 and 84.

Inputs are tensors in an :class:`ObjectBatch`; building it from frames (I/O, hypotheses,
masks) is :mod:`autolabel.pipeline`'s job.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import torch
from torch import Tensor
from torch.nn import functional

from autolabel import geometry as g
from autolabel import losses
from autolabel.render import Rendered, RenderSettings, WindowCameras, render_in_windows
from autolabel.surfels import (
    Surfels,
    SurfelSettings,
    extract_surface_points,
    pose_surfels,
    project_facing,
    project_to_surface,
    surfel_spacing,
)

# What a detection box may be compared with (FitConfig.box_extent).
BOX_EXTENTS = ("shape", "box")

LOSS_TERMS = ("points", "free_space", "free_rays", "silhouette", "box", "nocs", "ground",
              "latent", "size", "overlap")


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (see :mod:`autolabel.losses` for each term's units)."""

    points: float = 4.0
    free_space: float = 0.3
    free_rays: float = 1.0
    silhouette: float = 1.0
    box: float = 0.5
    nocs: float = 0.1
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
        box_extent: what the detection box is compared with: ``"shape"``, the image extent of
            the rendered shape (a detector that boxes the visible pixels), or ``"box"``, the
            projection of the label's 3D box (a detector trained on labels like KITTI's,
            whose 2D boxes are their 3D boxes' projections: on kitti_dev's unoccluded cars the
            two agree to a median 0.3 px).
        nocs_either_end: the NOCS term (given NOCS maps) does not tell the car's front from
            its back (:class:`autolabel.losses.NocsLoss`): the image model that predicts the
            maps mistakes one real car's front for its back in five.
        weights, render, surfels: loss weights, renderer and surfel settings.
        compile: run each iteration's loss and its backward pass as code compiled with
            ``torch.compile`` (:func:`_compiled_loss`): a few operator calls per iteration
            instead of hundreds, the same results to float rounding. Compiling costs 5 to
            40 s per stage (less with inductor's on-disk cache), in the shape stage per batch
            size, and on CPU the compiled iteration is hardly faster, so it is off.
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
    box_extent: str = "shape"
    silhouette_halo: float = 0.75
    nocs_either_end: bool = True
    surfels: SurfelSettings = SurfelSettings(differentiable_normals=False)
    compile: bool = False

    def __post_init__(self):
        if self.box_extent not in BOX_EXTENTS:
            raise ValueError(f"box_extent must be one of {BOX_EXTENTS}, not "
                             f"{self.box_extent!r}")


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
        free_points: (B, F, 3) places on the LiDAR's rays near the object that the sensor saw
            through (:func:`autolabel.lidar.rays.free_samples`), or None without LiDAR.
        free_valid: (B, F) bool or None.
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
    free_points: Tensor | None = None
    free_valid: Tensor | None = None

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


@dataclasses.dataclass
class _Pose:
    """Where B objects are: translation (B, 3), rotation (B, 3, 3) camera-from-object,
    log_size and size (B, 3)."""

    translation: Tensor
    rotation: Tensor
    log_size: Tensor
    size: Tensor

    def detach(self) -> _Pose:
        return _Pose(self.translation.detach(), self.rotation.detach(), self.log_size.detach(),
                     self.size.detach())


class _Parameters(torch.nn.Module):
    """The optimised tensors of a batch: displacements from the start, in units of the
    learning rates.

    ``pose`` (B, P) moves translation (3), rotation (yaw, or 6D with ``free_rotation``) and
    log-size (3), and ``shape`` (B, D) the shape: Adam moves every coordinate by about its
    learning rate per step, so in these units one learning rate of 1 serves them all and one
    fused operator updates them (an object that never moves keeps its start exactly). The
    shape is optimised in whitened coordinates ``u`` (``latent = mean + L u`` with ``L L^T``
    the prior's covariance), so one learning rate fits every latent dimension and the squared
    Mahalanobis distance is simply ``|u|^2``.
    """

    def __init__(self, batch: ObjectBatch, prior, config: FitConfig):
        super().__init__()
        self.free_rotation = config.free_rotation
        rotation = (g.matrix_to_rotation_6d(g.yaw_to_rotation(batch.yaw)) if self.free_rotation
                    else batch.yaw.unsqueeze(-1))
        self.widths = [3, rotation.shape[-1], 3]
        self.register_buffer("rates", batch.center.new_tensor(
            [config.lr_translation] * 3 + [config.lr_rotation] * rotation.shape[-1]
            + [config.lr_log_size] * 3))
        self.register_buffer("start", torch.cat([batch.center, rotation, batch.size.log()],
                                                dim=-1))
        self.pose = torch.nn.Parameter(torch.zeros_like(self.start))
        self.latent_rate = config.lr_latent
        self.shape = torch.nn.Parameter(batch.center.new_zeros(len(batch), prior.latent_size))
        self.register_buffer("latent_mean", prior.latent_mean.to(batch.center))
        factor = torch.linalg.cholesky(prior.latent_cov.double()).to(batch.center)
        self.register_buffer("latent_map", factor.T * config.lr_latent)
        # yaw_to_rotation(y) is [cos y, sin y, 1] @ terms, and sin y = cos(y - pi / 2).
        terms = g.yaw_rotation_terms(batch.center.dtype, batch.center.device)
        self.register_buffer("yaw_phase", batch.center.new_tensor([0.0, math.pi / 2]))
        self.register_buffer("yaw_terms", terms[:2])
        self.register_buffer("yaw_constant", terms[2])

    def current(self) -> _Pose:
        """The pose of every object (with its graph to ``pose``)."""
        translation, rotation, log_size = torch.addcmul(self.start, self.pose, self.rates) \
            .split(self.widths, dim=-1)
        if self.free_rotation:
            matrix = g.rotation_6d_to_matrix(rotation)
        else:
            matrix = torch.addmm(self.yaw_constant, torch.cos(rotation - self.yaw_phase),
                                 self.yaw_terms).view(-1, 3, 3)
        return _Pose(translation, matrix, log_size, log_size.exp())

    @property
    def whitened(self) -> Tensor:
        """(B, D) the shapes in whitened coordinates ``u``."""
        return self.shape * self.latent_rate

    @property
    def latent(self) -> Tensor:
        """(B, D) shape codes."""
        return torch.addmm(self.latent_mean, self.shape, self.latent_map)


def _metric_sdf(prior, latent: Tensor, points: Tensor, pose: _Pose) -> Tensor:
    """Approximate metric signed distances (B, M) of camera-frame points (B, M, 3) to the shapes.

    The decoder answers in the normalised frame, where a shape fills the unit cube; a distance
    there is turned into metres with the geometric mean of the size. Beyond the cube the
    decoder's values are unsupervised, so the metric distance to the cube is added: points
    far from the shape are pulled towards it instead of sitting on a flat plateau.
    """
    local = g.camera_to_object(points, pose.translation, pose.rotation, pose.size)
    clamped = functional.hardtanh(local, -0.55, 0.55)
    inside = prior.sdf(latent, clamped) * pose.log_size.mean(-1, keepdim=True).exp()
    outside = ((local - clamped) * pose.size.unsqueeze(1)).norm(dim=-1)
    return inside + outside


def _bottom_height(pose: _Pose, ground: Tensor) -> Tensor:
    """(B,) height above the ground plane (B, 4) (normal (3), offset) of the centre of each
    box's bottom face.

    Every shape of the prior rests on the bottom face of its normalised cube (the wheels
    touch z = -0.5), so the box bottom is the shape's ground contact.
    """
    bottom = torch.addcmul(pose.translation, pose.rotation[..., 2], pose.size[:, 2:],
                           value=-0.5)
    return (bottom * ground[:, :3]).sum(-1) + ground[:, 3]


@dataclasses.dataclass
class _Evaluation:
    terms: dict[str, Tensor]
    total: Tensor
    rendered: Rendered
    extent: Tensor
    distances: Tensor


class _Objective:
    """The loss of every object of a batch as a function of its parameters and surfels.

    Everything that depends on the observations alone (the windows' cameras, what each loss
    term compares with) is made once here, so that an evaluation is the same short sequence
    of batched operators at every step.
    """

    def __init__(self, prior, batch: ObjectBatch, config: FitConfig):
        self.prior, self.config = prior, config
        self.points = (batch.points if batch.free_points is None
                       else torch.cat([batch.points, batch.free_points], 1))
        self.observed = batch.points.shape[1]
        self.ground = batch.ground
        self.with_attributes = batch.nocs is not None
        self.cameras = WindowCameras.of(batch.projection, batch.window,
                                        config.render.window_size)
        self.shape_extent = config.box_extent == "shape"
        self.projection = batch.projection
        # Image pixels of a window's (-u_min, -v_min, u_max, v_max): origin + scale * them.
        self.extent_origin = batch.window[:, [0, 1, 0, 1]]
        self.extent_scale = ((batch.window[:, 2:3] - batch.window[:, :1])
                             / config.render.window_size * batch.window.new_tensor(
                                 [-1.0, -1.0, 1.0, 1.0]))
        dtype = batch.center.dtype
        self.point_loss = losses.PointSdfLoss(batch.points_valid,
                                              inside_weight=config.point_inside_weight,
                                              dtype=dtype)
        self.free_space_loss = losses.FreeSpaceLoss(batch.observed_depth)
        self.silhouette_loss = losses.SilhouetteLoss(batch.mask, batch.mask_weight,
                                                     batch.has_mask)
        self.box_loss = losses.BoxLoss(batch.box2d, batch.free_edges)
        self.ground_loss = losses.GroundLoss(batch.has_ground, dtype=dtype)
        self.size_loss = losses.SizePriorLoss(batch.size_log_mean, batch.size_log_std)
        self.free_ray_loss = (None if batch.free_points is None
                              else losses.FreeRayLoss(batch.free_valid, dtype=dtype))
        self.overlap_loss = (None if batch.obstacles is None else losses.FootprintOverlapLoss(
            batch.obstacles, batch.obstacles_valid))
        self.nocs_loss = (None if batch.nocs is None
                          else losses.NocsLoss(batch.nocs, batch.nocs_valid,
                                               config.nocs_either_end))
        absent = {name for name, loss in (("overlap", self.overlap_loss),
                                          ("free_rays", self.free_ray_loss),
                                          ("nocs", self.nocs_loss)) if loss is None}
        self.terms = [name for name in LOSS_TERMS if name not in absent]
        weights = dataclasses.asdict(config.weights)
        self.weights = batch.center.new_tensor([weights[name] for name in self.terms])

    def __call__(self, params: _Parameters, pose: _Pose, surfels: Surfels) -> _Evaluation:
        """All loss terms of the objects at ``pose`` with shapes ``params.latent``."""
        config = self.config
        points, normals = pose_surfels(surfels, pose.translation, pose.rotation, pose.size)
        rendered = render_in_windows(points, normals, surfels.points, surfels.valid,
                                     surfel_spacing(pose.size, config.surfels.count),
                                     self.cameras, config.render, self.with_attributes)
        extent = (self._extent(rendered.pixels, surfels.valid) if self.shape_extent
                  else g.projected_box2d(g.box_corners(pose.translation, pose.rotation,
                                                       pose.size), self.projection))
        distances = _metric_sdf(self.prior, params.latent, self.points, pose)
        distances, free = distances[:, :self.observed], distances[:, self.observed:]
        terms = {
            "points": self.point_loss(distances),
            "free_space": self.free_space_loss(rendered.depth, rendered.silhouette),
            "silhouette": self.silhouette_loss(rendered.silhouette),
            "box": self.box_loss(extent),
            "ground": self.ground_loss(_bottom_height(pose, self.ground)),
            "latent": params.whitened.square().mean(-1),
            "size": self.size_loss(pose.log_size),
        }
        if self.nocs_loss is not None:
            terms["nocs"] = self.nocs_loss(rendered.nocs, rendered.silhouette)
        if self.free_ray_loss is not None:
            terms["free_rays"] = self.free_ray_loss(free)
        if self.overlap_loss is not None:
            terms["overlap"] = self.overlap_loss(pose.translation, pose.rotation, pose.size)
        total = torch.stack([terms[name] for name in self.terms], dim=-1) @ self.weights
        return _Evaluation(terms, total, rendered, extent, distances)

    def _extent(self, pixels: Tensor, valid: Tensor) -> Tensor:
        """(B, 4) image box (x1, y1, x2, y2) around the valid surfels' window pixels
        (B, N, 2)."""
        ends = torch.cat([-pixels, pixels], dim=-1).masked_fill(
            ~valid.unsqueeze(-1), -torch.finfo(pixels.dtype).max).amax(1)
        return torch.addcmul(self.extent_origin, ends, self.extent_scale)


def _optimiser(params: _Parameters, config: FitConfig) -> torch.optim.Adam:
    """Adam at learning rate 1 on the parameters in units of their learning rates (see
    :class:`_Parameters`). Its ``eps`` is in those units too: 1e-8 times the smallest rate
    keeps it at or below Adam's default 1e-8 for every parameter. The fused implementation
    updates every parameter in one operator and keeps its step counts on the device (the
    others read them back to the host at every step)."""
    smallest = min(config.lr_translation, config.lr_rotation, config.lr_log_size,
                   config.lr_latent)
    return torch.optim.Adam(params.parameters(), lr=1.0, eps=1e-8 * smallest, fused=True)


def _freeze_broken(parameters: list[Tensor], loss: Tensor, finite: Tensor) -> Tensor:
    """Zero the gradients (B, ...) of objects whose loss or gradients are not finite;
    (B,) finite. A sum is finite exactly when its terms are (short of overflowing, which is
    as broken), so one test of each object's loss plus gradients covers them all."""
    finite = finite & torch.isfinite(sum((p.grad.sum(-1) for p in parameters), loss))
    broken = ~finite.unsqueeze(-1)
    for parameter in parameters:
        parameter.grad.masked_fill_(broken, 0.0)
    return finite


def _restore(parameters: list[Tensor], saved: list[Tensor], finite: Tensor) -> None:
    """Put back the saved values of objects that are no longer finite."""
    kept = finite.unsqueeze(-1)
    with torch.no_grad():
        for parameter, value in zip(parameters, saved, strict=True):
            parameter.copy_(torch.where(kept, parameter, value))


class _Fit:
    """A fit in progress: the parameters of B objects, their optimiser, their surfels and the
    per-object bookkeeping.

    :meth:`step` is one iteration and never waits for the device (see the module's
    docstring); :meth:`stalled` and :meth:`refresh_surfels` read values back to the host and
    run between steps.

    Attributes:
        batch: the observations (with the widened mask). params, optimiser, tracker.
        objective: the loss terms of the batch.
        finite: (B,) bool, False once an object's loss or gradients were not finite.
        history: (B,) best total loss of every object after each of the last
            ``patience + 1`` steps, oldest first.
    """

    def __init__(self, prior, batch: ObjectBatch, config: FitConfig, seed: int = 0):
        self.prior, self.config, self.seed = prior, config, seed
        # The silhouette's target, made once: the mask as the splats would draw it.
        self.batch = dataclasses.replace(batch, mask=losses.widen_mask(batch.mask,
                                                                       config.silhouette_halo))
        self.objective = _Objective(prior, self.batch, config)
        self.params = _Parameters(self.batch, prior, config)
        self.optimiser = _optimiser(self.params, config)
        mean_surfels = _extract(prior, self.params.latent.detach(), batch.size, config, seed)
        self.tracker = _SurfelTracker(mean_surfels, self.params.whitened.detach().clone(),
                                      self.objective.cameras.centre)
        self.finite = torch.ones(len(batch), dtype=torch.bool, device=batch.center.device)
        self.history = [torch.full((len(batch),), math.inf, device=batch.center.device)]
        self.compiled = config.compile

    def step(self, shape_stage: bool) -> None:
        """One Adam step of every object; the shape stage also moves the latents."""
        params, config = self.params, self.config
        params.shape.requires_grad_(shape_stage)
        loss, total = None, None
        if self.compiled:
            try:
                loss, total = _compiled_loss(self, shape_stage)
            except torch._dynamo.exc.FailOnRecompileLimitHit:
                self.compiled = False  # this fit's steps run uncompiled from here on
        if loss is None:
            loss, total = _loss(self, shape_stage)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        moved = [params.pose, params.shape] if shape_stage else [params.pose]
        self.finite = _freeze_broken(moved, total, self.finite)
        with torch.no_grad():
            last_good = [parameter.clone() for parameter in moved]
        self.optimiser.step()
        _restore(moved, last_good, self.finite)
        best = self.history[-1]
        best = torch.minimum(best, torch.where(self.finite, total, best))
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
        return _final(self, iterations, seconds)


def _loss(run: _Fit, shape_stage: bool) -> tuple[Tensor, Tensor]:
    """The loss to differentiate (the sum over the finite objects) and every object's total
    (B,), detached; the shape stage moves the tracker's surfels on."""
    params = run.params
    pose = params.current()
    surfels = (run.tracker.project(run.prior, params.latent, pose.detach(), run.config)
               if shape_stage else run.tracker.surfels)
    total = run.objective(params, pose, surfels).total
    return torch.where(run.finite, total, 0.0).sum(), total.detach()


def _pose_stage_loss(run: _Fit) -> tuple[Tensor, Tensor]:
    """:func:`_loss` of the pose stage."""
    return _loss(run, shape_stage=False)


def _shape_stage_loss(run: _Fit) -> tuple[Tensor, Tensor]:
    """:func:`_loss` of the shape stage."""
    return _loss(run, shape_stage=True)


# Compiled versions a stage keeps: the shape stage compiles once per batch size, and a chunk
# holds at most 64 detections with the GPU default of --batch-objects.
RECOMPILE_LIMIT = 72


@functools.cache
def _compiled(shape_stage: bool):
    """The compiled :func:`_loss` of a stage, made on first use (importing the compiler
    takes seconds)."""
    return torch.compile(_shape_stage_loss if shape_stage else _pose_stage_loss,
                         fullgraph=True)


def _compiled_loss(run: _Fit, shape_stage: bool) -> tuple[Tensor, Tensor]:
    """:func:`_loss`, compiled with ``torch.compile``: forward and backward pass are each a
    handful of operator calls (inductor's fused kernels and a few library calls), whatever
    the batch size.

    Each stage is its own function, so that each compiles for its own inputs. In the pose
    stage the first batch compiles with its sizes fixed and the first batch of another size
    once more with the batch size symbolic, which then serves every size but 1 (which, like
    any size-1 dimension, compiles apart). The shape stage still compiles once per batch
    size: tracing the decoder under ``torch.func.vjp`` fixes the batch size (torch 2.13),
    so a run of frames with many sizes compiles it many times (seconds each), and beyond
    :data:`RECOMPILE_LIMIT` sizes runs it uncompiled. Compiled code lives for the process:
    later fits with the same prior and settings reuse it.
    """
    # The parameters' batch dimension varies like every other (torch.compile holds the
    # sizes of nn.Parameters fixed by default); a shape stage per batch size up to
    # RECOMPILE_LIMIT, past which dynamo raises FailOnRecompileLimitHit (the caller then
    # steps uncompiled).
    with torch._dynamo.config.patch(force_parameter_static_shapes=False,
                                    recompile_limit=RECOMPILE_LIMIT):
        return _compiled(shape_stage)(run)


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

    def project(self, prior, latent: Tensor, pose: _Pose, config: FitConfig) -> Surfels:
        """Surfels (B, N) of the shapes ``latent`` (B, D), with gradients to it; only the ones
        facing the camera at ``pose`` (detached) that converged are valid."""
        state = self.surfels
        projected = project_facing(prior.sdf, latent, state, pose.translation, pose.rotation,
                                   pose.size, self.camera_centre, config.facing_cos,
                                   config.surfels)
        moved = projected.valid.unsqueeze(-1)
        self.surfels = Surfels(torch.where(moved, projected.points.detach(), state.points),
                               torch.where(moved, projected.normals.detach(), state.normals),
                               state.valid, projected.dropped)
        return projected

    def reextract_stale(self, prior, params: _Parameters, config: FitConfig, seed: int):
        """Extract the surfels of stale objects afresh (reads back to the host)."""
        whitened = params.whitened.detach()
        moved = (whitened - self.extracted_shape).norm(dim=-1)
        stale = (moved > config.reextract_distance) | (
            self.surfels.dropped > config.reextract_dropped * self.surfels.valid.sum(-1))
        if not stale.any():
            return
        fresh = _extract(prior, params.latent.detach()[stale],
                         params.current().size.detach()[stale], config, seed)
        for name in ("points", "normals", "valid", "dropped"):
            getattr(self.surfels, name)[stale] = getattr(fresh, name)
        self.extracted_shape[stale] = whitened[stale]


def _final(run: _Fit, iterations: int, seconds: float) -> FitOutput:
    """Diagnostics and tight boxes of the fitted shapes."""
    prior, params, config, batch = run.prior, run.params, run.config, run.batch
    surfels = project_to_surface(prior.sdf, params.latent.detach(), run.tracker.surfels.points,
                                 run.tracker.surfels.valid, config.surfels)
    with torch.no_grad():
        pose = params.current()
        evaluation = run.objective(params, pose, surfels)
        counted = batch.points_valid.sum(-1)
        near = ((evaluation.distances.abs() < 0.2) & batch.points_valid).sum(-1)
        inlier = torch.where(counted > 0, near / counted.clamp(min=1), math.nan)
        zero = torch.zeros_like(evaluation.total)
        return FitOutput(
            center=pose.translation, rotation=pose.rotation, size=pose.size,
            latent=params.latent,
            losses={name: evaluation.terms.get(name, zero) for name in LOSS_TERMS},
            total=evaluation.total, extent=evaluation.extent, inlier_fraction=inlier,
            mahalanobis=params.whitened.square().sum(-1),
            finite=run.finite & torch.isfinite(evaluation.total),
            silhouette=evaluation.rendered.silhouette,
            iterations=iterations, seconds=seconds)
