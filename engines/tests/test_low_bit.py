"""4-bit weights: exact codes from GGUF, the 4-bit kernel against the dense one, and perplexity.

The low-bit path must compute the same model: the codes dequantize to
exactly what gguf's own dequantizer gives, the kernel agrees with a dense
matmul up to bf16 rounding, and perplexity on real text stays within 1 %
of the float32 reference.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize, quantize
from margins import record_margin

from sagellm.engines import LLM
from sagellm.engines.model.linear import MAX_INT8_ROWS, MAX_LOW_BIT_ROWS, Linear, int8_rows_available, low_bit_available
from sagellm.engines.model.q4_weights import concat_rows, q4_from_gguf
from sagellm.engines.runtime.perplexity import perplexity

TEXT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "tinyshakespeare_head.txt"
needs_kernel = pytest.mark.skipif(not low_bit_available(), reason="torch lacks the CPU 4-bit kernel")


def fake_tensor(kind: GGMLQuantizationType, weights: np.ndarray) -> SimpleNamespace:
    """What GGUFReader yields for a quantized tensor: raw block bytes per row."""
    return SimpleNamespace(tensor_type=kind, data=quantize(weights, kind), name="w")


@pytest.mark.parametrize("kind", [GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1])
def test_codes_dequantize_exactly_like_gguf(kind: GGMLQuantizationType) -> None:
    weights = np.random.default_rng(0).standard_normal((48, 96)).astype(np.float32)
    tensor = fake_tensor(kind, weights)
    q4 = q4_from_gguf(tensor)
    assert q4 is not None and q4.shape == (48, 96)
    np.testing.assert_array_equal(q4.dequantize(), dequantize(tensor.data, kind).reshape(48, 96))


def test_codes_of_the_default_model_match_its_dequantized_weights(model_path: Path) -> None:
    reader = GGUFReader(str(model_path))
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
    q4 = q4_from_gguf(tensor)
    assert q4 is not None
    expected = dequantize(tensor.data, tensor.tensor_type).reshape(q4.shape)
    np.testing.assert_array_equal(q4.dequantize(), expected)


def test_other_types_keep_no_codes() -> None:
    weights = np.ones((4, 32), dtype=np.float32)
    assert q4_from_gguf(fake_tensor(GGMLQuantizationType.Q8_0, weights)) is None


def low_bit_linear(rows: int, cols: int, seed: int) -> Linear:
    rng = np.random.default_rng(seed)
    q4 = concat_rows(
        [
            q4_from_gguf(
                fake_tensor(GGMLQuantizationType.Q4_1, rng.standard_normal((rows // 2, cols)).astype(np.float32))
            )
            for _ in range(2)
        ]  # type: ignore[misc]
    )
    dense = torch.from_numpy(q4.dequantize()).to(torch.bfloat16)
    linear = Linear(dense, bias=torch.randn(rows, dtype=torch.bfloat16), q4=q4)
    assert linear.pack_low_bit()
    return linear


@needs_kernel
@pytest.mark.parametrize("num_rows", [1, 3, MAX_LOW_BIT_ROWS])
def test_low_bit_kernel_matches_dense_matmul(num_rows: int) -> None:
    linear = low_bit_linear(64, 128, seed=num_rows)
    x = torch.randn(num_rows, 128, dtype=torch.bfloat16)
    reference = x.double() @ linear.weight.double().t() + linear.bias.double()  # type: ignore[union-attr]
    error = float((linear(x).double() - reference).norm() / reference.norm())
    record_margin("4-bit kernel relative L2 error vs float64", error, 1e-2)
    assert error < 1e-2, f"relative error {error:.2e}"


@needs_kernel
def test_many_rows_take_the_dense_matmul() -> None:
    linear = low_bit_linear(64, 128, seed=7)
    x = torch.randn(MAX_LOW_BIT_ROWS + 1, 128, dtype=torch.bfloat16)
    torch.testing.assert_close(linear(x), torch.nn.functional.linear(x, linear.weight, linear.bias), rtol=0, atol=0)


@pytest.mark.skipif(not int8_rows_available(), reason="torch has no _weight_int8pack_mm")
def test_int8_head_matches_dense_for_few_rows_and_steps_aside_for_many() -> None:
    torch.manual_seed(3)
    linear = Linear(torch.randn(256, 64).to(torch.bfloat16))
    assert linear.pack_int8_rows()
    few = torch.randn(MAX_INT8_ROWS, 64, dtype=torch.bfloat16)
    reference = few.double() @ linear.weight.double().t()
    error = float((linear(few).double() - reference).norm() / reference.norm())
    record_margin("int8 head relative L2 error vs float64", error, 1e-2)
    assert error < 1e-2, f"relative error {error:.2e}"
    many = torch.randn(MAX_INT8_ROWS + 1, 64, dtype=torch.bfloat16)
    torch.testing.assert_close(linear(many), torch.nn.functional.linear(many, linear.weight), rtol=0, atol=0)


def test_float32_heads_keep_no_int8_copy() -> None:
    linear = Linear(torch.randn(16, 32))
    assert not linear.pack_int8_rows()
    assert linear.int8_weight is None


def test_float32_weights_stay_dense() -> None:
    q4 = q4_from_gguf(fake_tensor(GGMLQuantizationType.Q4_1, np.ones((8, 32), dtype=np.float32)))
    linear = Linear(torch.ones(8, 32), q4=q4)
    assert not linear.pack_low_bit()
    assert linear.packed is None and linear.q4 is None  # the codes are dropped either way


@pytest.fixture(scope="module")
def text_ids(llm: LLM) -> list[int]:
    return llm.tokenizer.encode(TEXT.read_text())[:512]


@needs_kernel
def test_bf16_low_bit_perplexity_within_one_percent_of_float32(llm: LLM, model_path: Path, text_ids: list[int]) -> None:
    reference = perplexity(llm.engine.runner.model, text_ids, window=256, chunk_size=256)
    fast = LLM(model={"path": str(model_path), "dtype": "bfloat16", "device": "cpu"}, show_progress=False)
    model = fast.engine.runner.model
    assert model.num_low_bit_linears == 4 * model.config.num_layers  # qkv, o, gate_up, down of every layer
    assert model.int8_head  # the Q8_0 head: int8 for as many rows as the 4-bit kernel takes
    served = perplexity(model, text_ids, window=256, chunk_size=MAX_LOW_BIT_ROWS)  # every linear on the 4-bit path
    assert 1 < reference < 200
    record_margin("bf16 + 4-bit |perplexity / float32 - 1|", abs(served / reference - 1), 0.01)
    assert abs(served / reference - 1) < 0.01, f"perplexity {served:.3f} vs float32 {reference:.3f}"


def test_chunked_scoring_equals_whole_window_scoring(llm: LLM, text_ids: list[int]) -> None:
    """The cached-context prefill path computes the same logits as one causal pass (float32)."""
    model = llm.engine.runner.model
    whole = perplexity(model, text_ids[:128], window=128, chunk_size=128)
    chunked = perplexity(model, text_ids[:128], window=128, chunk_size=5)
    record_margin("|chunked / whole perplexity - 1| (float32)", abs(chunked / whole - 1), 1e-4)
    assert abs(chunked / whole - 1) < 1e-4
