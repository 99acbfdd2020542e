"""``CPUKernels``: the registry's ``cpu`` fused-kernel set (implements core's ``FusedKernel``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sagellm.core.errors import ConfigError, InvalidRequestError
from sagellm.kernel_fusion.decoder_ops import compiled_for, rms_norm, rope_qk, silu_mul
from sagellm.kernel_fusion.kv_quantize import quantize_kv, quantize_kv_available
from sagellm.kernel_fusion.paged_attention import fused_available, paged_decode_attention
from sagellm.kernel_fusion.prefill_attention import paged_prefill_attention, prefill_available


class CPUKernels:
    """Fused CPU kernels the engine may call by name: ``apply("paged_decode_attention", ...)``,
    ``apply("paged_prefill_attention", ...)`` (every prefill chunk of a step in one call),
    ``apply("rms_norm", x, weight, eps)``, ``apply("silu_mul", gate_up)``, ``apply("rope_qk", ...)``,
    ``apply("quantize_kv", codes, scales, slots, values)`` (int8 KV writes, in place).

    Each op falls back to its PyTorch reference where the compiled kernel
    cannot serve (no compiler, another device or dtype), so calling it is
    always correct; :meth:`serves` says whether the fast path would run.
    """

    name = "cpu"

    def __init__(self) -> None:
        self._ops: dict[str, Callable[..., Any]] = {
            "paged_decode_attention": paged_decode_attention,
            "paged_prefill_attention": paged_prefill_attention,
            "rms_norm": rms_norm,
            "silu_mul": silu_mul,
            "rope_qk": rope_qk,
            "quantize_kv": quantize_kv,
        }

    @classmethod
    def from_config(cls, section: Any, **_deps: Any) -> CPUKernels:
        if section.options:
            raise ConfigError(f"the cpu kernel set takes no options, got {sorted(section.options)}")
        return cls()

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(self._ops)

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        if not args or args[0] not in self._ops:
            raise InvalidRequestError(f"unknown fused op {args[0] if args else None!r}; available: {self.ops}")
        return self._ops[args[0]](*args[1:], **kwargs)

    def serves(self, op: str, *tensors: Any) -> bool:
        """Whether ``op`` would run compiled for these leading tensors (attention: query, key_blocks)."""
        if op == "paged_decode_attention":
            return fused_available(*tensors[:2])
        if op == "paged_prefill_attention":  # query, key_blocks
            return prefill_available(*tensors[:2])
        if op == "quantize_kv":  # codes, values
            return quantize_kv_available(*tensors[:2])
        return op in self._ops and bool(tensors) and compiled_for(tensors[0])
