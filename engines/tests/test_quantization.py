"""``--quantization w8a8``: the engine calibrates, swaps its linears for int8 kernels, and still computes the model.

Perplexity on tinyshakespeare (which calibration never sees) stays within 3 %
of the bf16 engine's — measured +1.6-2.5 % with the LM head quantized too,
+0.9-1.1 % without it (direction_3_acceleration/quantization/README.md);
the bound leaves room for other CPUs' rounding. Generation, the registry seam
and the error paths are checked too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from margins import record_margin

from sagellm.core import registry
from sagellm.core.errors import ConfigError
from sagellm.core.testing import LinearQuantizerConformance
from sagellm.core.types import SamplingParams
from sagellm.engines import LLM
from sagellm.engines.cli.main import EXIT_BAD_INPUT, main
from sagellm.engines.engine.quantize import calibration_token_ids
from sagellm.engines.model.linear import MAX_LOW_BIT_ROWS, Linear
from sagellm.engines.runtime.perplexity import perplexity

pytest.importorskip("sagellm.quantization")
TEXT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "tinyshakespeare_head.txt"
BF16 = {"dtype": "bfloat16", "device": "cpu"}


@pytest.fixture(scope="module")
def w8a8(model_path: Path) -> LLM:
    return LLM(
        model={**BF16, "path": str(model_path)},
        quantization={"implementation": "w8a8"},
        kv_pool={"num_blocks": 64},
        show_progress=False,
    )


def linears(llm: LLM) -> list[Linear]:
    return [m for m in llm.engine.runner.model.layers.modules() if isinstance(m, Linear)]


def test_every_decoder_linear_and_the_head_run_int8_and_drop_their_dense_copies(w8a8: LLM) -> None:
    layers = linears(w8a8)
    assert len(layers) == 4 * w8a8.engine.model_config.num_layers
    model = w8a8.engine.runner.model
    # The tied embedding still serves (its Q8_0 blocks, or its dense table): only the head's copy is replaced.
    assert model.embed_tokens(torch.tensor([1, 2])).shape == (2, model.config.hidden_size)
    for linear in [*layers, model.lm_head]:
        assert linear.quantized is not None and linear.quantized.codes_t.dtype == torch.int8
        assert linear.weight.numel() == 0
        assert linear.quantized.smooth_inverse is not None  # calibrated: SmoothQuant factors


def test_the_head_stays_dense_when_config_says_so(model_path: Path) -> None:
    llm = LLM(
        model={**BF16, "path": str(model_path)},
        quantization={"implementation": "w8a8", "lm_head": False},
        kv_pool={"num_blocks": 16},
        show_progress=False,
    )
    head = llm.engine.runner.model.lm_head
    table = llm.engine.runner.model.embed
    assert head.quantized is None  # served from the tied table's own blocks, or its dense storage
    assert head.ggml is not None or head.weight.data_ptr() == table.data_ptr()
    assert all(linear.quantized is not None for linear in linears(llm))


def test_perplexity_stays_within_three_percent_of_bf16(w8a8: LLM, model_path: Path) -> None:
    ids = w8a8.tokenizer.encode(TEXT.read_text())[:1024]
    dense = LLM(model={**BF16, "path": str(model_path)}, kv_pool={"num_blocks": 16}, show_progress=False)
    chunk = 64  # > MAX_LOW_BIT_ROWS: every linear on the int8 path, not the 4-bit one
    assert chunk > MAX_LOW_BIT_ROWS
    reference = perplexity(dense.engine.runner.model, ids, window=256, chunk_size=chunk)
    quantized = perplexity(w8a8.engine.runner.model, ids, window=256, chunk_size=chunk)
    assert 1 < reference < 200
    record_margin("w8a8 |perplexity / bf16 - 1|", abs(quantized / reference - 1), 0.03)
    assert abs(quantized / reference - 1) < 0.03, f"w8a8 {quantized:.3f} vs bf16 {reference:.3f}"


def test_batched_greedy_generation_is_fluent(w8a8: LLM) -> None:
    prompts = ["The capital of France is", "One, two, three, four,"] * 8  # 16 rows: the int8 path
    results = w8a8.generate(prompts, SamplingParams(max_tokens=8, temperature=0.0))
    assert "Paris" in results[0].text
    assert "five" in results[1].text.lower() or "5" in results[1].text
    assert all(r.text == results[i % 2].text for i, r in enumerate(results))  # batch rows do not leak


def test_calibration_text_is_the_shipped_bench_data(w8a8: LLM) -> None:
    ids = calibration_token_ids(w8a8.tokenizer, 300)
    assert len(ids) == 300 and "####" in w8a8.tokenizer.decode(ids)  # GSM8K solutions end "#### N"


class PerRowInt8:
    """A third-party quantizer that lives only in this file: per-row int8 weights, no calibration.

    It passes core's LinearQuantizer conformance suite below, and the engine
    runs it unchanged: the seam is the protocol, not the w8a8 package.
    """

    bits = 8

    def calibration_observer(self) -> None:
        return None

    def quantize(self, weight: torch.Tensor, calibration: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        scale = weight.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
        return torch.round(weight.float() / scale).to(torch.int8), scale

    def dequantize(self, qweight: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        codes, scale = qweight
        return codes.float() * scale

    def linear(self, x: torch.Tensor, qweight: Any, bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(x, self.dequantize(qweight).to(x.dtype), bias)


class TestPerRowInt8Conformance(LinearQuantizerConformance):
    def make_quantizer(self) -> PerRowInt8:
        return PerRowInt8()

    def make_weight(self, rows: int, cols: int, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(rows, cols, generator=generator) * torch.logspace(-3, 1, rows)[:, None]

    def to_rows(self, tensor: torch.Tensor) -> list[list[float]]:
        return tensor.float().tolist()


def test_a_third_party_linear_quantizer_runs_in_the_engine_unchanged(model_path: Path) -> None:
    registry.register("quantizer", "per-row-int8-test", PerRowInt8)
    try:
        llm = LLM(
            model={**BF16, "path": str(model_path)},
            quantization={"implementation": "per-row-int8-test"},
            kv_pool={"num_blocks": 16},
            show_progress=False,
        )
    finally:
        registry.unregister("quantizer", "per-row-int8-test")
    assert all(isinstance(linear.quantized, tuple) for linear in linears(llm))
    (result,) = llm.generate(["The capital of France is"], SamplingParams(max_tokens=8, temperature=0.0))
    assert "Paris" in result.text


def test_a_quantizer_without_a_kernel_is_refused(model_path: Path) -> None:
    class WeightOnly:
        bits = 8

        def quantize(self, weight: Any) -> Any:
            return weight

        def dequantize(self, qweight: Any) -> Any:
            return qweight

    registry.register("quantizer", "weight-only-test", WeightOnly)
    try:
        with pytest.raises(ConfigError, match="no linear"):
            LLM(model={**BF16, "path": str(model_path)}, quantization={"implementation": "weight-only-test"})
    finally:
        registry.unregister("quantizer", "weight-only-test")


@pytest.mark.parametrize(
    "flags",
    [["--quantization", "no-such-quantizer"], ["--quantization", "w8a8", "--quantization-option", "alpha=2"]],
)
def test_bad_quantization_flags_exit_2(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", *flags, "--max-tokens", "2", "hi"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("sagellm: error:") and "Traceback" not in err
