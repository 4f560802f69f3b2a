"""Auto-decoder training of the shape prior, latent statistics and export to one file.

One latent code per training shape is optimised jointly with the decoder weights (DeepSDF):
clamped L1 on the SDF samples, an L2 penalty on the codes, Adam with separate learning rates
for weights and codes and a step schedule. Training writes a checkpoint every few epochs and
resumes from it, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor

from autolabel.errors import InputError
from shape_priors.decoder import SdfDecoder, clamped_l1
from shape_priors.sdf_samples import SdfSamples, SdfSampling

PRIOR_FORMAT = "autolabel-shape-prior"
PRIOR_VERSION = 1
OBJECT_FRAME = "x forward, y left, z up; origin at the centre of the tight box; metres"
NORMALISATION = "tight box scaled per axis onto the cube [-0.5, 0.5]^3"


@dataclass(frozen=True)
class PriorTrainConfig:
    """Settings of one auto-decoder training run (defaults: the shipped car prior)."""

    latent_size: int = 16
    """Dimension D of each shape code."""
    widths: tuple[int, ...] = (128, 128, 128, 128)
    """Hidden layer widths of the decoder."""
    reinject: tuple[int, ...] = (2,)
    """Hidden layers that see the input [latent, xyz] again."""
    dropout: float = 0.0
    """Dropout probability in the decoder."""
    weight_norm: bool = False
    """Weight normalisation of the decoder's hidden layers."""
    epochs: int = 200
    """Passes over all training shapes."""
    shapes_per_batch: int = 16
    """Shapes in one optimisation step."""
    points_per_shape: int = 1024
    """SDF samples drawn per shape and step (from the shape's cached samples)."""
    lr_decoder: float = 1e-3
    """Adam learning rate of the decoder weights at epoch 0."""
    lr_latent: float = 2e-3
    """Adam learning rate of the latent codes at epoch 0."""
    lr_decay: float = 0.5
    """Factor applied to both learning rates every ``lr_decay_every`` epochs."""
    lr_decay_every: int = 50
    """Epochs between learning-rate decays."""
    latent_reg: float = 1e-4
    """Weight of the mean squared norm of the batch's codes in the loss."""
    latent_init_std: float = 0.01
    """Standard deviation of the initial codes."""
    clamp_delta: float = 0.1
    """Clamp of the L1 loss, in the normalised space."""
    checkpoint_every: int = 10
    """Epochs between checkpoints."""
    seed: int = 0
    """Seed of the code initialisation, the decoder initialisation and the batches."""
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda[:N]``."""

    def decoder(self) -> SdfDecoder:
        """A freshly initialised decoder with this configuration's architecture."""
        return SdfDecoder(self.latent_size, self.widths, self.reinject, self.dropout,
                          self.weight_norm)


# Settings that may differ between a checkpoint and the run that resumes from it.
_RESUMABLE_CHANGES = frozenset({"epochs", "checkpoint_every", "device"})


@dataclass
class TrainedPrior:
    """The outcome of :func:`train_prior`.

    latents: (S, D) one code per training shape; history: mean loss per completed epoch.
    """

    decoder: SdfDecoder
    latents: Tensor
    config: PriorTrainConfig
    history: list[float] = field(default_factory=list)

    @property
    def epochs_done(self) -> int:
        """Number of completed epochs (including those before a resume)."""
        return len(self.history)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def learning_rate(base: float, epoch: int, config: PriorTrainConfig) -> float:
    """Step schedule: ``base * lr_decay ** (epoch // lr_decay_every)``."""
    return base * config.lr_decay ** (epoch // config.lr_decay_every)


def train_prior(
    samples: list[SdfSamples],
    config: PriorTrainConfig = PriorTrainConfig(),
    checkpoint: Path | None = None,
    show_progress: bool = True,
) -> TrainedPrior:
    """Train decoder and codes on the SDF samples of S shapes.

    When ``checkpoint`` names an existing file from a compatible run, training continues from
    its epoch; a checkpoint is written there every ``config.checkpoint_every`` epochs and at the
    end. All shapes must have the same number of samples.
    """
    if not samples:
        raise ValueError("no training shapes")
    device = resolve_device(config.device)
    points = torch.from_numpy(np.stack([s.points for s in samples])).to(device)  # (S, M, 3)
    sdf = torch.from_numpy(np.stack([s.sdf for s in samples])).to(device)  # (S, M)
    torch.manual_seed(config.seed)
    decoder = config.decoder().to(device)
    latents = torch.nn.Parameter(
        torch.randn(len(samples), config.latent_size, device=device) * config.latent_init_std
    )
    optimiser = torch.optim.Adam([
        {"params": decoder.parameters(), "lr": config.lr_decoder},
        {"params": [latents], "lr": config.lr_latent},
    ])
    extents = torch.from_numpy(np.stack([s.extent for s in samples]))  # identifies the shapes
    history: list[float] = []
    if checkpoint is not None and Path(checkpoint).exists():
        history = _resume(Path(checkpoint), config, extents, decoder, latents, optimiser)
    decoder.train()
    with _progress(show_progress) as progress:
        task = progress.add_task("training", total=config.epochs, completed=len(history),
                                 loss=float("nan"))
        for epoch in range(len(history), config.epochs):
            for group, base in zip(optimiser.param_groups, (config.lr_decoder, config.lr_latent),
                                   strict=True):
                group["lr"] = learning_rate(base, epoch, config)
            history.append(_epoch(decoder, latents, optimiser, points, sdf, config, epoch))
            progress.update(task, advance=1, loss=history[-1])
            done = epoch + 1
            if checkpoint is not None and (done % config.checkpoint_every == 0
                                           or done == config.epochs):
                _save_checkpoint(Path(checkpoint), config, extents, decoder, latents, optimiser,
                                 history)
    decoder.eval()
    return TrainedPrior(decoder=decoder, latents=latents.detach(), config=config,
                        history=history)


def _epoch(decoder: SdfDecoder, latents: Tensor, optimiser: torch.optim.Optimizer,
           points: Tensor, sdf: Tensor, config: PriorTrainConfig, epoch: int) -> float:
    """One pass over all shapes in random batches; returns the mean loss of the epoch."""
    generator = torch.Generator(device=points.device).manual_seed(config.seed * 100_003 + epoch)
    n_shapes, n_samples = sdf.shape
    order = torch.randperm(n_shapes, generator=generator, device=points.device)
    total = 0.0
    for batch in order.split(config.shapes_per_batch):
        pick = torch.randint(n_samples, (len(batch), config.points_per_shape),
                             generator=generator, device=points.device)
        xyz = points[batch[:, None], pick]  # (b, P, 3)
        target = sdf[batch[:, None], pick]  # (b, P)
        code = latents[batch]
        fit = clamped_l1(decoder(code, xyz), target, config.clamp_delta).mean()
        loss = fit + config.latent_reg * code.square().sum(-1).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        total += fit.item() * len(batch)
    return total / n_shapes


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  loss {task.fields[loss]:.5f}"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _save_checkpoint(path: Path, config: PriorTrainConfig, extents: Tensor,
                     decoder: SdfDecoder, latents: Tensor, optimiser: torch.optim.Optimizer,
                     history: list[float]) -> None:
    """Write the training state atomically (a partial file never replaces a good one)."""
    state = {
        "config": asdict(config),
        "extents": extents,
        "decoder": decoder.state_dict(),
        "latents": latents.detach(),
        "optimiser": optimiser.state_dict(),
        "history": list(history),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)


