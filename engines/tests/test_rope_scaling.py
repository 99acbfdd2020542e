"""RoPE scaling read from config.json matches transformers past the original context.

A tiny random Llama per scaling type (llama3, linear, dynamic NTK, YaRN)
is served through the engine, teacher-forced along a continuation that
runs to position 127, twice past its original context of 32-64
positions; every row's logits must sit within the bound derived from
transformers' own float32 noise on those rows (as test_model_loading
does). The same model with the scaling dropped must fail that bound, so
the test can tell a right scaling from a missing one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from logits_reference import NOISE_FACTOR, float64_copy
from margins import record_margin
from teacher_forcing import teacher_forced_logits
from tiny_hf import TINY, bpe_tokenizer, randomise

from sagellm.engines import LLM
from sagellm.engines.model.rope_scaling import RopeScaling, inverse_frequencies, scaling_from_gguf

pytestmark = pytest.mark.slow

LENGTH = 128  # prompt + continuation: positions 0..127
PROMPT = 40
SCALINGS: dict[str, tuple[dict[str, Any], int]] = {  # rope_parameters, max_position_embeddings in config.json
    "llama3": (
        {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
         "original_max_position_embeddings": 32},
        128,
    ),
    "linear": ({"rope_type": "linear", "factor": 2.0}, 64),
    "dynamic": ({"rope_type": "dynamic", "factor": 2.0}, 64),
    "yarn": ({"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64}, 64),
}  # fmt: skip


def _save(directory: Path, rope: dict[str, Any], max_positions: int) -> Any:
    transformers = pytest.importorskip("transformers")
    vocab = bpe_tokenizer(directory)
    settings = {**TINY, "max_position_embeddings": max_positions}
    config = transformers.LlamaConfig(vocab_size=vocab, tie_word_embeddings=False, rope_scaling=dict(rope), **settings)
    model = transformers.LlamaForCausalLM(config)
    randomise(model)
    model.save_pretrained(directory)
    return model.eval()


def _engine_rows(directory: Path, prompt: list[int], continuation: list[int]) -> torch.Tensor:
    llm = LLM(
        model={"path": str(directory), "dtype": "float32", "device": "cpu"},
        kv_pool={"num_blocks": 32, "block_size": 8},
        scheduler_ir={"max_num_batched_tokens": 16},  # the prompt is prefilled in chunks
        show_progress=False,
    )
    return teacher_forced_logits(llm.engine, [prompt], [continuation]).logits[0]


def _reference_rows(model: Any, ids: list[int]) -> torch.Tensor:
    """Rows predicting each continuation token, from one pass over all LENGTH tokens (dynamic NTK's length)."""
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0, PROMPT - 1 : LENGTH - 1]


@pytest.mark.parametrize("kind", list(SCALINGS))
def test_scaled_rope_matches_transformers_past_the_original_context(kind: str, tmp_path: Path) -> None:
    rope, max_positions = SCALINGS[kind]
    model = _save(tmp_path, rope, max_positions)
    generator = torch.Generator().manual_seed(7)
    ids = torch.randint(3, model.config.vocab_size, (LENGTH,), generator=generator).tolist()
    prompt, continuation = ids[:PROMPT], ids[PROMPT:]
    fp32 = _reference_rows(model, ids).float()
    exact = _reference_rows(float64_copy(model), ids).double()
    bound = NOISE_FACTOR * float((fp32.double() - exact).abs().max())

    ours = _engine_rows(tmp_path, prompt, continuation)
    error = float((ours.double() - exact).abs().max())
    record_margin(f"{kind} RoPE: max |logit - float64| to position {LENGTH - 1}", error, bound)
    assert error <= bound

    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("rope_scaling", None)
    config["rope_parameters"] = {"rope_type": "default", "rope_theta": config["rope_parameters"]["rope_theta"]}
    config["max_position_embeddings"] = LENGTH
    (tmp_path / "config.json").write_text(json.dumps(config))
    unscaled = float((_engine_rows(tmp_path, prompt, continuation).double() - exact).abs().max())
    assert unscaled > 10 * bound, f"dropping {kind} scaling changed the logits by only {unscaled:.2e}"


def test_gguf_rope_freqs_are_divisors_of_the_plain_frequencies() -> None:
    plain, _ = inverse_frequencies(16, 5000.0, None)
    llama3 = RopeScaling("llama3", factor=4.0, original_max_position_embeddings=32)
    scaled, _ = inverse_frequencies(16, 5000.0, llama3)
    divisors = tuple((plain / scaled).tolist())  # what llama.cpp's converter writes as rope_freqs
    from_gguf, _ = inverse_frequencies(16, 5000.0, RopeScaling("freq_factors", freq_factors=divisors))
    torch.testing.assert_close(from_gguf, scaled)


def test_gguf_scaling_metadata_is_read() -> None:
    metadata = {"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0,
                "llama.rope.scaling.original_context_length": 32768}  # fmt: skip
    scaling = scaling_from_gguf(metadata, "llama", 32768)
    assert scaling is not None and scaling.rope_type == "yarn" and scaling.max_positions(32768) == 131072
    assert scaling_from_gguf({"llama.rope.scaling.type": "none"}, "llama", 2048) is None


def test_a_rope_scaling_override_serves_as_if_config_json_had_it(tmp_path: Path) -> None:
    """``model.rope_scaling`` (``--rope-scaling``) on a model without scaling gives exactly the logits of the same
    weights whose config.json names that scaling, past the original positions."""
    rope, max_positions = SCALINGS["yarn"]
    model = _save(tmp_path, rope, max_positions)
    ids = torch.randint(3, model.config.vocab_size, (LENGTH,), generator=torch.Generator().manual_seed(7)).tolist()
    prompt, continuation = ids[:PROMPT], ids[PROMPT:]
    scaled = _engine_rows(tmp_path, prompt, continuation)

    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("rope_scaling", None)
    config["rope_parameters"] = {"rope_type": "default", "rope_theta": config["rope_parameters"]["rope_theta"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    llm = LLM(
        model={
            "path": str(tmp_path),
            "dtype": "float32",
            "device": "cpu",
            "rope_scaling": {"rope_type": "yarn", "factor": 2.0},
        },
        kv_pool={"num_blocks": 32, "block_size": 8},
        scheduler_ir={"max_num_batched_tokens": 16},
        show_progress=False,
    )
    assert llm.engine.max_model_len == 2 * max_positions  # original 64 (the model's own) x 2
    overridden = teacher_forced_logits(llm.engine, [prompt], [continuation]).logits[0]
    torch.testing.assert_close(overridden, scaled, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"rope_type": "su", "factor": 2.0}, "not supported"),
        ({"rope_type": "yarn", "factor": 0.5}, "factor must be >= 1"),
        ({"rope_type": "linear", "factor": "x"}, "rope_scaling"),
    ],
)
def test_a_bad_rope_scaling_override_is_a_config_error(override: dict[str, Any], match: str) -> None:
    from sagellm.core.errors import ConfigError
    from sagellm.engines.model.config import ModelConfig
    from sagellm.engines.model.rope_override import with_rope_override

    plain = ModelConfig("llama", 100, 64, 128, 2, 4, 2, 16, max_position_embeddings=8192)
    with pytest.raises(ConfigError, match=match):
        with_rope_override(plain, override)
    yarn = with_rope_override(plain, {"rope_type": "yarn", "factor": 4.0})
    assert yarn.max_position_embeddings == 32768 and yarn.rope_scaling is not None
    assert with_rope_override(plain, None) is plain
