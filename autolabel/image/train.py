"""Training the image model on cached crops, its checkpoints, and the weights file.

Loss per batch: binary cross-entropy of the mask logits against the visible mask, L1 of the
NOCS map on the true mask's pixels, cross-entropy of the viewpoint bins and smooth L1 of the
true bin's residual, weighted by :class:`ImageTrainConfig`. Half of each batch's crops are
mirrored left to right (the mask and NOCS map flip, NOCS y becomes ``1 - y`` and alpha
``pi - alpha``), which doubles the views seen, and every crop's colours are jittered afresh
at each visit (brightness, contrast, saturation, noise), so that the network cannot learn the
fixed colours of a cached crop. Adam with decoupled weight decay; the learning
rate warms up linearly, then follows a cosine to a twentieth of its peak.

Every random choice of step ``k`` (which crops, which are mirrored) comes from a generator
seeded with ``(seed, k)`` and the schedule is a function of ``k`` alone, so a run resumed from
a checkpoint follows the same batches and learning rates as an uninterrupted one. A
checkpoint is written atomically every ``checkpoint_every`` steps and at the end.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor
from torch.nn import functional as F

from autolabel.errors import InputError, wrong_format
from autolabel.image.network import ImageModel, ImageModelConfig, ImagePrediction, predict, to_input
from autolabel.image.viewpoint import angle_error, decode_angle, encode_angle, mirrored_angle
from autolabel.io.atomic import atomic_path

IMAGE_MODEL_FORMAT = "autolabel-image-model"
IMAGE_MODEL_VERSION = 1
DEFAULT_IMAGE_MODEL = Path(__file__).resolve().parent / "weights" / "car_image_model.pt"
FLIP_ERROR = math.pi / 2  # a viewpoint error beyond this counts as a heading flip


@dataclasses.dataclass(frozen=True)
class ImageTrainConfig:
    """Settings of one training run (the defaults train the shipped model).

    Attributes:
        steps: optimisation steps. batch: crops per step.
        lr: peak learning rate; warmup: steps of its linear warm-up.
        weight_decay: AdamW's decoupled weight decay.
        mask_weight, nocs_weight, bin_weight, residual_weight: loss weights.
        mirror: mirror half of each batch left to right.
        colour_jitter: jitter the colours of every crop of a batch (:func:`jitter_colours`).
        checkpoint_every, validate_every: steps between checkpoints and between validations
            (and loss records).
        seed: seed of the initial weights and of every batch.
    """

    steps: int = 4_000
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 200
    weight_decay: float = 1e-4
    mask_weight: float = 1.0
    nocs_weight: float = 3.0
    bin_weight: float = 1.0
    residual_weight: float = 1.0
    mirror: bool = True
    colour_jitter: bool = True
    checkpoint_every: int = 500
    validate_every: int = 250
    seed: int = 0


_RESUMABLE_CHANGES = {"steps", "checkpoint_every", "validate_every"}


@dataclasses.dataclass
class TrainedImageModel:
    """A trained model, its settings and its record: one entry per ``validate_every`` steps
    with the mean training losses since the last entry and the validation metrics."""

    model: ImageModel
    config: ImageTrainConfig
    history: list[dict]
    steps_done: int


def learning_rate(step: int, config: ImageTrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then a cosine down to ``lr / 20``.

    >>> config = ImageTrainConfig(steps=1000, lr=1.0, warmup=100)
    >>> [round(learning_rate(k, config), 3) for k in (0, 99, 100, 550, 999)]
    [0.01, 1.0, 1.0, 0.524, 0.05]
    """
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(config.steps - config.warmup - 1, 1)
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def batch_tensors(data: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, Tensor]:
    """The training targets of some crops as tensors.

    Returns:
        ``image`` (B, S, S, 3) uint8, ``mask`` (B, S, S) bool, ``nocs`` (B, S, S, 3) float in
        [0, 1], ``alpha`` (B,) float.
    """
    return {"image": torch.from_numpy(data["image"][indices]),
            "mask": torch.from_numpy(data["mask"][indices]),
            "nocs": torch.from_numpy(data["nocs"][indices]).float() / 255.0,
            "alpha": torch.from_numpy(data["alpha"][indices]).float()}


