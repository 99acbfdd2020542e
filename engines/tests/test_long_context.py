"""A 128K-position model served past position 100,000 matches transformers.

A one-layer random Llama with YaRN scaling (factor 16 over 8,192 original
positions: 131,072 in all) takes a 100,384-token prompt and is
teacher-forced along 16 more tokens; the logits of those rows (positions
100,383-100,399) must lie within the noise-floor bound of transformers'
float64 model on the same ids (logits_reference.py's rule: 4x
transformers' own float32 distance from float64). A chunked prefill would
gather the whole context per chunk; the prompt goes in as one prefill here,
which is how a long prompt is served when the batch budget allows it.

It costs about two minutes on 2 cores, nearly all of it in transformers'
float64 pass. test_rope_scaling.py shows at small scale that a dropped or
wrong scaling fails the same kind of bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from logits_reference import NOISE_FACTOR, float64_copy
from margins import record_margin
from teacher_forcing import teacher_forced_logits
from tiny_hf import bpe_tokenizer, randomise

from sagellm.engines import LLM

pytestmark = pytest.mark.slow

MAX_POSITIONS = 131_072
PROMPT = 100_384
NEW = 16
YARN = {"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 8192, "rope_theta": 10000.0}


def _save(directory: Path) -> Any:
    transformers = pytest.importorskip("transformers")
    vocab = bpe_tokenizer(directory)
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_parameters=dict(YARN),
        bos_token_id=1,
        eos_token_id=2,
    )
    model = transformers.LlamaForCausalLM(config)
    randomise(model)
    model.save_pretrained(directory)
    return model.eval()


def _reference_rows(model: Any, ids: list[int]) -> torch.Tensor:
    """The rows predicting each continuation token (and the one after), from one pass over every id."""
    with torch.inference_mode():
        return model(torch.tensor([ids]), logits_to_keep=NEW + 1).logits[0, :NEW]


def test_logits_past_position_100k_match_transformers(tmp_path: Path) -> None:
    model = _save(tmp_path)
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(3, model.config.vocab_size, (PROMPT + NEW,), generator=generator).tolist()
    prompt, continuation = ids[:PROMPT], ids[PROMPT:]
    fp32 = _reference_rows(model, ids).float()
    exact = _reference_rows(float64_copy(model), ids).double()
    bound = NOISE_FACTOR * float((fp32.double() - exact).abs().max())

    llm = LLM(
        model={"path": str(tmp_path), "dtype": "float32", "device": "cpu"},
        kv_pool={"num_blocks": (PROMPT + NEW) // 16 + 8, "block_size": 16},
        scheduler_ir={"max_num_batched_tokens": PROMPT + NEW},
        show_progress=False,
    )
    assert llm.engine.max_model_len == MAX_POSITIONS
    ours = teacher_forced_logits(llm.engine, [prompt], [continuation]).logits[0]
    assert ours.shape == exact.shape
    error = float((ours.double() - exact).abs().max())
    record_margin(f"YaRN x16: max |logit - float64| at positions {PROMPT - 1}..{PROMPT + NEW - 2}", error, bound)
    assert exact.std() > 0.5  # logits that spread: the bound is not met by near-zero rows
    assert error <= bound, f"max abs logits error {error:.2e} > {bound:.2e}"
