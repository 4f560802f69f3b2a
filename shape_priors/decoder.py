"""The SDF decoder of the auto-decoder (DeepSDF): (latent, xyz) -> signed distance."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm as apply_weight_norm


class SdfDecoder(nn.Module):
    """An MLP mapping a latent code and a point in the normalised frame to a signed distance.

    The constructor arguments are DeepSDF's knobs:

    - ``latent_size``: dimension D of the shape code.
    - ``widths``: the width of each hidden layer.
    - ``reinject``: indices of hidden layers whose input is concatenated with the network
      input ``[latent, xyz]`` again (DeepSDF re-injects half-way).
    - ``dropout``: dropout probability after each hidden layer (0 disables it).
    - ``weight_norm``: weight normalisation on every hidden layer.
    - ``tanh_output``: squash the output into (-1, 1).

    >>> decoder = SdfDecoder(latent_size=4, widths=(16, 16, 16), reinject=(2,))
    >>> decoder(torch.zeros(2, 4), torch.zeros(2, 5, 3)).shape
    torch.Size([2, 5])
    """

    def __init__(
        self,
        latent_size: int = 16,
        widths: tuple[int, ...] = (128, 128, 128, 128),
        reinject: tuple[int, ...] = (2,),
        dropout: float = 0.0,
        weight_norm: bool = False,
        tanh_output: bool = True,
    ):
        super().__init__()
        if any(not 0 < index < len(widths) for index in reinject):
            raise ValueError(f"reinject indices {reinject} must lie in 1..{len(widths) - 1}")
        self.config = {
            "latent_size": int(latent_size),
            "widths": tuple(int(w) for w in widths),
            "reinject": tuple(int(i) for i in reinject),
            "dropout": float(dropout),
            "weight_norm": bool(weight_norm),
            "tanh_output": bool(tanh_output),
        }
        input_size = latent_size + 3
        self.layers = nn.ModuleList()
        previous = input_size
        for index, width in enumerate(widths):
            fan_in = previous + (input_size if index in reinject else 0)
            layer = nn.Linear(fan_in, width)
            self.layers.append(apply_weight_norm(layer) if weight_norm else layer)
            previous = width
        self.output = nn.Linear(previous, 1)
        self.reinject = frozenset(reinject)
        self.dropout = nn.Dropout(dropout)
        self.tanh_output = tanh_output

    def forward(self, latent: Tensor, xyz: Tensor) -> Tensor:
        """Signed distances (B, N) of points xyz (B, N, 3) for shape codes latent (B, D), or
        (B, N, D) with a code per point.

        Every layer that reads the input ``[latent, xyz]`` applies its latent columns once per
        code (a per-shape bias) instead of once per point; the result is the same as
        concatenating the code to every point, at a fraction of the cost and memory.
        """
        size = latent.shape[-1]
        if latent.dim() == 2:
            latent = latent.unsqueeze(1)
        hidden = None
        for index, layer in enumerate(self.layers):
            if hidden is None or index in self.reinject:
                weight = layer.weight
                code_bias = latent @ weight[:, -size - 3:-3].T + layer.bias
                pre = xyz @ weight[:, -3:].T + code_bias
                if hidden is not None:
                    pre = pre + hidden @ weight[:, : -size - 3].T
            else:
                pre = layer(hidden)
            hidden = self.dropout(torch.relu(pre))
        sdf = self.output(hidden).squeeze(-1)
        return torch.tanh(sdf) if self.tanh_output else sdf


def clamped_l1(predicted: Tensor, target: Tensor, delta: float = 0.1) -> Tensor:
    """DeepSDF's loss per point, ``|clamp(pred, ±delta) - clamp(target, ±delta)|``, same shape.

    >>> clamped_l1(torch.tensor([0.5, 0.02]), torch.tensor([0.3, 0.0])).tolist()
    [0.0, 0.019999999552965164]
    """
    return (predicted.clamp(-delta, delta) - target.clamp(-delta, delta)).abs()