def _resume(path: Path, config: PriorTrainConfig, extents: Tensor, decoder: SdfDecoder,
            latents: Tensor, optimiser: torch.optim.Optimizer) -> list[float]:
    """Load a checkpoint into the training state; returns the loss history it holds.

    extents: (S, 3) tight box sizes of the training shapes, which must match the checkpoint's.
    """
    try:
        state = torch.load(path, map_location=latents.device, weights_only=True)
        saved, saved_extents = state["config"], state["extents"].cpu()
        history = [float(x) for x in state["history"]]
    except Exception as error:  # torch.load raises many types for a damaged file
        raise InputError(path, f"cannot resume from this checkpoint ({error}); delete it "
                         "to start afresh") from error
    changed = sorted(f.name for f in fields(config)
                     if f.name not in _RESUMABLE_CHANGES
                     and _comparable(saved.get(f.name)) != _comparable(getattr(config, f.name)))
    same_shapes = saved_extents.shape == extents.shape and torch.equal(saved_extents, extents)
    if changed or not same_shapes:
        reason = f"settings {changed} differ" if changed else "the training shapes differ"
        raise InputError(path, f"checkpoint is from another training run ({reason}); delete it "
                         "or choose another checkpoint path")
    decoder.load_state_dict(state["decoder"])
    with torch.no_grad():
        latents.copy_(state["latents"])
    optimiser.load_state_dict(state["optimiser"])
    return history


def _comparable(value: object) -> object:
    """Tuples and lists compare equal (a checkpoint may hold either)."""
    return list(value) if isinstance(value, tuple | list) else value


def latent_statistics(latents: Tensor, ridge: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Mean (D,) and covariance (D, D) of codes (S, D), the covariance made invertible.

    ``ridge`` times the mean variance is added to the diagonal.

    >>> mean, cov = latent_statistics(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]]))
    >>> [round(m, 4) for m in mean.tolist()], round(cov[0, 0].item(), 4)
    ([0.0, 0.6667], 1.0)
    """
    mean = latents.mean(0)
    centred = latents - mean
    cov = centred.T @ centred / max(latents.shape[0] - 1, 1)
    scale = cov.diagonal().mean().clamp_min(1e-12)
    return mean, cov + ridge * scale * torch.eye(latents.shape[1], dtype=cov.dtype)


def export_prior(trained: TrainedPrior, samples: list[SdfSamples], names: list[str],
                 sampling: SdfSampling, path: Path) -> None:
    """Write the prior as one ``torch.save`` file of plain tensors, numbers and strings.

    samples and names are those of the training shapes, in training order; their tight boxes
    give the normalisation of each shape and the real-world size statistics.
    """
    latents = trained.latents.detach().cpu()
    mean, cov = latent_statistics(latents)
    extents = torch.from_numpy(np.stack([s.extent for s in samples])).float()
    payload = {
        "format": PRIOR_FORMAT,
        "version": PRIOR_VERSION,
        "decoder_config": dict(trained.decoder.config),
        "decoder_state": {k: v.detach().cpu() for k, v in trained.decoder.state_dict().items()},
        "train_latents": latents,
        "latent_mean": mean,
        "latent_cov": cov,
        "normalisation": {
            "description": NORMALISATION,
            "clamp_delta": trained.config.clamp_delta,
            "centres": torch.from_numpy(np.stack([s.centre for s in samples])).float(),
            "extents": extents,
        },
        "object_frame": OBJECT_FRAME,
        "shape_names": list(names),
        "training": {**asdict(trained.config), "epochs_done": trained.epochs_done,
                     "final_loss": trained.history[-1] if trained.history else float("nan")},
        "sampling": asdict(sampling),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)
