"""Packed 2:4 weights: the layout round-trips, and every kernel path this CPU runs equals the reference.

int8 paths are compared exactly (the int32 products and the rescaled
outputs), bf16 paths closely (fp32 sums in another order). Paths this CPU
lacks are skipped; tests/test_packed24_emulated.py checks the AVX-512 ones
through SIMDe where its headers are installed.
"""

from __future__ import annotations

import pytest
import torch

from sagellm.core.errors import ConfigError
from sagellm.core.native import DISABLE_ENV, ISA_ENV
from sagellm.sparsity import sparse_kernels
from sagellm.sparsity.packed24 import (
    Packed24Weight,
    pack_24,
    packed24_available,
    packed24_linear,
    packed24_reference,
    quantize_rows,
    unpack_24,
    unpack_codes,
)

# (N, K): whole windows, tails (K % 64, K % 128, K % 4 != 0), SmolLM2's K = 576 and 1536.
SHAPES = [(8, 64), (5, 128), (33, 576), (7, 200), (3, 4), (9, 1536), (4, 130), (2, 193)]
ROWS = [1, 2, 3, 4, 5, 7, 8, 11]  # 11: more than one 8-row block


def sparse_24(rows: int, cols: int) -> torch.Tensor:
    """A random [rows, cols] weight with the 2 largest of every 4 inputs kept (a short last group too)."""
    weight = torch.randn(rows, cols)
    padded = torch.nn.functional.pad(weight, (0, -cols % 4)).view(rows, -1, 4)
    keep = torch.zeros_like(padded).scatter_(-1, padded.abs().topk(2, dim=-1).indices, 1.0)
    return (padded * keep).view(rows, -1)[:, :cols].contiguous()


def compiled_paths(kind: str) -> list[str]:
    module = sparse_kernels.kernels()
    return [] if module is None else list(module.cpu_paths(kind))


def int8_paths() -> list[str]:
    return compiled_paths("int8")


needs_kernels = pytest.mark.skipif(sparse_kernels.kernels() is None, reason="packed 2:4 kernels not built here")


@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_bf16_round_trip_is_exact(rows: int, cols: int) -> None:
    weight = sparse_24(rows, cols).bfloat16()
    packed = pack_24(weight, "bf16")
    assert packed.shape == (rows, cols) and packed.kind == "bf16" and packed.scales is None
    assert torch.equal(unpack_24(packed), weight.float())


@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_int8_round_trip_is_per_row_quantization(rows: int, cols: int) -> None:
    weight = sparse_24(rows, cols)
    packed = pack_24(weight, "int8")
    scales = weight.abs().amax(dim=1) / 127
    assert torch.equal(packed.scales, scales)
    codes = torch.round(weight / scales[:, None]).to(torch.int8)
    assert torch.equal(unpack_codes(packed), codes)
    assert torch.equal(packed.row_sums, codes.sum(dim=1, dtype=torch.int32))
    assert torch.allclose(unpack_24(packed), weight, atol=float(scales.max()) / 2 + 1e-7)


def test_layout_sizes() -> None:
    packed = pack_24(sparse_24(3, 200), "int8")  # 200 inputs -> 4 windows of 64
    assert packed.values.shape == (3, 4 * 32) and packed.indices.shape == (3, 4 * 8)
    assert packed.values.dtype == torch.int8 and packed.indices.dtype == torch.uint8
    bf16 = pack_24(sparse_24(3, 200), "bf16")  # 7 windows of 32
    assert bf16.values.shape == (3, 7 * 16) and bf16.indices.shape == (3, 7 * 4)
    assert packed.nbytes == 3 * (128 + 32) + 3 * 8


def test_groups_with_fewer_nonzeros_round_trip() -> None:
    weight = torch.zeros(3, 8, dtype=torch.bfloat16)
    weight[1, 3] = 1.5  # one nonzero, at the last position of its group
    weight[2, 5:7] = 2.0
    assert torch.equal(unpack_24(pack_24(weight, "bf16")), weight.float())


