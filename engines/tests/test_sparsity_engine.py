"""``--sparsity``: the engine prunes its decoder linears block by block, runs them through the sparsifier's kernel.

Every check runs a tiny random 4-layer model (``tiny_gguf.py``, loaded once
per module, pruned as copies) through a sparsifier that lives only in this
file, so the seam is tested without the sagellm-sparsity package; the last
ones run that package's sparsifiers when it is installed.
Quality and speed are measured by ``benchmarks/bench_sparsity.py``.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from engines_helpers import drive
from tiny_gguf import write_tiny_llama

from sagellm.core import registry
from sagellm.core.config import load_config
from sagellm.core.errors import ConfigError
from sagellm.core.testing import SparsifierConformance
from sagellm.core.types import SamplingParams
from sagellm.engines import LLM
from sagellm.engines.cli.main import EXIT_BAD_INPUT, main
from sagellm.engines.data.datasets import load_gsm8k
from sagellm.engines.engine.builder import assemble_engine
from sagellm.engines.engine.sparsify import (
    SCORED_GSM8K_ITEMS,
    block_inputs,
    decoder_blocks,
    dense_calibration,
    sparsify_model,
    sparsity_calibration_ids,
)
from sagellm.engines.engine.tensor_parallel import check_tensor_parallel
from sagellm.engines.model.linear import Linear
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.model.q4_weights import Q4Weight
from sagellm.engines.runtime.perplexity import window_logits

NAME = "test-magnitude"  # the in-file sparsifier's registry name
GREEDY = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
PROMPTS = ["The capital of France is", "One, two, three, four,"]
FP32 = {"dtype": "float32", "device": "cpu"}


# ---------------------------------------------------------------------------- a sparsifier of this file only
@dataclass(frozen=True)
class Pruned:
    """The in-file sparsifier's own weight form: the dense weight with zeros where pruned."""

    weight: torch.Tensor


class InputNorms:
    """Per-input-channel sums of squares of what a linear saw (Wanda's statistic)."""

    def __init__(self) -> None:
        self._sum_sq: torch.Tensor | None = None

    def observe(self, x: torch.Tensor) -> None:
        sum_sq = x.detach().float().reshape(-1, x.shape[-1]).pow(2).sum(0)
        self._sum_sq = sum_sq if self._sum_sq is None else self._sum_sq + sum_sq

    @property
    def result(self) -> torch.Tensor | None:
        return self._sum_sq


class MagnitudeNM:
    """|W| (x input norm when ``calibrated``, as Wanda) kept per N:M group, or the largest share per layer.

    It passes core's Sparsifier conformance suite below and records every
    ``sparsify`` call's calibration, so a test can see what each block saw.
    """

    def __init__(self, pattern: str = "2:4", sparsity: float | None = None, calibrated: bool = False) -> None:
        text = str(pattern)
        n, sep, m = text.partition(":")
        if text != "unstructured" and not (sep and n.isdigit() and m.isdigit() and 0 < int(n) < int(m)):
            raise ConfigError(f"{NAME}: pattern must be 'unstructured' or 'N:M', got {pattern!r}")
        self.n_m = (int(n), int(m)) if sep else None
        self._pattern = text
        self._sparsity = 1 - self.n_m[0] / self.n_m[1] if self.n_m else (0.5 if sparsity is None else sparsity)
        self.calibrated = calibrated
        self.calibrations: list[Any] = []

    @classmethod
    def from_config(cls, section: Any, **_deps: Any) -> MagnitudeNM:
        unknown = set(section.options) - {"pattern", "sparsity", "calibrated"}
        if unknown:
            raise ConfigError(f"{NAME}: unknown option(s) {sorted(unknown)}")
        return cls(**section.options)

    @property
    def pattern(self) -> str:
        return self._pattern

    @property
    def sparsity(self) -> float:
        return self._sparsity

    def calibration_observer(self) -> InputNorms | None:
        return InputNorms() if self.calibrated else None

    def layer_sparsities(self, blocks: Any) -> list[float]:
        return [self.sparsity] * len(blocks)

    def sparsify(self, weight: torch.Tensor, calibration: Any = None, sparsity: float | None = None) -> Pruned:
        self.calibrations.append(calibration)
        scores = weight.detach().float().abs()
        if calibration is not None:
            scores = scores * calibration.sqrt()
        if self.n_m is not None:
            n, m = self.n_m
            if weight.shape[1] % m:
                raise ConfigError(f"{self.pattern} needs in_features divisible by {m}")
            groups = scores.reshape(-1, m)
            keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, groups.topk(n, dim=1).indices, True)
            mask = keep.reshape(weight.shape)
        else:
            share = self.sparsity if sparsity is None else sparsity
            pruned = int(round(share * scores.numel()))
            mask = torch.ones(scores.numel(), dtype=torch.bool)
            mask[scores.flatten().argsort()[:pruned]] = False
            mask = mask.reshape(weight.shape)
        return Pruned(torch.where(mask, weight, torch.zeros_like(weight)))

    def linear(self, x: torch.Tensor, sweight: Pruned, bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(x, sweight.weight.to(x.dtype), bias)

    def densify(self, sweight: Pruned) -> torch.Tensor:
        return sweight.weight


class TestMagnitudeNMConformance(SparsifierConformance):
    def make_sparsifier(self, pattern: str) -> MagnitudeNM:
        return MagnitudeNM(pattern, calibrated=True)

    def make_weight(self, rows: int, cols: int, seed: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))

    def to_rows(self, tensor: torch.Tensor) -> list[list[float]]:
        return tensor.float().tolist()


