"""The path users run, checked against llama.cpp on the same GGUF: perplexity within 1 % of llama-perplexity.

Both sides score the same chunks of the same text the same way (llama.cpp's
method; see engine/served_perplexity.py). sageLLM scores through the
serving path at its defaults (bf16, 4-bit decode kernels, int8 head, fused
kernels) and with every speed option on (w8a8, int8 KV cache). Skipped with
the reason when no llama.cpp build is found (``../shared/tools/build_llama_server.sh``
builds one, ~8 min; ``.ci/run`` does not, so CI runs this where a build is
already in place). The float32 token-exact test against
transformers (test_token_exact.py) stays the reference for the float path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from margins import record_margin

from sagellm.engines import LLM
from sagellm.engines.bench.llama_perplexity import llama_perplexity
from sagellm.engines.bench.served_peers import LLAMA_SERVER_HINT, find_llama_server, find_llama_tool
from sagellm.engines.engine.served_perplexity import served_perplexity

TEXT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "tinyshakespeare_head.txt"
N_CTX, CHUNKS = 256, 4
BOUND = 0.01

_server = find_llama_server()
LLAMA_PERPLEXITY = None if _server is None else find_llama_tool(_server, "llama-perplexity")
pytestmark = pytest.mark.skipif(
    LLAMA_PERPLEXITY is None, reason=f"no llama.cpp build with llama-perplexity found ({LLAMA_SERVER_HINT})"
)

CONFIGS: dict[str, dict[str, Any]] = {
    "default (bf16, 4-bit, fused)": {"model": {"dtype": "bfloat16"}},
    "w8a8 + int8 KV": {"model": {"dtype": "bfloat16"}, "quantization": {"implementation": "w8a8"},
                       "kv_pool": {"cache_dtype": "int8"}},
}  # fmt: skip


@pytest.fixture(scope="module")
def reference(model_path: Path) -> float:
    assert LLAMA_PERPLEXITY is not None
    return llama_perplexity(LLAMA_PERPLEXITY, model_path, TEXT, N_CTX, CHUNKS).perplexity


@pytest.mark.parametrize("name", list(CONFIGS))
def test_served_perplexity_within_one_percent_of_llama_cpp(name: str, model_path: Path, reference: float) -> None:
    llm = LLM(show_progress=False, **{**CONFIGS[name], "model": {**CONFIGS[name]["model"], "path": str(model_path)}})
    ids = llm.tokenizer.encode(TEXT.read_text())
    ours = served_perplexity(llm.engine, ids, N_CTX, CHUNKS)
    assert ours.num_chunks == CHUNKS and ours.num_scored == CHUNKS * (N_CTX - N_CTX // 2 - 1)
    gap = abs(ours.perplexity / reference - 1)
    record_margin(f"{name}: |perplexity / llama.cpp's - 1|", gap, BOUND)
    assert gap < BOUND, f"{name}: perplexity {ours.perplexity:.4f} vs llama.cpp {reference:.4f}"
