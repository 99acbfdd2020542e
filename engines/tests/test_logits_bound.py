"""The float32 logits bound fails real bugs and passes float32 reordering.

``logits_reference.py`` derives the bound from transformers' own float32
error on this CPU. A bound is only worth its name if it fails what it
guards against, so each case here plants one small, plausible bug in the
engine's model (restored afterwards) and requires the token-exact check's
comparison to reject it: a RoPE base off by 0.1 %, a wrong RMSNorm
epsilon, decode tokens one position off, one lower-precision step. The
clean engine passes the same comparison in ``test_token_exact.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
from engines_helpers import drive
from logits_reference import MAX_BOUND, Reference, logits_bound
from margins import record_margin

from sagellm.engines import LLM, LLMEngine
from sagellm.engines.model import llama
from sagellm.engines.model.rope import RotaryEmbedding

pytestmark = pytest.mark.slow

PICKED = (1, 5)  # a long chat prompt and a code prompt, each alone


def wrong_rope_base(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = model.config
    wrong = RotaryEmbedding(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta * 1.001, model.embed.device)
    monkeypatch.setattr(model, "rotaries", [wrong])


def wrong_rms_eps(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = dataclasses.replace(model.config, rms_norm_eps=model.config.rms_norm_eps / 10)
    for module in [model, *model.layers]:
        monkeypatch.setattr(module, "config", wrong)


def decode_position_off_by_one(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    forward = llama.LlamaForCausalLM.forward

    def shifted(self: Any, input_ids: Any, positions: Any, meta: Any, kv_caches: Any, logits_idx: Any) -> Any:
        if meta.decode is not None:
            rows = meta.decode.token_idx
            positions = positions.index_add(0, rows, torch.ones_like(rows))
        return forward(self, input_ids, positions, meta, kv_caches, logits_idx)

    monkeypatch.setattr(llama.LlamaForCausalLM, "forward", shifted)


def float16_attention_output(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    attend = llama.paged_attention

    def rounded(*args: Any, **kwargs: Any) -> torch.Tensor:
        return attend(*args, **kwargs).half().float()

    monkeypatch.setattr(llama, "paged_attention", rounded)


BUGS: dict[str, Callable[[Any, pytest.MonkeyPatch], None]] = {
    "rope-base-off-by-0.1%": wrong_rope_base,
    "rms-norm-eps-a-tenth": wrong_rms_eps,
    "decode-position-off-by-one": decode_position_off_by_one,
    "attention-output-in-float16": float16_attention_output,
}


def test_the_bound_is_float32_noise_not_a_lower_precision(hf_reference: list[Reference]) -> None:
    """A derived bound must not grow with a broken reference: it stays far below every planted bug."""
    bound = logits_bound(hf_reference)
    assert 0 < bound <= MAX_BOUND
    assert all(ref.noise > 0 for ref in hf_reference)  # transformers did run in float32


@pytest.mark.parametrize("bug", list(BUGS))
def test_a_planted_bug_fails_the_bound(
    bug: str,
    llm: LLM,
    make_engine: Callable[..., LLMEngine],
    prompts: list[list[int]],
    hf_reference: list[Reference],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    references = [hf_reference[i] for i in PICKED]
    BUGS[bug](llm.engine.runner.model, monkeypatch)  # undone by monkeypatch after the test
    result = drive(make_engine(), [prompts[i] for i in PICKED], references=references, one_at_a_time=True)
    worst, bound = max(result.probe.max_abs_err.values()), logits_bound(hf_reference)
    record_margin("bug's max |logit - float64| vs the bound", worst, bound, higher_is_better=True)
    assert worst > 10 * bound, f"{bug}: error {worst:.2e} is within 10x the bound {bound:.2e}"
