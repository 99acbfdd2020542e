"""SmoothQuant W8A8 (Xiao et al., 2023): int8 weights per output channel, int8 activations per token.

Activations of LLM linears carry a few channels with large magnitudes;
quantizing them per token spends the int8 range on those outliers. SmoothQuant
divides each input channel by ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)``
(from calibration) and multiplies the weight's column j by it, an exact
rewrite of the product that splits the difficulty between the two operands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sagellm.core.errors import ConfigError
from sagellm.quantization.activation_range import ActivationRange
from sagellm.quantization.int8_weight import Int8Weight, quantize_per_channel
from sagellm.quantization.w8a8_linear import int8_linear

DEFAULT_ALPHA = 0.5
_FLOOR = 1e-5


def smoothing_factors(activation_absmax: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """``s_j`` per input channel of ``weight`` ([N, K]) from the channels' activation maxima ([K])."""
    weight_absmax = weight.detach().float().abs().amax(dim=0).clamp(min=_FLOOR)
    act = activation_absmax.detach().float().to(weight_absmax.device).clamp(min=_FLOOR)
    return (act.pow(alpha) / weight_absmax.pow(1.0 - alpha)).clamp(min=_FLOOR)


@dataclass(frozen=True, slots=True)
class SmoothQuantW8A8:
    """The ``w8a8`` quantizer: implements :class:`sagellm.core.protocols.LinearQuantizer`.

    ``quantize(weight)`` gives plain per-channel int8 codes;
    ``quantize(weight, calibration=absmax)`` smooths first with the
    per-input-channel activation ranges an :class:`ActivationRange` (its
    ``calibration_observer()``) collected (``alpha`` shifts difficulty from
    activations, 0, to weights, 1). ``linear`` runs the result in W8A8.
    """

    alpha: float = DEFAULT_ALPHA

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"quantization option alpha must be within [0, 1], got {self.alpha}")

    @classmethod
    def from_config(cls, section: Any, **_deps: Any) -> SmoothQuantW8A8:
        options = dict(section.options)
        unknown = set(options) - {"alpha"}
        if unknown:
            raise ConfigError(f"unknown w8a8 quantization option(s) {sorted(unknown)}; expected: alpha")
        try:
            alpha = float(options.get("alpha", DEFAULT_ALPHA))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"quantization option alpha must be a number, got {options['alpha']!r}") from exc
        return cls(alpha=alpha)

    @property
    def bits(self) -> int:
        return 8

    def calibration_observer(self) -> ActivationRange:
        """One per linear layer: SmoothQuant needs each layer's per-channel activation ranges."""
        return ActivationRange()

    def quantize(self, weight: Any, calibration: torch.Tensor | None = None) -> Int8Weight:
        """``calibration``: the layer's per-input-channel max |activation| (an ActivationRange's result)."""
        smooth = None if calibration is None else smoothing_factors(calibration, weight, self.alpha)
        return quantize_per_channel(weight, smooth)

    def dequantize(self, qweight: Any) -> torch.Tensor:
        if not isinstance(qweight, Int8Weight):
            raise TypeError(f"w8a8 dequantizes Int8Weight, got {type(qweight).__name__}")
        return qweight.dequantize()

    def linear(self, x: torch.Tensor, qweight: Int8Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Run a weight this quantizer made: ``x @ W.T + bias`` in W8A8."""
        return int8_linear(x, qweight, bias)