@pytest.fixture
def registered() -> Iterator[str]:
    registry.register("sparsifier", NAME, MagnitudeNM)
    yield NAME
    registry.unregister("sparsifier", NAME)


# ---------------------------------------------------------------------------- tiny model: the wiring
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf", num_layers=4, seed=3)


def tiny_llm(path: Path, **sections: Any) -> LLM:
    return LLM(model={**FP32, "path": str(path)}, kv_pool={"num_blocks": 32}, show_progress=False, **sections)


@pytest.fixture(scope="module")
def dense(tiny: Path) -> LLM:
    """The tiny model, loaded once (its GGUF tokenizer takes seconds to read); tests prune copies of it."""
    return tiny_llm(tiny)


@pytest.fixture(scope="module")
def dense_ids(dense: LLM) -> list[list[int]]:
    return greedy_ids(dense, dense.engine.runner.model)


def fresh_model(dense: LLM) -> LlamaForCausalLM:
    return copy.deepcopy(dense.engine.runner.model)


def greedy_ids(llm: LLM, model: LlamaForCausalLM) -> list[list[int]]:
    """Greedy tokens of a fresh engine (no prefix cache carried over) around ``model``."""
    engine = assemble_engine(llm.config, model, llm.tokenizer)
    return drive(engine, [llm.tokenizer.encode(prompt) for prompt in PROMPTS], sampling=GREEDY).token_ids


def pruned_linears(model: LlamaForCausalLM) -> list[Linear]:
    return [linear for block in decoder_blocks(model) for linear in block]


def assert_n_m(weight: torch.Tensor, n: int, m: int) -> None:
    nonzero_per_group = (weight.reshape(-1, m) != 0).sum(dim=1)
    assert int(nonzero_per_group.max()) <= n and weight.shape[1] % m == 0


def test_the_engine_prunes_every_decoder_linear_and_leaves_the_head_alone(
    tiny: Path, dense: LLM, dense_ids: list[list[int]], registered: str
) -> None:
    llm = tiny_llm(tiny, sparsity={"implementation": registered, "options": {"pattern": "2:4"}})
    model, dense_model = llm.engine.runner.model, dense.engine.runner.model
    blocks = decoder_blocks(model)
    assert len(blocks) == 4 and all(len(block) == 4 for block in blocks)  # qkv, o_proj, gate_up, down
    for linear in pruned_linears(model):
        assert isinstance(linear.sparsifier, MagnitudeNM) and linear.weight.numel() == 0
        pruned = linear.sparsifier.densify(linear.sparse)
        assert_n_m(pruned, 2, 4)
        assert (pruned == 0).float().mean() == 0.5
    assert model.lm_head.sparsifier is None and torch.equal(model.lm_head.weight, dense_model.lm_head.weight)
    assert torch.equal(model.embed, dense_model.embed)
    assert greedy_ids(llm, model) != dense_ids


