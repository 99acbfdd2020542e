"""Model FLOPs of the work a run did, for the MFU estimate.

Per request with ``P`` prompt tokens (``C`` of them served from the prefix
cache, so never computed) and ``O`` output tokens:

    positions computed   N = (P - C) + (O - 1)        the last sampled token is never fed back
    dense matmuls        2 x body_params x N          body = all weights but the embedding table
    lm_head              2 x vocab x hidden x O       one logits row per sampled token
    attention            4 x layers x heads x head_dim x (sum of keys attended, C+1 ... P+O-1)

(``4 = 2 FLOPs per multiply-add x 2 matmuls``, QK^T and AV.) Recomputed
work after a preemption is not counted: MFU measures useful work.
"""

from __future__ import annotations

from sagellm.engines.model.config import ModelConfig


def request_flops(config: ModelConfig, num_prompt: int, num_cached: int, num_output: int) -> float:
    if num_prompt <= 0 or num_output <= 0:
        return 0.0
    cached = min(max(num_cached, 0), num_prompt - 1)
    computed = (num_prompt - cached) + (num_output - 1)
    embed = config.vocab_size * config.hidden_size
    body = config.num_parameters - embed * (1 if config.tie_word_embeddings else 2)
    last = num_prompt + num_output - 1  # keys attended by the last computed position
    keys = _triangle(last) - _triangle(cached)
    attention = 4.0 * config.num_layers * config.num_heads * config.head_dim * keys
    return 2.0 * body * computed + 2.0 * embed * num_output + attention


def _triangle(n: int) -> int:
    return n * (n + 1) // 2