def mirror(batch: dict[str, Tensor], which: Tensor) -> dict[str, Tensor]:
    """The batch with the crops selected by ``which`` (B,) bool mirrored left to right: image,
    mask and NOCS columns reversed, NOCS y replaced by ``1 - y`` on the mask, alpha by
    ``pi - alpha``."""
    flipped = {"image": batch["image"].flip(2), "mask": batch["mask"].flip(2)}
    nocs = batch["nocs"].flip(2)
    nocs[..., 1] = torch.where(flipped["mask"], 1.0 - nocs[..., 1], 0.0)
    flipped["nocs"] = nocs
    flipped["alpha"] = mirrored_angle(batch["alpha"])
    return {name: torch.where(which.view(-1, *[1] * (value.dim() - 1)), flipped[name], value)
            for name, value in batch.items()}


def jitter_colours(images: Tensor, generator: torch.Generator) -> Tensor:
    """Per crop: brightness and contrast times U(0.7, 1.3), saturation times U(0.4, 1.4) (one
    crop in ten grey), then Gaussian noise of standard deviation U(0, 0.03). Black pixels
    (outside the image, in a crop at its border) stay black, as in real crops.

    Args:
        images: (B, 3, S, S) in [0, 1].
    Returns:
        (B, 3, S, S) in [0, 1].
    """
    count = images.shape[0]
    outside = (images == 0).all(dim=1, keepdim=True)

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(count, 1, 1, 1, generator=generator)

    grey = images.mean(dim=1, keepdim=True)
    saturation = uniform(0.4, 1.4) * (torch.rand(count, 1, 1, 1, generator=generator) > 0.1)
    images = grey + saturation * (images - grey)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (mean + uniform(0.7, 1.3) * (images - mean)) * uniform(0.7, 1.3)
    noise = torch.randn(images.shape, generator=generator) * uniform(0.0, 0.03)
    return torch.where(outside, 0.0, (images + noise).clamp(0.0, 1.0))


