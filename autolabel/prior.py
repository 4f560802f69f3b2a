"""The learned shape prior: loading it, querying signed distances, latent statistics.

A prior file (written by ``shape_priors.train.export_prior``) holds an SDF decoder, the codes
of its training shapes and their Gaussian statistics. Shapes live in the normalised object
frame: x forward, y left, z up, the tight box of every shape scaled per axis onto the cube
``[-0.5, 0.5]^3``; multiplying by a size (l, w, h) in metres gives the real object.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from autolabel.errors import InputError, wrong_format
from shape_priors.decoder import SdfDecoder, clamped_l1
from shape_priors.train import PRIOR_FORMAT, PRIOR_VERSION

DEFAULT_PRIOR = Path(__file__).resolve().parents[1] / "shape_priors" / "weights" / "car.pt"

_REQUIRED = ("decoder_config", "decoder_state", "train_latents", "latent_mean", "latent_cov",
             "normalisation", "object_frame")


class ShapePrior(nn.Module):
    """Decoder, training codes and the Gaussian over codes of a shape prior.

    Attributes: ``decoder``; buffers ``train_latents`` (S, D), ``latent_mean`` (D,),
    ``latent_cov`` (D, D) and ``latent_precision`` (D, D); ``train_sizes`` (S, 3) the tight box
    sizes (l, w, h) in metres of the training shapes; ``metadata`` (dict) everything else in the
    file (frame, normalisation, training settings).
    """

    def __init__(self, decoder: SdfDecoder, train_latents: Tensor, latent_mean: Tensor,
                 latent_cov: Tensor, train_sizes: Tensor, metadata: dict):
        super().__init__()
        self.decoder = decoder.eval().requires_grad_(False)
        self.register_buffer("train_latents", train_latents)
        self.register_buffer("latent_mean", latent_mean)
        self.register_buffer("latent_cov", latent_cov)
        self.register_buffer("latent_precision", torch.linalg.inv(latent_cov))
        self.register_buffer("train_sizes", train_sizes)
        self.metadata = metadata

    @property
    def latent_size(self) -> int:
        """Dimension D of a shape code."""
        return self.latent_mean.shape[0]

    def sdf(self, latent: Tensor, xyz: Tensor) -> Tensor:
        """Signed distances (B, N) at points xyz (B, N, 3) of the normalised frame, for codes
        latent (B, D); negative inside. Differentiable in both latent and xyz."""
        return self.decoder(latent, xyz)

    def mahalanobis(self, latent: Tensor) -> Tensor:
        """Squared Mahalanobis distance (B,) of codes latent (B, D) to the training codes'
        Gaussian. Squared, so that it is smooth at the mean (its gradient there is zero)."""
        centred = latent - self.latent_mean
        return torch.einsum("bi,ij,bj->b", centred, self.latent_precision, centred)

    def sample_latents(self, count: int, seed: int) -> Tensor:
        """Codes (count, D) drawn from N(latent_mean, latent_cov) with the given seed."""
        generator = torch.Generator().manual_seed(seed)
        normal = torch.randn(count, self.latent_size, generator=generator)
        factor = torch.linalg.cholesky(self.latent_cov.cpu())
        return (self.latent_mean.cpu() + normal @ factor.T).to(self.latent_mean.device)

    def infer_latents(self, xyz: Tensor, sdf: Tensor, free: Tensor | None = None,
                      iterations: int = 300, lr: float = 0.1,
                      prior_weight: float = 1e-3) -> Tensor:
        """Codes (B, D) that explain SDF observations, with the decoder fixed.

        xyz: (B, N, 3) points in the normalised frame; sdf: (B, N) their signed distances
        (0 for observed surface points). free: optional (B, M, 3) points known only to be
        outside (e.g. along LiDAR rays in front of the hits); they are penalised when the
        decoded SDF there is negative. The code is ``mean + L u`` with ``L L^T`` the latent
        covariance, so ``|u|^2`` is the squared Mahalanobis distance; ``u`` starts at 0 (the
        mean shape) and Adam minimises the mean clamped L1 error plus ``prior_weight |u|^2``.
        The step size is halved for the last third of the iterations.
        """
        delta = float(self.metadata["normalisation"]["clamp_delta"])
        factor = torch.linalg.cholesky(self.latent_cov)
        whitened = torch.zeros(xyz.shape[0], self.latent_size, device=xyz.device,
                               requires_grad=True)
        optimiser = torch.optim.Adam([whitened], lr=lr)
        for step in range(iterations):
            for group in optimiser.param_groups:
                group["lr"] = lr if step < 2 * iterations // 3 else lr / 2
            latent = self.latent_mean + whitened @ factor.T
            loss = clamped_l1(self.sdf(latent, xyz), sdf, delta).mean(-1)
            if free is not None:
                loss = loss + torch.relu(-self.sdf(latent, free)).clamp(max=delta).mean(-1)
            loss = loss + prior_weight * whitened.square().sum(-1)
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimiser.step()
        return (self.latent_mean + whitened @ factor.T).detach()


def load_prior(path: str | Path | None = None, device: str | torch.device = "cpu") -> ShapePrior:
    """Load a shape prior file (default: the shipped car prior ``shape_priors/weights/car.pt``).

    Raises :class:`InputError` naming the file when it is missing, truncated, or not a prior of
    a version this code reads.
    """
    path = DEFAULT_PRIOR if path is None else Path(path)
    if not path.is_file():
        raise InputError(path, "shape prior file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types (KeyError too) for such files
        raise InputError(path, f"not a readable shape prior (truncated or foreign file: "
                         f"{_first_line(error)})") from error
    if not isinstance(payload, dict) or payload.get("format") != PRIOR_FORMAT:
        raise wrong_format(path, payload, "a shape prior", PRIOR_FORMAT, "autolabel prior train")
    if payload.get("version") != PRIOR_VERSION:
        raise InputError(path, f"shape prior version {payload.get('version')} is not supported "
                         f"(this code reads version {PRIOR_VERSION})", field="version")
    for key in _REQUIRED:
        if key not in payload:
            raise InputError(path, "missing from the shape prior", field=key)
    try:
        decoder = SdfDecoder(**payload["decoder_config"])
        decoder.load_state_dict(payload["decoder_state"])
    except (TypeError, RuntimeError) as error:
        raise InputError(path, f"decoder does not match its configuration: "
                         f"{_first_line(error)}", field="decoder_state") from error
    metadata = {k: v for k, v in payload.items()
                if k not in ("decoder_state", "train_latents", "latent_mean", "latent_cov")}
    prior = ShapePrior(decoder, payload["train_latents"], payload["latent_mean"],
                       payload["latent_cov"], payload["normalisation"]["extents"], metadata)
    return prior.to(device)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
