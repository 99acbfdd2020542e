"""GGUF weights kept packed: the kernel against gguf's own dequantizer, Linear's paths, the loader.

The packed kernel must compute what a dense matmul over ``gguf.quants.dequantize``
computes, for every kept type, for float32 and bf16 inputs, on its AVX2 path
and its portable C++ path. gguf can only quantize the 32-weight types, so
K-quant blocks are random bytes with small fp16 scales (every bit pattern of
the codes and 6-bit scales is a valid block).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import quantize
from tiny_gguf import write_tiny_llama

from sagellm.engines.model.ggml_matmul import GGMLMatmul, packed_kernels
from sagellm.engines.model.ggml_weights import PACKED_TYPES, GGMLWeight
from sagellm.engines.model.lazy_weights import DequantizingWeights
from sagellm.engines.model.linear import MAX_PACKED_ROWS, Linear

kernels = packed_kernels()
needs_kernel = pytest.mark.skipif(kernels is None, reason="the packed GGML kernel could not be built here")
TYPES = sorted(PACKED_TYPES)
_SCALE_OFFSETS = {"Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}  # where a block's fp16 scales sit


def random_blocks(type_name: str, rows: int, cols: int, seed: int) -> np.ndarray:
    """uint8 [rows, row_bytes] of valid ``type_name`` blocks."""
    rng = np.random.default_rng(seed)
    kind = GGMLQuantizationType[type_name]
    if type_name not in _SCALE_OFFSETS:
        return quantize(rng.standard_normal((rows, cols)).astype(np.float32), kind)
    per_block, block_bytes = GGML_QUANT_SIZES[kind]
    blocks = rng.integers(0, 256, size=(rows, cols // per_block, block_bytes), dtype=np.uint8)
    for offset in _SCALE_OFFSETS[type_name]:
        scale = (rng.random((rows, cols // per_block)) * 0.01).astype(np.float16)
        blocks[..., offset : offset + 2] = scale[..., None].view(np.uint8)
    return blocks.reshape(rows, -1)


def weight(type_name: str, rows: int = 40, cols: int = 512, seed: int = 0) -> GGMLWeight:
    return GGMLWeight(random_blocks(type_name, rows, cols, seed), type_name, (rows, cols), torch.float32)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).abs().max() / want.abs().max())


@needs_kernel
@pytest.mark.parametrize("type_name", TYPES)
def test_dequantize_equals_gguf(type_name: str) -> None:
    w = weight(type_name)
    reference = torch.from_numpy(w.dequantize())
    dense = GGMLMatmul([w], kernels).dense(torch.float32)
    torch.testing.assert_close(dense, reference, rtol=1e-6, atol=0)


@needs_kernel
@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("portable", [False, True])
def test_packed_matmul_matches_dense_float64(type_name: str, portable: bool) -> None:
    parts = [weight(type_name, seed=1), weight("Q8_0", rows=8, seed=2)]  # a fused weight: two parts, two types
    reference = torch.cat([torch.from_numpy(p.dequantize()) for p in parts]).double()
    blocks, types = [torch.from_numpy(p.blocks) for p in parts], [p.type_id for p in parts]
    for rows in (1, 3, 9):  # one row, a partial tile of four, and more than two tiles
        x = torch.randn(rows, 512)
        out = torch.full((rows, reference.shape[0] + 5), float("nan"))
        kernels.matmul_into(x, blocks, types, out, 5, portable)
        assert relative_error(out[:, 5:], x.double() @ reference.t()) < 1e-5
        assert torch.isnan(out[:, :5]).all()  # columns before ``col`` are not written


def quantized_per_32(x: torch.Tensor) -> torch.Tensor:
    """x as the int8 path sees it: per 32, codes round(x * 127 / max|x|) times max|x| / 127 (float32 steps)."""
    groups = x.view(x.shape[0], -1, 32)
    amax = groups.abs().amax(dim=-1, keepdim=True)
    inverse = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    return (torch.round(groups * inverse) * (amax / 127.0)).view_as(x)


@needs_kernel
@pytest.mark.skipif(kernels is None or not kernels.compiled_avx2(), reason="the int8 path is AVX2")
@pytest.mark.parametrize("type_name", TYPES)
def test_int8_activations_are_x_quantized_per_32(type_name: str) -> None:
    """Exactly llama.cpp-style activations: the dense product of the per-32 int8 x, to float rounding."""
    parts = [weight(type_name, seed=1), weight("Q8_0", rows=8, seed=2)]
    reference = torch.cat([torch.from_numpy(p.dequantize()) for p in parts]).double()
    blocks, types = [torch.from_numpy(p.blocks) for p in parts], [p.type_id for p in parts]
    for rows in (1, 3, 9):
        x = torch.randn(rows, 512)
        out = torch.empty(rows, reference.shape[0])
        kernels.matmul_into(x, blocks, types, out, 0, False, True)
        assert relative_error(out, quantized_per_32(x).double() @ reference.t()) < 1e-5
        exact_error = relative_error(out, x.double() @ reference.t())
        assert 1e-4 < exact_error < 3e-2  # the rounding of x shows, at the size llama.cpp accepts
        portable = torch.empty_like(out)
        kernels.matmul_into(x, blocks, types, portable, 0, True, True)  # the portable loops stay float
        assert relative_error(portable, x.double() @ reference.t()) < 1e-5


@needs_kernel
def test_ggml_activations_reach_every_packed_linear(tmp_path: Path) -> None:
    from sagellm.engines import LLM

    path = write_tiny_llama(tmp_path / "q8.gguf", num_layers=1, seed=3, quant="Q8_0")
    for kind in ("float32", "int8"):
        model = {"path": str(path), "dtype": "float32", "device": "cpu", "ggml_activations": kind}
        llm = LLM(model=model, kv_pool={"memory_gb": 0.01}, show_progress=False)
        packed = [m.ggml for m in llm.engine.runner.model.modules() if isinstance(m, Linear) and m.ggml is not None]
        assert len(packed) == 5 and all(g.int8_activations == (kind == "int8") for g in packed)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_packed_and_tiled_paths_match_dense(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [weight("Q4_K", 48, 256, seed=2), weight("Q6_K", 16, 256, seed=3), weight("Q8_0", 8, 256, seed=4)]
    parts = [GGMLWeight(p.blocks, p.type_name, p.shape, dtype) for p in parts]
    bias = torch.randn(72).to(dtype)
    linear = Linear(torch.empty(0, dtype=dtype), bias, ggml=parts)
    assert linear.pack_low_bit() and linear.ggml is not None and linear.weight.numel() == 0
    dense = torch.cat([torch.from_numpy(p.dequantize()) for p in parts]).double()
    monkeypatch.setattr("sagellm.engines.model.ggml_matmul.TILE_BYTES", 40 * 256 * 4)  # two tiles for the Q4_K part
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    for rows in (1, MAX_PACKED_ROWS[dtype], MAX_PACKED_ROWS[dtype] + 1, 40):
        x = torch.randn(rows, 256).to(dtype)
        out = linear(x)
        assert out.dtype == dtype and out.shape == (rows, 72)
        want = x.double() @ dense.t() + bias.double()
        assert relative_error(out, want) < tolerance, rows


@needs_kernel
def test_embedding_rows_and_dense_weight() -> None:
    w = weight("Q5_0", 64, 128, seed=5)
    packed = GGMLMatmul([w], kernels)
    ids = torch.tensor([[3, 63], [0, 3]])
    table = torch.from_numpy(w.dequantize())
    torch.testing.assert_close(packed.rows(ids, torch.float32), table[ids], rtol=1e-6, atol=0)
    linear = Linear(torch.empty(0), ggml=[w])
    torch.testing.assert_close(linear.dense_weight(), table, rtol=1e-6, atol=0)


def test_map_rows_moves_whole_rows() -> None:
    w = weight("Q8_0", 8, 64)
    flipped = w.map_rows(lambda rows: rows[::-1])
    np.testing.assert_array_equal(flipped.dequantize(), w.dequantize()[::-1])
    assert flipped.blocks.flags.c_contiguous


def test_dequantizing_weights_reads_dense_on_demand() -> None:
    weights = DequantizingWeights()
    w = weight("Q8_0", 8, 64)
    weights.keep_packed("a", w)
    weights["b"] = torch.ones(2)
    assert "a" in weights and len(weights) == 2 and weights.packed
    plain = dict(weights)  # copies go through __getitem__: no placeholder leaks out
    torch.testing.assert_close(plain["a"], torch.from_numpy(w.dequantize()), rtol=1e-6, atol=0)
    assert weights.pop("missing", None) is None
    with pytest.raises(KeyError):
        weights.pop("missing")


def write_packed_gguf(path: Path, type_name: str) -> Path:
    """A one-tensor GGUF holding ``type_name`` blocks, as the gguf package writes them."""
    writer = GGUFWriter(str(path), "llama")
    blocks = random_blocks(type_name, 16, 256, seed=7)
    writer.add_tensor("blk.0.ffn_up.weight", blocks, raw_dtype=GGMLQuantizationType[type_name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("type_name", ["Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"])
def test_ggml_from_gguf_reads_a_written_file(tmp_path: Path, type_name: str) -> None:
    from gguf import GGUFReader

    from sagellm.engines.model.ggml_weights import ggml_from_gguf

    tensor = GGUFReader(str(write_packed_gguf(tmp_path / "w.gguf", type_name))).tensors[0]
    w = ggml_from_gguf(tensor, torch.bfloat16)
    assert w is not None and w.shape == (16, 256) and w.type_name == type_name and w.dtype == torch.bfloat16
    assert w.blocks.base is None  # a copy: the file's map can close


@needs_kernel
@pytest.mark.parametrize("tied", [False, True])
def test_embedding_and_head_stay_packed_and_serve_like_dense(tmp_path: Path, tied: bool) -> None:
    """The Q8_0 table is looked up row by row and the head runs from blocks: no dense copy, same greedy text."""
    from sagellm.core.types import SamplingParams
    from sagellm.engines import LLM

    path = write_tiny_llama(tmp_path / "q8.gguf", num_layers=2, seed=3, quant="Q8_0", tied=tied)

    def load(packed: bool) -> LLM:
        # float32 activations: the packed result equals the dense one to float rounding (int8 would not)
        model = {"path": str(path), "dtype": "float32", "device": "cpu", "low_bit_matmul": packed}
        return LLM(model={**model, "ggml_activations": "float32"}, kv_pool={"memory_gb": 0.01}, show_progress=False)

    packed, dense = load(True), load(False)
    model = packed.engine.runner.model
    assert model.embed.numel() == 0 and model.embed_table is not None
    assert model.lm_head.weight.numel() == 0 and model.lm_head.ggml is not None
    assert dense.engine.runner.model.embed.numel() > 0
    params = SamplingParams(max_tokens=12, temperature=0.0)
    prompts = ["The capital of France is", [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]]
    got = [r.token_ids for r in packed.generate(prompts, params)]
    want = [r.token_ids for r in dense.generate(prompts, params)]
    assert got == want


def test_without_the_kernel_the_weight_is_made_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    """No compiler (or SAGELLM_CPU_KERNELS=0): the blocks become the dense weight at pack time, via gguf."""
    monkeypatch.setattr("sagellm.engines.model.linear.packed_kernels", lambda: None)
    monkeypatch.setattr("sagellm.engines.model.ggml_matmul.packed_kernels", lambda: None)
    w = weight("Q4_K", 16, 256, seed=9)
    linear = Linear(torch.empty(0), ggml=[w])
    assert not linear.pack_low_bit() and linear.ggml is None
    torch.testing.assert_close(linear.weight, torch.from_numpy(w.dequantize()), rtol=0, atol=0)
    x = torch.randn(3, 256)
    torch.testing.assert_close(linear(x), x @ linear.weight.t())


@needs_kernel
def test_leading_dimensions_are_kept() -> None:
    w = weight("Q5_0", 24, 64, seed=10)
    linear = Linear(torch.empty(0), ggml=[w])
    x = torch.randn(2, 3, 64)
    want = x.double() @ torch.from_numpy(w.dequantize()).double().t()
    assert linear(x).shape == (2, 3, 24) and relative_error(linear(x), want) < 1e-5