def losses(prediction: ImagePrediction, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The four loss terms (scalars) of a batch: ``mask`` (BCE), ``nocs`` (mean L1 over the
    true mask's pixels and channels), ``bins`` (cross-entropy) and ``residual`` (smooth L1 of
    the true bin's residual, in bin widths)."""
    mask = batch["mask"].float()
    mask_loss = F.binary_cross_entropy_with_logits(prediction.mask_logits, mask)
    nocs_error = (prediction.nocs - batch["nocs"]).abs().sum(-1) * mask
    nocs_loss = nocs_error.sum() / (3.0 * mask.sum()).clamp_min(1.0)
    index, residual = encode_angle(batch["alpha"], prediction.bin_logits.shape[-1])
    bin_loss = F.cross_entropy(prediction.bin_logits, index)
    chosen = prediction.residuals.gather(-1, index[:, None])[:, 0]
    residual_loss = F.smooth_l1_loss(chosen, residual, beta=0.1)
    return {"mask": mask_loss, "nocs": nocs_loss, "bins": bin_loss, "residual": residual_loss}


def total_loss(terms: dict[str, Tensor], config: ImageTrainConfig) -> Tensor:
    """The weighted sum of the loss terms."""
    return (config.mask_weight * terms["mask"] + config.nocs_weight * terms["nocs"]
            + config.bin_weight * terms["bins"] + config.residual_weight * terms["residual"])


def crop_metrics(prediction: ImagePrediction, data: dict[str, np.ndarray]) -> dict[str, float]:
    """How well predictions match the targets of crops: the median viewpoint error (degrees),
    the share of heading flips (error > 90 degrees), the mean mask IoU and the mean NOCS L1
    error on the true mask's pixels."""
    truth = batch_tensors(data, np.arange(len(data["alpha"])))
    error = angle_error(decode_angle(prediction.bin_logits, prediction.residuals),
                        truth["alpha"])
    predicted = prediction.mask_logits > 0
    union = (predicted | truth["mask"]).sum((1, 2)).clamp_min(1)
    iou = (predicted & truth["mask"]).sum((1, 2)) / union
    nocs = losses(prediction, truth)["nocs"]
    return {"median_deg": math.degrees(float(error.median())),
            "flip_rate": float((error > FLIP_ERROR).float().mean()),
            "mask_iou": float(iou.mean()), "nocs_l1": float(nocs)}


def train_image_model(data: dict[str, np.ndarray], config: ImageTrainConfig = ImageTrainConfig(),
                      model_config: ImageModelConfig = ImageModelConfig(),
                      validation: dict[str, np.ndarray] | None = None,
                      checkpoint: Path | None = None, show_progress: bool = True
                      ) -> TrainedImageModel:
    """Train on crops (the fields of :func:`autolabel.image.shards.read_dataset`).

    When ``checkpoint`` names a file of a compatible run, training continues from its step
    (also to extend a finished run with more ``steps``); a checkpoint of other settings or
    data is refused. ``validation`` crops are scored every ``validate_every`` steps.
    """
    count = len(data["alpha"])
    if count == 0:
        raise InputError(None, "no training crops")
    if data["image"].shape[1] != model_config.size:
        raise InputError(None, f"crops are {data['image'].shape[1]} px, the network takes "
                         f"{model_config.size} px", field="size")
    torch.manual_seed(config.seed)
    model = ImageModel(model_config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    fingerprint = _fingerprint(data)
    history: list[dict] = []
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        history, start = _resume(Path(checkpoint), config, model_config, fingerprint, model,
                                 optimiser)
    sums = dict.fromkeys(("mask", "nocs", "bins", "residual", "total"), 0.0)
    summed = 0
    model.train()
    with _progress(show_progress) as progress:
        task = progress.add_task("training", total=config.steps, completed=start,
                                 loss=float("nan"), view=float("nan"))
        for step in range(start, config.steps):
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            indices = torch.randint(count, (config.batch,), generator=generator).numpy()
            batch = batch_tensors(data, indices)
            if config.mirror:
                batch = mirror(batch, torch.rand(config.batch, generator=generator) < 0.5)
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(step, config)
            images = to_input(batch["image"])
            if config.colour_jitter:
                images = jitter_colours(images, generator)
            terms = losses(model(images), batch)
            loss = total_loss(terms, config)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            for name, value in {**terms, "total": loss}.items():
                sums[name] += value.item()
            summed += 1
            done = step + 1
            if done % config.validate_every == 0:
                entry = {"step": done, **{name: value / summed for name, value in sums.items()}}
                sums, summed = dict.fromkeys(sums, 0.0), 0
                if validation is not None:
                    entry["validation"] = crop_metrics(
                        predict(model, torch.from_numpy(validation["image"])), validation)
                history.append(entry)
                progress.update(task, loss=entry["total"], view=entry.get(
                    "validation", {}).get("median_deg", float("nan")))
            if checkpoint is not None and (done % config.checkpoint_every == 0
                                           or done == config.steps):
                _save_checkpoint(Path(checkpoint), config, model_config, fingerprint, model,
                                 optimiser, history, done)
            progress.update(task, advance=1)
    model.eval()
    return TrainedImageModel(model, config, history, max(start, config.steps))


def _fingerprint(data: dict[str, np.ndarray]) -> Tensor:
    """(2,) identifies a training set: its crop count and the sum of its angles."""
    return torch.tensor([float(len(data["alpha"])), float(np.sum(data["alpha"]))],
                        dtype=torch.float64)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps  loss {task.fields[loss]:.4f}  held-out median {task.fields[view]:.1f}"
                   " deg"),
        TimeRemainingColumn(), disable=not enabled)


def _save_checkpoint(path: Path, config: ImageTrainConfig, model_config: ImageModelConfig,
                     fingerprint: Tensor, model: ImageModel, optimiser: torch.optim.Optimizer,
                     history: list[dict], steps_done: int) -> None:
    """Write the training state after ``steps_done`` steps atomically."""
    state = {"config": dataclasses.asdict(config),
             "model_config": dataclasses.asdict(model_config), "fingerprint": fingerprint,
             "model": model.state_dict(), "optimiser": optimiser.state_dict(),
             "history": history, "steps_done": steps_done}
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def _resume(path: Path, config: ImageTrainConfig, model_config: ImageModelConfig,
            fingerprint: Tensor, model: ImageModel, optimiser: torch.optim.Optimizer
            ) -> tuple[list[dict], int]:
    """Load a checkpoint into the model and optimiser; returns its history and step."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["config"]
        same_model = _plain(state["model_config"]) == _plain(dataclasses.asdict(model_config))
        same_data = torch.equal(state["fingerprint"], fingerprint)
    except Exception as error:  # torch.load raises many types for a damaged file
        raise InputError(path, f"cannot resume from this checkpoint ({error}); delete it to "
                         "start afresh") from error
    changed = sorted(name for name, value in dataclasses.asdict(config).items()
                     if name not in _RESUMABLE_CHANGES
                     and _plain(saved.get(name)) != _plain(value))
    if changed or not same_model or not same_data:
        reason = (f"settings {changed} differ" if changed else
                  "the network differs" if not same_model else "the training crops differ")
        raise InputError(path, f"checkpoint is from another training run ({reason}); delete "
                         "it or choose another checkpoint path")
    model.load_state_dict(state["model"])
    optimiser.load_state_dict(state["optimiser"])
    return list(state["history"]), int(state["steps_done"])


def _plain(value: object) -> object:
    """Tuples as lists, so that settings read back from a file compare equal."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return list(value) if isinstance(value, tuple) else value


def export_image_model(trained: TrainedImageModel, path: Path, data_spec: dict) -> None:
    """Write the weights, the network's settings, the training record and the training data's
    description as one ``torch.save`` file, atomically."""
    payload = {"format": IMAGE_MODEL_FORMAT, "version": IMAGE_MODEL_VERSION,
               "model_config": dataclasses.asdict(trained.model.config),
               "state": {k: v.detach().cpu() for k, v in trained.model.state_dict().items()},
               "training": {**dataclasses.asdict(trained.config),
                            "steps_done": trained.steps_done},
               "history": trained.history, "data": data_spec}
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def load_image_model(path: str | Path | None = None, device: str | torch.device = "cpu"
                     ) -> tuple[ImageModel, dict]:
    """The model of a weights file (default: the shipped one) in eval mode, and the file's
    metadata (training settings, history, data description).

    Raises :class:`InputError` naming the file when it is missing, damaged, or of another
    format or version.
    """
    path = DEFAULT_IMAGE_MODEL if path is None else Path(path)
    if not path.is_file():
        raise InputError(path, "image model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for such files
        raise InputError(path, "not a readable image model (truncated or foreign file)"
                         ) from error
    if not isinstance(payload, dict) or payload.get("format") != IMAGE_MODEL_FORMAT:
        raise wrong_format(path, payload, "an image model", IMAGE_MODEL_FORMAT,
                           "autolabel image-model train")
    if payload.get("version") != IMAGE_MODEL_VERSION:
        raise InputError(path, f"image model version {payload.get('version')} is not "
                         f"supported (this code reads version {IMAGE_MODEL_VERSION})",
                         field="version")
    settings = {key: tuple(value) if isinstance(value, list) else value
                for key, value in payload["model_config"].items()}
    model = ImageModel(ImageModelConfig(**settings))
    try:
        model.load_state_dict(payload["state"])
    except RuntimeError as error:
        raise InputError(path, "weights do not match the network's settings",
                         field="state") from error
    metadata = {key: value for key, value in payload.items() if key != "state"}
    return model.to(device).eval(), metadata
