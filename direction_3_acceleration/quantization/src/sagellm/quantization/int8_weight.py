"""An int8 weight for W8A8 matmuls: per-output-channel symmetric codes.

Stored transposed ([K, N], column-major over a contiguous [N, K] buffer):
that is the operand layout ``torch._int_mm`` multiplies fastest on CPU
(oneDNN's VNNI kernels take it without a copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

QMAX = 127


@dataclass(frozen=True, slots=True)
class Int8Weight:
    """``weight[n, k] ~= codes_t[k, n] * scales[n] / smooth_inverse[k]``.

    ``smooth_inverse`` ([K] float32, SmoothQuant's 1/s) multiplies the
    activations before they are quantized; None when the weight is unsmoothed.
    """

    codes_t: torch.Tensor  # int8 [K, N], a transposed view of a contiguous [N, K]
    scales: torch.Tensor  # float32 [N]
    smooth_inverse: torch.Tensor | None = None  # float32 [K]

    @property
    def shape(self) -> tuple[int, int]:
        """(out_features, in_features), as ``nn.Linear.weight``."""
        return self.codes_t.shape[1], self.codes_t.shape[0]

    @property
    def nbytes(self) -> int:
        extra = 0 if self.smooth_inverse is None else self.smooth_inverse.numel() * 4
        return self.codes_t.numel() + self.scales.numel() * 4 + extra

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The [N, K] weight these codes stand for (the smoothing undone)."""
        weight = self.codes_t.t().float() * self.scales[:, None]
        if self.smooth_inverse is not None:
            weight = weight * self.smooth_inverse[None, :]
        return weight.to(dtype)


def quantize_per_channel(weight: torch.Tensor, smooth: torch.Tensor | None = None) -> Int8Weight:
    """Symmetric int8 codes per output row of ``weight`` ([N, K]), after scaling its columns by ``smooth``.

    ``smooth`` ([K]) is SmoothQuant's per-input-channel factor: the weight's
    columns grow by it and the activations shrink by it, which leaves the
    product unchanged and moves activation outliers into the weight.
    """
    if weight.dim() != 2:
        raise ValueError(f"expected a 2-D [out, in] weight, got shape {tuple(weight.shape)}")
    w = weight.detach().float()
    inverse = None
    if smooth is not None:
        smooth = smooth.detach().float().to(w.device)
        if smooth.shape != (w.shape[1],):
            raise ValueError(f"smoothing factors must be [{w.shape[1]}], got {tuple(smooth.shape)}")
        if not bool(torch.all(smooth > 0)):
            raise ValueError("smoothing factors must be positive")
        w = w * smooth[None, :]
        inverse = smooth.reciprocal().contiguous()
    scales = w.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / QMAX
    codes = torch.round(w / scales[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
    return Int8Weight(codes.contiguous().t(), scales.contiguous(), inverse)
