"""Quantize a loaded model's linear layers with the configured quantizer (``--quantization``).

The engine knows quantizers only through the core registry and core's
``LinearQuantizer`` protocol: a ``linear(x, qweight, bias)`` kernel that
runs its weights, and a ``calibration_observer()`` -- where the quantizer
needs calibration (SmoothQuant: per-input-channel activation ranges), the
engine runs calibration text through the dense model with one fresh
observer per linear and hands each its ``result``.

Calibration text: GSM8K solutions and MT-Bench questions from the data
shipped in the wheel (``sagellm.engines.data``; not the tinyshakespeare
text quality is measured on). Calibration runs the model (runtime's
perplexity pass), so this sits in the engine layer, above runtime and model.
"""

from __future__ import annotations

from typing import Any

from sagellm.core.errors import ConfigError
from sagellm.core.protocols import CalibrationObserver, LinearQuantizer
from sagellm.engines.data.datasets import load_gsm8k, load_mt_bench
from sagellm.engines.model.linear import Linear
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.runtime.perplexity import perplexity
from sagellm.engines.tokenizer import Tokenizer

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
    if not isinstance(quantizer, LinearQuantizer):
        raise ConfigError(
            f"quantizer {type(quantizer).__name__} has no linear(x, qweight, bias) kernel and calibration hook "
            "(core's LinearQuantizer), so the engine cannot run its weights; choose another --quantization"
        )
    linears = [module for module in model.layers.modules() if isinstance(module, Linear)]
    if include_head:
        linears.append(model.lm_head)
    calibration = calibrate(model, quantizer, linears, calibration_ids)
    for linear in linears:
        qweight = quantizer.quantize(linear.dense_weight(), calibration=calibration.get(linear))
        linear.use_quantized(qweight, quantizer)
    return len(linears)


def calibrate(
    model: LlamaForCausalLM, quantizer: LinearQuantizer, linears: list[Linear], token_ids: list[int]
) -> dict[Linear, Any]:
    """Each linear's calibration result while ``token_ids`` run through the dense model; {} if none is wanted."""
    observers: dict[Linear, CalibrationObserver] = {}
    for linear in linears:
        observer = quantizer.calibration_observer()
        if observer is None:
            return {}
        observers[linear] = observer
    if len(token_ids) < 2:
        raise ConfigError("calibration needs at least two tokens")
    hooks = [
        linear.register_forward_pre_hook(lambda _module, inputs, seen=seen: seen.observe(inputs[0]))
        for linear, seen in observers.items()
    ]
    try:
        perplexity(model, token_ids, window=CALIBRATION_CHUNK, chunk_size=CALIBRATION_CHUNK)
    finally:
        for hook in hooks:
            hook.remove()
    return {linear: seen.result for linear, seen in observers.items() if seen.result is not None}
