"""Session fixtures: each model is loaded once per test session.

* ``llm``: our engine on the embedded SmolLM2-135M-Instruct GGUF, float32.
* ``make_engine(**sections)``: a fresh engine (pool, prefix index, scheduler)
  around the model ``llm`` already loaded, so configurations cost no reload.
* ``hf_model`` / ``hf_reference``: transformers on the same GGUF file
  (dequantized to float32) and its greedy continuation of every test prompt,
  prompt by prompt, without padding, with the logits of each step in
  float32 and, from ``hf_exact_model`` (a float64 copy), in float64.

The terminal summary lists the margin of every numeric check that recorded
one (``margins.py``), so a CI log says how close each bound came to failing
on the machine it ran on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from engines_helpers import EXACT_MODEL, NUM_NEW_TOKENS, drive, prompt_token_ids
from logits_reference import Reference, float64_copy, verified_reference
from margins import MARGINS
from server_helpers import RunningServer, start_server

from sagellm.core.config import load_config
from sagellm.engines import LLM, LLMEngine
from sagellm.engines.bench.environment import cpu_model_name
from sagellm.engines.engine.builder import assemble_engine
from sagellm.engines.model.default_model import default_model_path

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    """Random tensors in tests come from one seed, so a tolerance that holds once holds in CI."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The embedded model, or ``SAGELLM_TEST_MODEL`` (a GGUF of the same family, e.g. on a GPU box
    where the 98 MB default cannot be shipped: a layer-truncated copy keeps the real weights)."""
    override = os.environ.get("SAGELLM_TEST_MODEL")
    return Path(override) if override else default_model_path()


@pytest.fixture(scope="session")
def llm(model_path: Path) -> LLM:
    return LLM(model={**EXACT_MODEL, "path": str(model_path)}, kv_pool={"num_blocks": 160}, show_progress=False)


@pytest.fixture(scope="session")
def make_engine(llm: LLM) -> Callable[..., LLMEngine]:
    def make(**sections: Any) -> LLMEngine:
        sections.setdefault("kv_pool", {"num_blocks": 160})
        sections["model"] = {**EXACT_MODEL, **sections.get("model", {})}
        config = load_config(**sections)
        return assemble_engine(config, llm.engine.runner.model, llm.tokenizer)

    return make


@pytest.fixture(scope="session")
def prompts(llm: LLM) -> list[list[int]]:
    return prompt_token_ids(llm.tokenizer)


@pytest.fixture(scope="session")
def hf_model(model_path: Path) -> Any:
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(model_path.parent), gguf_file=model_path.name, dtype=torch.float32
    )
    assert model.dtype == torch.float32
    return model.eval()


@pytest.fixture(scope="session")
def hf_tokenizer(model_path: Path) -> Any:
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)


@pytest.fixture(scope="session")
def hf_exact_model(hf_model: Any) -> Any:
    """transformers in float64: the function both float32 implementations approximate."""
    return float64_copy(hf_model)


@pytest.fixture(scope="session")
def hf_reference(
    hf_model: Any, hf_exact_model: Any, make_engine: Callable[..., LLMEngine], prompts: list[list[int]]
) -> list[Reference]:
    """transformers' greedy continuation of each prompt, alone and unpadded, with its logits.

    Stepping transformers 8 x 64 times costs minutes on two cores, so the
    reference is found by verification (``verified_reference``): the
    candidate continuation comes from our engine (all prompts in one batch),
    which is what makes one forward pass per prompt enough; it is only a
    candidate, every token is checked. ``test_hf_generate_matches_the_reference``
    runs transformers' own ``generate`` on one prompt to show the two ways of
    computing its greedy output agree. EOS does not end the reference (our
    side runs with ``ignore_eos=True``): EOS may be emitted and decoding goes on.
    """
    candidates = drive(make_engine(), prompts).token_ids
    assert all(len(candidate) == NUM_NEW_TOKENS for candidate in candidates)
    return [verified_reference(hf_model, hf_exact_model, ids, c) for ids, c in zip(prompts, candidates)]


@pytest.fixture
def fresh_engine(make_engine: Callable[..., LLMEngine]) -> Iterator[LLMEngine]:
    """A default engine with an empty prefix cache, for tests that count blocks."""
    yield make_engine()


@pytest.fixture(scope="module")
def server(make_engine: Callable[..., LLMEngine]) -> Iterator[RunningServer]:
    """A live HTTP server on 127.0.0.1 around a fresh default engine, one per test module."""
    running = start_server(make_engine())
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(server: RunningServer) -> str:
    """The name the server answers to."""
    return server.engine.model_name


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print every recorded margin: how close each cross-implementation check came to its bound."""
    if not MARGINS:
        return
    terminalreporter.write_sep("-", f"numeric margins on {cpu_model_name()}")
    for margin in MARGINS:
        terminalreporter.write_line(margin.describe())