def test_unstructured_prunes_each_layer_to_the_share_asked(dense: LLM, dense_ids: list[list[int]]) -> None:
    model = fresh_model(dense)
    assert sparsify_model(model, MagnitudeNM("unstructured", sparsity=0.7), []) == 16
    for linear in pruned_linears(model):
        share = float((linear.sparsifier.densify(linear.sparse) == 0).float().mean())
        assert abs(share - 0.7) < 1e-3
    assert greedy_ids(dense, model) != dense_ids


def full_pass_inputs(model: LlamaForCausalLM, linears: list[Linear], ids: list[int]) -> list[torch.Tensor]:
    """What ``linears`` see when the whole model runs over ``ids`` (256-token windows), as sums of squares."""
    seen = {linear: InputNorms() for linear in linears}
    hooks = [linear.register_forward_pre_hook(lambda _m, x, o=o: o.observe(x[0])) for linear, o in seen.items()]
    try:
        for begin in range(0, len(ids), 256):
            window_logits(model, ids[begin : begin + 256], 256)
    finally:
        for hook in hooks:
            hook.remove()
    return [observer.result for observer in seen.values()]


def test_kept_block_inputs_replay_the_full_forward_pass(dense: LLM) -> None:
    """Block by block on kept hidden states computes what whole passes of the model feed each linear."""
    model = fresh_model(dense)
    ids = sparsity_calibration_ids(dense.tokenizer, 300)  # two windows, the second short
    linears = pruned_linears(model)
    seen = dense_calibration(model, MagnitudeNM("2:4", calibrated=True), block_inputs(model, ids))
    assert list(seen) == linears
    for linear, expected in zip(linears, full_pass_inputs(model, linears, ids)):
        torch.testing.assert_close(seen[linear], expected, rtol=1e-5, atol=1e-5)


def test_calibration_is_sequential_each_block_sees_the_pruned_blocks_before_it(dense: LLM) -> None:
    ids = sparsity_calibration_ids(dense.tokenizer, 300)
    calibrations = {}
    for sequential in (True, False):
        model = fresh_model(dense)
        sparsifier = MagnitudeNM("2:4", calibrated=True)
        sparsify_model(model, sparsifier, ids, sequential=sequential)
        calibrations[sequential] = sparsifier.calibrations
        if sequential:  # each qkv's input depends on earlier blocks only: the pruned model's full pass matches
            qkvs = [block[0] for block in decoder_blocks(model)]
            for index, expected in enumerate(full_pass_inputs(model, qkvs, ids)):
                torch.testing.assert_close(calibrations[True][4 * index], expected, rtol=1e-5, atol=1e-5)
    model = fresh_model(dense)
    dense_seen = dense_calibration(model, MagnitudeNM("2:4", calibrated=True), block_inputs(model, ids))
    assert len(calibrations[False]) == len(calibrations[True]) == 16
    for index, expected in enumerate(dense_seen.values()):
        assert torch.equal(calibrations[False][index], expected)  # not sequential: the dense model's inputs
        if index < 4:  # block 0 sees the dense model either way
            torch.testing.assert_close(calibrations[True][index], expected)
        else:
            assert not torch.allclose(calibrations[True][index], expected, rtol=1e-3), f"linear {index}"


def test_each_block_runs_twice_per_window_and_the_head_never(dense: LLM) -> None:
    """N:M, sequential: block b runs once observing, once pruned (its outputs feed b + 1); nothing else runs."""
    model = fresh_model(dense)
    ids = sparsity_calibration_ids(dense.tokenizer, 600)  # three windows of 256 (the last one short)
    runs: Counter[str] = Counter()
    modules = {f"layer{i}": layer for i, layer in enumerate(model.layers)} | {"head": model.lm_head}
    hooks = [m.register_forward_hook(lambda *_, name=name: runs.update([name])) for name, m in modules.items()]
    try:
        sparsify_model(model, MagnitudeNM("2:4", calibrated=True), ids)
    finally:
        for hook in hooks:
            hook.remove()
    windows = 3
    assert runs == Counter({"layer0": 2 * windows, "layer1": 2 * windows, "layer2": 2 * windows, "layer3": windows})


def test_calibration_text_skips_the_scored_gsm8k_items(dense: LLM) -> None:
    text = dense.tokenizer.decode(sparsity_calibration_ids(dense.tokenizer, 50_000))
    items = load_gsm8k()
    assert all(item.question not in text for item in items[:SCORED_GSM8K_ITEMS])
    assert items[-1].question in text and "####" in text


