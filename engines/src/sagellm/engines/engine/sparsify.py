"""Prune a loaded model's decoder linears with the configured sparsifier (``--sparsity``).

The engine knows sparsifiers only through the core registry and core's
``Sparsifier`` protocol. Only the decoder's linears are pruned (qkv, o_proj,
gate_up, down of every block): the embedding and the LM head stay dense, as
in Wanda and SparseGPT. Pruning runs block by block, as the reference
implementations do, on the calibration text's hidden states kept between
blocks (one 256-token window each, captured where they enter block 0)::

    unstructured only: one dense pass observing every block, then
    layer_sparsities(every block's (weight, calibration))     (OWL spreads the share; N:M fixes it)
    block b = 0 .. L-1:
        run block b on the kept states, observing its linears  -> its calibration
        sparsify block b's linears
        run the pruned block b on the kept states              -> the states block b + 1 receives

so block b is pruned for the inputs it will really get -- those of the
pruned blocks before it -- and the earlier blocks' error is not compounded
blindly. That costs two passes of the decoder (three for unstructured),
the LM head never runs; ``sequential=False`` prunes every block with the
dense pass's calibration. A sparsifier without an observer (magnitude)
runs no pass at all.

Calibration text: GSM8K solutions (from the end of the shipped 200, never
the first 60 the benchmarks score) interleaved with MT-Bench questions;
never tinyshakespeare. Each 256-token window is its own sequence.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.core.protocols import CalibrationObserver, Sparsifier
from sagellm.engines.data.datasets import load_gsm8k, load_mt_bench
from sagellm.engines.model.linear import Linear
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.runtime.perplexity import window_logits
from sagellm.engines.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

UNSTRUCTURED = "unstructured"
# Wanda 2:4 on SmolLM2-135M, tinyshakespeare perplexity by calibration tokens: 256 -> 242, 1,024 -> 200, 4,096 -> 191,
# 8,192 -> 202 (fp32, 2026-12-07); 4,096 prune in 23 s on 2 quiet Zen 3 cores.
CALIBRATION_TOKENS = 4096
CALIBRATION_CHUNK = 256
SCORED_GSM8K_ITEMS = 60  # the benchmarks score perplexity on the first 60 GSM8K items: calibration never reads them


def build_sparsifier(config: SageLLMConfig) -> Sparsifier | None:
    """The configured sparsifier, built before any weight loads (so a bad option fails at once); None when off.

    Quantization on top is refused for now: the packed 2:4 int8 kernel is
    itself W8A8, and a quantizer would replace the pruned weights anyway.
    """
    name = config.sparsity.implementation
    if name == registry.NO_IMPLEMENTATION:
        return None
    if config.quantization.implementation != registry.NO_IMPLEMENTATION:
        raise ConfigError(
            f"sparsity '{name}' and quantization '{config.quantization.implementation}' cannot be combined yet "
            "(a sparsifier runs its own kernels, int8 among them); choose one of them"
        )
    return registry.create_sparsifier(config)


def sparsity_calibration_ids(tokenizer: Tokenizer, count: int = CALIBRATION_TOKENS) -> list[int]:
    """``count`` tokens of GSM8K solutions (last item first) interleaved with MT-Bench questions."""
    solutions = [f"{item.question}\n{item.answer}" for item in reversed(load_gsm8k()[SCORED_GSM8K_ITEMS:])]
    questions = [turn for question in load_mt_bench() for turn in question.turns]
    pieces = [piece for pair in zip(solutions, questions) for piece in pair]
    pieces += solutions[len(questions) :] + questions[len(solutions) :]
    ids: list[int] = []
    for piece in pieces:  # encode piece by piece: only as much text as asked for
        if len(ids) >= count:
            break
        ids += tokenizer.encode(piece + "\n\n")
    return ids[:count]


def decoder_blocks(model: LlamaForCausalLM) -> list[list[Linear]]:
    """Each decoder block's linears, in execution order (the LM head is not in any)."""
    return [[module for module in layer.modules() if isinstance(module, Linear)] for layer in model.layers]


