"""The AVX-512 (and AVX2) kernel source, built against SIMDe's portable intrinsics, equals the reference.

Our CI and development machines have no AVX-512, so the VBMI/VNNI/BF16
kernels would otherwise never run before they meet a CPU that has them.
SIMDe (``apt-get install libsimde-dev``, headers only) implements those
intrinsics in plain C; built with ``-DSAGELLM_SPARSITY_SIMDE`` the same
kernel files run on any CPU. Skipped where the headers are missing; the
first build takes about a minute (cached in ``$TORCH_EXTENSIONS_DIR``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from sagellm.sparsity.packed24 import pack_24, packed24_reference, quantize_rows, unpack_codes
from sagellm.sparsity.sparse_kernels import SOURCES, SPEC

SIMDE_INCLUDE = Path(os.environ.get("SIMDE_INCLUDE_DIR", "/usr/include"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SIMDE_INCLUDE / "simde" / "x86" / "avx512.h").is_file(),
        reason="SIMDe headers not installed (libsimde-dev, or SIMDE_INCLUDE_DIR)",
    ),
]

# (N, K): whole window pairs, an odd window count (AVX-512's single-window tail), K % 64 != 0.
SHAPES = [(16, 128), (9, 576), (5, 1536), (7, 200), (3, 4), (4, 130)]
ROWS = [1, 2, 5, 8, 11]


@pytest.fixture(scope="module")
def emulated() -> Any:
    from torch.utils.cpp_extension import load

    digest = hashlib.sha256()
    for path in (*SOURCES, *sorted(SPEC.include_dirs[0].glob("*.h"))):
        digest.update(path.read_bytes())
    return load(
        name=f"sagellm_sparsity_packed24_simde_{digest.hexdigest()[:12]}",
        sources=[str(source) for source in SOURCES],
        extra_cflags=["-O1", "-DSAGELLM_SPARSITY_SIMDE"],
        extra_include_paths=[str(SPEC.include_dirs[0]), str(SIMDE_INCLUDE)],
        verbose=False,
    )


def sparse_24(rows: int, cols: int) -> torch.Tensor:
    weight = torch.randn(rows, cols)
    padded = torch.nn.functional.pad(weight, (0, -cols % 4)).view(rows, -1, 4)
    keep = torch.zeros_like(padded).scatter_(-1, padded.abs().topk(2, dim=-1).indices, 1.0)
    return (padded * keep).view(rows, -1)[:, :cols].contiguous()


@pytest.mark.parametrize("path", ["avx512", "avx2"])
@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_emulated_int8_paths_are_exact(emulated: Any, path: str, rows: int, cols: int) -> None:
    packed = pack_24(sparse_24(rows, cols), "int8")
    weight_codes = unpack_codes(packed)
    for m in ROWS:
        x = torch.randn(m, cols) * 3
        codes, _ = quantize_rows(x)
        expected = (codes.long() @ weight_codes.long().T).to(torch.int32)
        acc = emulated.packed_int8_matmul_codes(codes, packed.values, packed.indices, packed.row_sums, path)
        assert torch.equal(acc, expected), (path, m)
        dense = emulated.dense_int8_matmul_codes(codes, weight_codes.contiguous(), packed.row_sums, path)
        assert torch.equal(dense, expected), (path, m)
        out = emulated.packed_int8_linear(
            x, packed.values, packed.indices, packed.scales, packed.row_sums, torch.empty(0), path
        )
        assert torch.equal(out, packed24_reference(x, packed)), (path, m)


@pytest.mark.parametrize("path", ["avx512", "avx2"])
@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_emulated_bf16_paths_match(emulated: Any, path: str, rows: int, cols: int) -> None:
    packed = pack_24(sparse_24(rows, cols), "bf16")
    for m in ROWS:
        x = torch.randn(m, cols)
        out = emulated.packed_bf16_linear(x, packed.values, packed.indices, torch.empty(0), path)
        torch.testing.assert_close(out, packed24_reference(x, packed), rtol=1e-5, atol=1e-5 * cols**0.5)