def test_a_pruned_linear_drops_its_4bit_and_int8_copies() -> None:
    """Decode's few-row paths (4-bit codes, int8 rows) hold the unpruned weight: after pruning, none may serve."""
    rows, cols = 64, 128
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (rows, cols), generator=generator).numpy().astype("uint8")
    q4 = Q4Weight(codes, np.full((rows, cols // 32), 0.01, "float32"), np.full((rows, cols // 32), -0.08, "float32"))
    weight = torch.from_numpy(q4.dequantize()).to(torch.bfloat16)
    linear = Linear(weight.clone(), q4=q4)
    if not (linear.pack_low_bit() and linear.pack_int8_rows()):
        pytest.skip("this torch lacks the CPU 4-bit or int8-rows kernel: nothing to drop")
    sparsifier = MagnitudeNM("2:4")
    sweight = sparsifier.sparsify(weight)
    linear.use_sparse(sweight, sparsifier)
    assert linear.packed is None and linear.scales_and_zeros is None and linear.q4 is None
    assert linear.int8_weight is None and linear.int8_scales is None and linear.weight.numel() == 0
    x = torch.randn(1, cols, generator=generator).to(torch.bfloat16)  # one row: what the 4-bit kernel served
    assert torch.equal(linear(x), F.linear(x, sweight.weight))
    assert not torch.allclose(linear(x), F.linear(x, weight), atol=1e-2)


# ---------------------------------------------------------------------------- refusals and the CLI
def test_a_bad_pattern_exits_2_before_loading(registered: str, capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--sparsity", registered, "--sparsity-option", "pattern=banana", "--max-tokens", "1", "hi"]
    assert main(["generate", *flags]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("sagellm: error:") and "pattern" in err and "Traceback" not in err


def test_an_unknown_option_exits_2(registered: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--sparsity", registered, "--sparsity-option", "colour=red", "hi"]) == EXIT_BAD_INPUT
    assert "colour" in capsys.readouterr().err


def test_a_name_not_installed_is_refused_with_the_installed_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--sparsity", "no-such-pruner", "hi"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no sparsifier implementation named 'no-such-pruner'" in err and "available:" in err


def test_tensor_parallelism_refuses_sparsity() -> None:
    config = load_config(collective_ops={"world_size": 2}, sparsity={"implementation": NAME})
    with pytest.raises(ConfigError, match="tensor_parallel_size=2 does not run with sparsity"):
        check_tensor_parallel(config)


def test_sparsity_with_quantization_is_refused(registered: str) -> None:
    with pytest.raises(ConfigError, match="cannot be combined"):
        LLM(sparsity={"implementation": registered}, quantization={"implementation": "w8a8"})


# ---------------------------------------------------------------------------- the sagellm-sparsity package
@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("magnitude", {"pattern": "2:4"}),
        ("wanda", {"pattern": "2:4"}),
        ("sparsegpt", {"pattern": "4:8"}),
        ("wanda", {"owl_lambda": 0.1}),
        ("wanda", {"pattern": "2:4", "update": True}),
    ],
)
def test_the_sparsity_package_runs_in_the_engine(
    dense: LLM, dense_ids: list[list[int]], method: str, options: dict[str, Any]
) -> None:
    pytest.importorskip("sagellm.sparsity")
    model = fresh_model(dense)
    sparsifier = registry.create_sparsifier(load_config(sparsity={"implementation": method, "options": options}))
    sparsify_model(model, sparsifier, sparsity_calibration_ids(dense.tokenizer, 512))
    linears = pruned_linears(model)
    zeros = [float((linear.sparsifier.densify(linear.sparse) == 0).float().mean()) for linear in linears]
    pattern = options.get("pattern", "unstructured")
    if pattern == "unstructured":
        assert abs(sum(zeros) / len(zeros) - 0.5) < 0.02
    else:
        n, m = (int(part) for part in pattern.split(":"))
        for linear in linears:
            assert_n_m(linear.sparsifier.densify(linear.sparse), n, m)
    assert greedy_ids(dense, model) != dense_ids


def test_the_sparsity_package_refuses_a_bad_pattern_on_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sagellm.sparsity")
    assert main(["generate", "--sparsity", "wanda", "--sparsity-option", "pattern=3:3", "hi"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("sagellm: error:") and "pattern" in err
