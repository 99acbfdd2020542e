"""``CPUKernels``: the registry's ``cpu`` fused-kernel set.

It implements all three of core's op groups: ``PagedAttentionKernels``
(decode and prefill attention over the pool's blocks, float or int8 with
per-block scales), ``KVQuantizeKernels`` (one-pass int8 KV writes) and
``DecoderKernels`` (RMSNorm, SiLU-gate, RoPE).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sagellm.core.errors import ConfigError
from sagellm.kernel_fusion import decoder_ops, kv_quantize, paged_attention, prefill_attention
from sagellm.kernel_fusion.decoder_ops import compiled_for

_ATTENTION_FAST_PATHS: dict[str, Callable[[torch.Tensor, torch.Tensor], bool]] = {
    "paged_decode_attention": paged_attention.fused_available,  # (query, key_blocks)
    "paged_prefill_attention": prefill_attention.prefill_available,  # (query, key_blocks)
    "quantize_kv": kv_quantize.quantize_kv_available,  # (codes, values)
}
_ELEMENTWISE = ("rms_norm", "silu_mul", "rope_qk")


class CPUKernels:
    """Fused CPU kernels, compiled on first use.

    Each op falls back to its PyTorch reference where the compiled kernel
    cannot serve (no compiler, another device or dtype), so calling it is
    always correct; :meth:`serves` says whether the fast path would run.
    """

    name = "cpu"

    @classmethod
    def from_config(cls, section: Any, **_deps: Any) -> CPUKernels:
        if section.options:
            raise ConfigError(f"the cpu kernel set takes no options, got {sorted(section.options)}")
        return cls()

    @property
    def ops(self) -> tuple[str, ...]:
        return (*_ATTENTION_FAST_PATHS, *_ELEMENTWISE)

    def serves(self, op: str, *tensors: Any) -> bool:
        """Whether ``op`` would run compiled for these leading tensors."""
        if op in _ATTENTION_FAST_PATHS:
            return len(tensors) >= 2 and _ATTENTION_FAST_PATHS[op](tensors[0], tensors[1])
        return op in _ELEMENTWISE and bool(tensors) and compiled_for(tensors[0])

    # The ops are the module functions themselves: one signature each, no wrapper to drift from it.
    paged_decode_attention = staticmethod(paged_attention.paged_decode_attention)
    paged_prefill_attention = staticmethod(prefill_attention.paged_prefill_attention)
    quantize_kv = staticmethod(kv_quantize.quantize_kv)
    rms_norm = staticmethod(decoder_ops.rms_norm)
    silu_mul = staticmethod(decoder_ops.silu_mul)
    rope_qk = staticmethod(decoder_ops.rope_qk)
