"""sagellm-kernel-fusion: fused kernels the engine calls in place of chains of small ops.

``CPUKernels`` (registry name ``cpu``) implements
:class:`sagellm.core.protocols.FusedKernel`; its first op is
:func:`paged_decode_attention`, decode attention that reads K/V from the
pool's blocks in place, :func:`paged_prefill_attention` for a step's
prefill chunks over the same blocks, plus one-pass :func:`rms_norm`, :func:`silu_mul`
and :func:`rope_qk`, and :func:`quantize_kv` for int8 KV writes (C++,
compiled on first use; PyTorch references otherwise).
"""

from sagellm.kernel_fusion.cpu_extension import load_kernels
from sagellm.kernel_fusion.cpu_kernels import CPUKernels
from sagellm.kernel_fusion.decoder_ops import (
    compiled_for,
    rms_norm,
    rms_norm_reference,
    rope_qk,
    rope_qk_reference,
    silu_mul,
    silu_mul_reference,
)
from sagellm.kernel_fusion.kv_quantize import quantize_kv, quantize_kv_available, quantize_kv_reference
from sagellm.kernel_fusion.paged_attention import (
    fused_available,
    paged_decode_attention,
    paged_decode_attention_reference,
)
from sagellm.kernel_fusion.prefill_attention import (
    paged_prefill_attention,
    paged_prefill_attention_reference,
    prefill_available,
)
from sagellm.kernel_fusion.version import __version__

__all__ = [
    "CPUKernels",
    "__version__",
    "compiled_for",
    "fused_available",
    "load_kernels",
    "paged_decode_attention",
    "paged_decode_attention_reference",
    "paged_prefill_attention",
    "paged_prefill_attention_reference",
    "prefill_available",
    "quantize_kv",
    "quantize_kv_available",
    "quantize_kv_reference",
    "rms_norm",
    "rms_norm_reference",
    "rope_qk",
    "rope_qk_reference",
    "silu_mul",
    "silu_mul_reference",
]