def sparsify_model(
    model: LlamaForCausalLM,
    sparsifier: Sparsifier,
    calibration_ids: Sequence[int],
    sequential: bool = True,
    announce: bool = False,
) -> int:
    """Prune every decoder linear and run it through the sparsifier's kernel; returns how many were pruned.

    ``sequential``: calibrate block b on the outputs of the already pruned
    blocks before it (see the module docstring), as the reference
    implementations do; False calibrates every block on the dense model
    (one pass instead of two).
    """
    started = time.perf_counter()
    if announce:
        print(f"sagellm: pruning to {sparsifier.pattern} (calibration passes) ...", file=sys.stderr, flush=True)
    blocks = decoder_blocks(model)
    calibrated = sparsifier.calibration_observer() is not None
    if calibrated and len(calibration_ids) < 2:
        raise ConfigError("sparsity calibration needs at least two tokens")
    unstructured = sparsifier.pattern == UNSTRUCTURED
    states = block_inputs(model, calibration_ids) if calibrated else []
    seen: dict[Linear, Any] = {}
    if calibrated and (unstructured or not sequential):
        seen = dense_calibration(model, sparsifier, states)
    targets = block_sparsities(sparsifier, blocks, seen) if unstructured else [None] * len(blocks)
    for index, (layer, block) in enumerate(zip(model.layers, blocks)):
        if calibrated and sequential:
            seen, _ = run_block(layer, states, observers(sparsifier, block))
        for linear in block:
            sweight = sparsifier.sparsify(
                linear.dense_weight(), calibration=seen.pop(linear, None), sparsity=targets[index]
            )
            linear.use_sparse(sweight, sparsifier)
        if calibrated and sequential and index + 1 < len(blocks):
            _, states = run_block(layer, states)
    linears = [linear for block in blocks for linear in block]
    logger.info(
        "sparsity %s: %d linears at %.1f %% zeros in %.1f s (%d calibration tokens)",
        sparsifier.pattern,
        len(linears),
        100 * zero_share(sparsifier, linears),
        time.perf_counter() - started,
        len(calibration_ids) if calibrated else 0,
    )
    return len(linears)


def block_sparsities(sparsifier: Sparsifier, blocks: list[list[Linear]], seen: dict[Linear, Any]) -> list[Any]:
    """The sparsifier's share of zeros for each block (OWL spreads it by outliers), checked for length."""
    targets = sparsifier.layer_sparsities(
        [[(linear.dense_weight(), seen.get(linear)) for linear in block] for block in blocks]
    )
    if len(targets) != len(blocks):
        raise ConfigError(
            f"sparsifier {type(sparsifier).__name__} gave {len(targets)} block sparsities for {len(blocks)} blocks"
        )
    return list(targets)


def zero_share(sparsifier: Sparsifier, linears: Sequence[Linear]) -> float:
    """The share of exact zeros over the pruned weights of ``linears`` (densified one at a time)."""
    zeros = total = 0
    for linear in linears:
        dense = sparsifier.densify(linear.sparse)
        zeros += int((dense == 0).sum())
        total += dense.numel()
    return zeros / max(total, 1)


class _PassDone(Exception):
    """Raised where block 0 is entered: the pass has captured what it came for."""


@dataclass(slots=True)
class BlockInput:
    """One calibration window as a decoder block receives it: the hidden states first, then the rest as passed."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def with_hidden(self, hidden: torch.Tensor) -> BlockInput:
        return BlockInput((hidden, *self.args[1:]), self.kwargs)


def block_inputs(model: LlamaForCausalLM, token_ids: Sequence[int]) -> list[BlockInput]:
    """What block 0 receives for each 256-token window of ``token_ids`` (the pass stops there).

    Every block takes the same positions, attention metadata and a KV cache
    of the same shape, so these inputs serve every block with only the
    hidden states replaced: each window is a single chunk, so a block
    writes all its K/V before attending and the one cache can be reused.
    """
    captured: list[BlockInput] = []

    def capture(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured.append(BlockInput(args, kwargs))
        raise _PassDone

    hook = model.layers[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        for begin in range(0, len(token_ids), CALIBRATION_CHUNK):
            with contextlib.suppress(_PassDone):
                window_logits(model, token_ids[begin : begin + CALIBRATION_CHUNK], CALIBRATION_CHUNK)
    finally:
        hook.remove()
    return captured


def observers(sparsifier: Sparsifier, linears: Sequence[Linear]) -> dict[Linear, CalibrationObserver]:
    """A fresh observer per linear (the sparsifier calibrates: checked by the caller)."""
    made = {linear: sparsifier.calibration_observer() for linear in linears}
    return {linear: observer for linear, observer in made.items() if observer is not None}


def run_block(
    layer: nn.Module, states: list[BlockInput], watch: dict[Linear, CalibrationObserver] | None = None
) -> tuple[dict[Linear, Any], list[BlockInput]]:
    """Run ``layer`` on every window; returns what ``watch``'s observers saw and the states it hands on."""
    hooks = [
        linear.register_forward_pre_hook(lambda _module, inputs, seen=seen: seen.observe(inputs[0]))
        for linear, seen in (watch or {}).items()
    ]
    try:
        with torch.inference_mode():
            outputs = [state.with_hidden(layer(*state.args, **state.kwargs)) for state in states]
    finally:
        for hook in hooks:
            hook.remove()
    seen = {linear: observer.result for linear, observer in (watch or {}).items() if observer.result is not None}
    return seen, outputs


def dense_calibration(model: LlamaForCausalLM, sparsifier: Sparsifier, states: list[BlockInput]) -> dict[Linear, Any]:
    """Every decoder linear's calibration from one pass of the dense model over ``states`` (block 0's inputs)."""
    seen: dict[Linear, Any] = {}
    for layer, block in zip(model.layers, decoder_blocks(model)):
        block_seen, states = run_block(layer, states, observers(sparsifier, block))
        seen.update(block_seen)
    return seen
