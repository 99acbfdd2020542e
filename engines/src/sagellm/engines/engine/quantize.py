"""Quantize a loaded model's linear layers with the configured quantizer (``--quantization``).

The engine knows quantizers only through the core registry. Besides the
``Quantizer`` protocol it asks two things of one: a ``linear(x, qweight,
bias)`` kernel that runs its weights, and, where ``quantize`` takes an
``activation_absmax`` keyword (SmoothQuant), per-input-channel activation
ranges — the engine collects them by running calibration text through the
model before quantizing.

Calibration text: GSM8K solutions and MT-Bench questions from the bench
data shipped in the wheel (not the tinyshakespeare text quality is measured on).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from sagellm.core.errors import ConfigError
from sagellm.engines.bench.datasets import load_gsm8k, load_mt_bench
from sagellm.engines.model.linear import Linear
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.runtime.perplexity import perplexity
from sagellm.engines.tokenizer import Tokenizer
from sagellm.quantization import ActivationRange

CALIBRATION_TOKENS = 1024
CALIBRATION_CHUNK = 256


def calibration_token_ids(tokenizer: Tokenizer, count: int = CALIBRATION_TOKENS) -> list[int]:
    """``count`` tokens of mixed text: the last 20 GSM8K solutions, then MT-Bench questions."""
    solutions = [f"{item.question}\n{item.answer}" for item in load_gsm8k()[-20:]]
    questions = [turn for question in load_mt_bench()[:20] for turn in question.turns]
    return tokenizer.encode("\n\n".join(solutions + questions))[:count]


def quantize_model(
    model: LlamaForCausalLM, quantizer: Any, calibration_ids: list[int], include_head: bool = True
) -> int:
    """Give every decoder linear (and the LM head, unless told not to) the quantizer's weights and kernel.

    Returns how many linears were quantized. The head is a fifth of
    SmolLM2-135M's weights and, at 64 rows, a fifth of a bf16 decode step;
    int8 runs it ~1.8x faster at 64 rows and 4.5x at one (bound by weight
    bytes there). Its quality cost, ~0.5-1 % more perplexity, is in the README.
    """
    kernel = getattr(quantizer, "linear", None)
    if not callable(kernel):
        raise ConfigError(
            f"quantizer {type(quantizer).__name__} has no linear(x, qweight, bias) kernel, so the engine cannot run "
            "its weights; choose another --quantization"
        )
    linears = [module for module in model.layers.modules() if isinstance(module, Linear)]
    if include_head:
        linears.append(model.lm_head)
    wants_ranges = "activation_absmax" in inspect.signature(quantizer.quantize).parameters
    ranges = activation_ranges(model, linears, calibration_ids) if wants_ranges else {}
    for linear in linears:
        extra = {"activation_absmax": ranges[linear]} if wants_ranges else {}
        linear.use_quantized(quantizer.quantize(linear.weight, **extra), kernel)
    return len(linears)


def activation_ranges(
    model: LlamaForCausalLM, linears: list[Linear], token_ids: list[int]
) -> dict[Linear, torch.Tensor]:
    """Max |input| per channel of each linear while ``token_ids`` run through the model (dense weights)."""
    if len(token_ids) < 2:
        raise ConfigError("calibration needs at least two tokens")
    ranges = {linear: ActivationRange() for linear in linears}
    hooks = [
        linear.register_forward_pre_hook(lambda _module, inputs, seen=seen: seen.observe(inputs[0]))
        for linear, seen in ranges.items()
    ]
    try:
        perplexity(model, token_ids, window=CALIBRATION_CHUNK, chunk_size=CALIBRATION_CHUNK)
    finally:
        for hook in hooks:
            hook.remove()
    return {linear: seen.absmax for linear, seen in ranges.items() if seen.absmax is not None}
