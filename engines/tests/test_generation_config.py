"""A model's generation_config.json fills the sampling fields a request leaves out (vLLM's default).

The request's own value always wins; fields the file does not set keep
the API's defaults; ``--generation-config none`` turns the file off.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_hf import bpe_tokenizer

from sagellm.core.errors import ConfigError, ModelLoadError
from sagellm.engines.model.generation_config import SamplingDefaults, load_sampling_defaults
from sagellm.engines.server.protocol_anthropic import MessagesRequest
from sagellm.engines.server.protocol_openai import ChatCompletionRequest, CompletionRequest
from sagellm.engines.server.sampling import anthropic_sampling, chat_sampling, completion_sampling

MODEL_DEFAULTS = {"temperature": 0.6, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.1, "max_new_tokens": 64}


def _model_dir(directory: Path, generation: object) -> Path:
    bpe_tokenizer(directory)
    (directory / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (directory / "generation_config.json").write_text(json.dumps(generation))
    return directory


def test_the_models_file_is_read(tmp_path: Path) -> None:
    defaults = load_sampling_defaults(_model_dir(tmp_path, {**MODEL_DEFAULTS, "do_sample": True}))
    assert defaults == SamplingDefaults(temperature=0.6, top_p=0.9, top_k=20, repetition_penalty=1.1, max_tokens=64)
    assert load_sampling_defaults(tmp_path, "none") == SamplingDefaults()
    assert load_sampling_defaults(None) == SamplingDefaults()  # a GGUF file has no sampling settings


def test_requests_keep_their_own_values_and_fill_the_rest() -> None:
    defaults = SamplingDefaults(temperature=0.6, top_p=0.9, top_k=20, repetition_penalty=1.1, max_tokens=64)
    unset = completion_sampling(CompletionRequest(prompt="Hi"), defaults)
    assert (unset.temperature, unset.top_p, unset.top_k, unset.repetition_penalty, unset.max_tokens) == (
        0.6, 0.9, 20, 1.1, 64,
    )  # fmt: skip
    given = completion_sampling(CompletionRequest(prompt="Hi", temperature=0.0, top_k=0, max_tokens=5), defaults)
    assert (given.temperature, given.top_k, given.max_tokens, given.top_p) == (0.0, 0, 5, 0.9)
    chat = chat_sampling(ChatCompletionRequest(messages=[{"role": "user", "content": "Hi"}]), 10, 2048, defaults)
    assert chat.max_tokens == 64 and chat.temperature == 0.6
    short = chat_sampling(ChatCompletionRequest(messages=[{"role": "user", "content": "Hi"}]), 2000, 2048, defaults)
    assert short.max_tokens == 48  # never past the context
    message = anthropic_sampling(MessagesRequest(max_tokens=8, messages=[{"role": "user", "content": "Hi"}]), defaults)
    assert (message.temperature, message.top_p, message.top_k) == (0.6, 0.9, 20)
    plain = completion_sampling(CompletionRequest(prompt="Hi"))
    assert (plain.temperature, plain.top_p, plain.max_tokens) == (1.0, 1.0, 16)  # the APIs' own


def test_bad_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no generation_config.json"):
        load_sampling_defaults(None, str(tmp_path))
    with pytest.raises(ModelLoadError, match="not a JSON object"):
        load_sampling_defaults(_model_dir(tmp_path, [1, 2]))
