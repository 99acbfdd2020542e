"""The cpu kernel set passes core's FusedKernel conformance suite: every op of its three groups
computes what its PyTorch reference computes, float and int8, on ragged shapes."""

from __future__ import annotations

from typing import Any

import torch
from test_kv_quantize import pool_like
from test_paged_decode_attention import make_case as decode_case
from test_paged_prefill_attention import as_int8
from test_paged_prefill_attention import make_case as prefill_case

from sagellm.core.testing import FusedKernelConformance
from sagellm.core.testing.fused_kernel import ExampleCall
from sagellm.kernel_fusion import (
    CPUKernels,
    paged_decode_attention_reference,
    paged_prefill_attention_reference,
    quantize_kv_reference,
    rms_norm_reference,
    rope_qk_reference,
    silu_mul_reference,
)

REFERENCES: dict[str, Any] = {
    "paged_decode_attention": paged_decode_attention_reference,
    "paged_prefill_attention": paged_prefill_attention_reference,
    "quantize_kv": quantize_kv_reference,
    "rms_norm": rms_norm_reference,
    "silu_mul": silu_mul_reference,
    "rope_qk": rope_qk_reference,
}
TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.int8: 0.0}


def _attention_calls() -> list[ExampleCall]:
    int8_decode, decode_scales = as_int8(decode_case([7, 40], torch.bfloat16))
    prefill = prefill_case([(9, 30), (1, 17)], torch.bfloat16)
    int8_prefill, prefill_scales = as_int8(prefill_case([(5, 5)], torch.float32))
    return [
        ("paged_decode_attention", decode_case([31, 2, 130], torch.float32), {}),
        ("paged_decode_attention", decode_case([8], torch.bfloat16), {}),
        ("paged_decode_attention", int8_decode, decode_scales),
        ("paged_prefill_attention", prefill, {"out": torch.zeros_like(prefill[0])}),
        ("paged_prefill_attention", int8_prefill, {"out": torch.zeros_like(int8_prefill[0]), **prefill_scales}),
    ]


def _decoder_calls() -> list[ExampleCall]:
    generator = torch.Generator().manual_seed(7)
    x = (torch.randn(5, 100, generator=generator) * 3).to(torch.bfloat16)  # 100: a ragged AVX-512 tail
    positions = torch.tensor([0, 3, 9, 2, 15])
    cos, sin = torch.randn(16, 64, generator=generator), torch.randn(16, 64, generator=generator)
    return [
        ("rms_norm", (x, torch.rand(100, generator=generator).to(torch.bfloat16) + 0.5, 1e-5), {}),
        ("silu_mul", (torch.randn(3, 2 * 36, generator=generator),), {}),
        ("rope_qk", (torch.randn(5, 15 * 64, generator=generator), cos, sin, positions, 9, 3, 64), {}),
    ]


def _write_calls() -> list[ExampleCall]:
    codes, scales = pool_like(torch.Generator().manual_seed(3))
    values = torch.randn(2, 3, codes.shape[3], codes.shape[4], generator=torch.Generator().manual_seed(4))
    return [("quantize_kv", (codes, scales, torch.tensor([5, 6, 13]), values.to(torch.bfloat16)), {})]


class TestCPUKernelsConformance(FusedKernelConformance):
    def make_kernel(self) -> CPUKernels:
        return CPUKernels()

    def example_calls(self) -> list[ExampleCall]:
        return [*_attention_calls(), *_decoder_calls(), *_write_calls()]

    def reference(self, op: str, *args: Any, **kwargs: Any) -> Any:
        return REFERENCES[op](*args, **kwargs)

    def written(self, op: str, returned: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return (args[0], args[1]) if op == "quantize_kv" else returned  # codes and scales, written in place

    def close(self, fused: Any, reference: Any) -> bool:
        if isinstance(fused, tuple):
            return all(self.close(a, b) for a, b in zip(fused, reference, strict=True))
        tolerance = TOLERANCE.get(fused.dtype, 2e-5)
        return fused.shape == reference.shape and bool(
            torch.allclose(fused.float(), reference.float(), atol=tolerance, rtol=tolerance)
        )