def test_rejects_more_than_two_nonzeros_in_a_group() -> None:
    weight = sparse_24(4, 64)
    weight[2, 8:12] = torch.tensor([1.0, 0.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="row 2, inputs 8-11 hold 3 nonzeros"):
        pack_24(weight, "int8")


def test_rejects_bad_shape_and_kind() -> None:
    with pytest.raises(ValueError, match="2-D"):
        pack_24(torch.zeros(4), "bf16")
    with pytest.raises(ConfigError, match="unknown packed 2:4 kind 'int4'"):
        pack_24(sparse_24(2, 8), "int4")
    with pytest.raises(ConfigError):
        packed24_available("fp8")
    with pytest.raises(ValueError, match="x has 16 features"):
        packed24_linear(torch.randn(2, 16), pack_24(sparse_24(2, 8), "bf16"))


@needs_kernels
@pytest.mark.parametrize("path", int8_paths())
@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_int8_paths_equal_the_reference_exactly(path: str, rows: int, cols: int) -> None:
    module = sparse_kernels.kernels()
    packed = pack_24(sparse_24(rows, cols), "int8")
    weight_codes = unpack_codes(packed)
    for m in ROWS:
        x = torch.randn(m, cols) * 3
        codes, _ = quantize_rows(x)
        expected = (codes.long() @ weight_codes.long().T).to(torch.int32)
        acc = module.packed_int8_matmul_codes(codes, packed.values, packed.indices, packed.row_sums, path)
        assert torch.equal(acc, expected), (path, m)
        dense = module.dense_int8_matmul_codes(codes, weight_codes.contiguous(), packed.row_sums, path)
        assert torch.equal(dense, expected), (path, m)
        out = module.packed_int8_linear(
            x, packed.values, packed.indices, packed.scales, packed.row_sums, torch.empty(0), path
        )
        assert torch.equal(out, packed24_reference(x, packed)), (path, m)


@needs_kernels
@pytest.mark.parametrize("path", compiled_paths("bf16"))
@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_bf16_paths_match_the_reference(path: str, rows: int, cols: int) -> None:
    module = sparse_kernels.kernels()
    packed = pack_24(sparse_24(rows, cols), "bf16")
    for m in ROWS:
        x = torch.randn(m, cols)
        out = module.packed_bf16_linear(x, packed.values, packed.indices, torch.empty(0), path)
        expected = packed24_reference(x, packed)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5 * cols**0.5)


@needs_kernels
@pytest.mark.parametrize("path", int8_paths())
def test_dense_int8_kernel_equals_the_packed_one(path: str) -> None:
    packed = pack_24(sparse_24(48, 576), "int8")
    x, bias = torch.randn(4, 576).bfloat16(), torch.randn(48)
    dense = sparse_kernels.dense_int8_linear(
        x, unpack_codes(packed).contiguous(), packed.scales, packed.row_sums, bias, path
    )
    assert dense.dtype == torch.bfloat16
    assert torch.equal(dense, packed24_linear(x, packed, bias))


@pytest.mark.parametrize("kind", ["int8", "bf16"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_linear_keeps_dtype_takes_bias_and_3d_input(kind: str, dtype: torch.dtype) -> None:
    packed = pack_24(sparse_24(24, 200), kind)
    x, bias = torch.randn(2, 3, 200).to(dtype), torch.randn(24).to(dtype)
    out = packed24_linear(x, packed, bias)
    assert out.shape == (2, 3, 24) and out.dtype == dtype
    expected = packed24_reference(x.reshape(6, 200), packed, bias).view(2, 3, 24)
    if kind == "int8":
        assert torch.equal(out, expected)
    else:
        torch.testing.assert_close(out.float(), expected.float(), rtol=1e-2, atol=1e-2)


def test_int8_is_close_to_the_dense_product() -> None:
    weight = sparse_24(64, 576)
    x = torch.randn(4, 576)
    out = packed24_linear(x, pack_24(weight, "int8"))
    exact = x @ weight.T
    assert float((out - exact).norm() / exact.norm()) < 0.02


@needs_kernels
def test_portable_cap_runs_the_scalar_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ISA_ENV, "portable")
    assert sparse_kernels.kernel_path("int8") == "scalar" and sparse_kernels.kernel_path("bf16") == "scalar"
    assert not packed24_available("int8")
    packed = pack_24(sparse_24(16, 576), "int8")
    x = torch.randn(3, 576)
    assert torch.equal(packed24_linear(x, packed), packed24_reference(x, packed))


def test_switched_off_kernels_run_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, "0")
    assert sparse_kernels.kernel_path("int8") is None and not packed24_available("bf16")
    packed = pack_24(sparse_24(16, 130), "int8")
    x = torch.randn(3, 130)
    assert torch.equal(packed24_linear(x, packed), packed24_reference(x, packed))


@needs_kernels
def test_available_means_a_vectorized_path() -> None:
    for kind in ("int8", "bf16"):
        assert packed24_available(kind) == (compiled_paths(kind)[0] != "scalar")


@needs_kernels
def test_a_path_the_cpu_lacks_is_refused_not_run() -> None:
    module = sparse_kernels.kernels()
    packed = pack_24(sparse_24(4, 64), "bf16")
    for path in ("avx512", "avx2"):
        if path not in module.cpu_paths("bf16"):
            with pytest.raises(RuntimeError, match="does not run"):
                module.packed_bf16_linear(torch.randn(1, 64), packed.values, packed.indices, torch.empty(0), path)
    with pytest.raises(RuntimeError, match="unknown kernel path"):
        module.packed_bf16_linear(torch.randn(1, 64), packed.values, packed.indices, torch.empty(0), "sse9")


def test_packed_weight_is_frozen() -> None:
    packed = pack_24(sparse_24(2, 8), "bf16")
    assert isinstance(packed, Packed24Weight)
    with pytest.raises(AttributeError):
        packed.kind = "int8"  # type: ignore[misc]
