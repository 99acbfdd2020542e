"""Disaggregated prefill/decode end to end: two worker processes, KV over the shm channel.

The workers run float32 (the tests' reference mode) with one torch thread
each; the colocated engine (the session's ``llm``) is the reference. In
float32 every path is a dense matmul, so greedy tokens must be equal; in
bf16 with 4-bit decode kernels a different batch composition can pick a
different kernel and flip a near-tie (see engines/README.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from engines_helpers import EXACT_MODEL

from sagellm.core.errors import InvalidRequestError
from sagellm.core.types import SamplingParams, StepOutput
from sagellm.engines import LLM
from sagellm.engines.bench.backends.disaggregated import DisaggBackend
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.disagg import DisaggregatedLLM

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
BLOCK = 16


@pytest.fixture(scope="module")
def pd(model_path: Path) -> Iterator[DisaggregatedLLM]:
    llm = DisaggregatedLLM(model={**EXACT_MODEL, "path": str(model_path)}, kv_pool={"num_blocks": 160})
    yield llm
    llm.close()


def test_greedy_output_equals_the_colocated_engine(pd: DisaggregatedLLM, llm: LLM, prompts: list[list[int]]) -> None:
    pd.coordinator.stats(reset=True)
    got = pd.generate(prompts, GREEDY)
    expected = llm.generate(prompts, GREEDY)
    assert [r.token_ids for r in got] == [r.token_ids for r in expected]
    assert [r.text for r in got] == [r.text for r in expected]
    assert all(r.finish_reason == "length" for r in got)
    # The decode side found every full prompt block in its cache: it recomputed only the partial last block.
    assert [r.num_cached_tokens for r in got] == [len(p) // BLOCK * BLOCK for p in prompts]
    stats = pd.coordinator.stats()
    prefill, decode = stats["prefill"], stats["decode"]
    full_blocks = sum(len(p) // BLOCK for p in prompts)
    assert prefill["num_transfers"] == len(prompts) == decode["num_handoffs"]
    assert prefill["num_blocks_sent"] == full_blocks == decode["num_blocks_received"]
    assert prefill["bytes_sent"] == decode["bytes_received"] > 0
    assert decode["num_rejected"] == 0 and prefill["num_staging_fallbacks"] == 0


def test_text_prompts_and_streamed_outputs(pd: DisaggregatedLLM, llm: LLM) -> None:
    seen: list[StepOutput] = []
    text = "The quick brown fox jumps over the lazy dog. Then the dog"
    (got,) = pd.generate(text, GREEDY, on_output=seen.append)
    (expected,) = llm.generate([text], GREEDY)
    assert got.token_ids == expected.token_ids and got.prompt_token_ids == expected.prompt_token_ids
    assert [o.num_output_tokens for o in seen] == list(range(1, GREEDY.max_tokens + 1))
    assert seen[-1].finished and not any(o.finished for o in seen[:-1])
    assert "".join(o.new_text for o in seen) == got.text


def test_one_token_requests_finish_in_the_prefill_worker(pd: DisaggregatedLLM, prompts: list[list[int]]) -> None:
    pd.coordinator.stats(reset=True)
    got = pd.generate(prompts[:3], SamplingParams(max_tokens=1, temperature=0.0))
    assert [len(r.token_ids) for r in got] == [1, 1, 1]
    assert all(r.finish_reason == "length" for r in got)
    assert pd.coordinator.stats()["prefill"]["num_transfers"] == 0


def test_a_request_too_long_for_the_model_fails_cleanly(pd: DisaggregatedLLM) -> None:
    with pytest.raises(InvalidRequestError, match="maximum context length"):
        pd.generate([[100] * 10], SamplingParams(max_tokens=100_000))
    (after,) = pd.generate([[100] * 20], GREEDY)  # the workers carry on
    assert len(after.token_ids) == GREEDY.max_tokens


def test_a_grammar_is_refused_not_dropped(pd: DisaggregatedLLM) -> None:
    """The workers rebuild sampling parameters without a grammar: refused before it queues, never unconstrained."""
    from sagellm.engines.runtime.grammar import GrammarSpec, with_grammar

    with pytest.raises(InvalidRequestError, match="structured output"):
        pd.generate([[100] * 10], with_grammar(GREEDY, GrammarSpec.json_object()))
    (after,) = pd.generate([[100] * 20], GREEDY)
    assert len(after.token_ids) == GREEDY.max_tokens


def test_benchmark_backend_replays_timed_requests(pd: DisaggregatedLLM, prompts: list[list[int]]) -> None:
    backend = DisaggBackend(pd.coordinator)
    requests = [
        BenchRequest(f"b{i}", max_tokens=4 + i, prompt_token_ids=tuple(p), arrival_s=0.1 * i)
        for i, p in enumerate(prompts[:3])
    ]
    outcome = backend.run("smoke", requests, None)
    assert [r.num_output_tokens for r in outcome.records] == [4, 5, 6]
    assert all(r.ok and r.ttft_s is not None and r.tpot_s is not None for r in outcome.records)
    assert backend.last_worker_stats["prefill"]["bytes_sent"] > 0
    assert backend.info.settings["prefill_threads"] == backend.info.settings["decode_threads"] == 1


def test_close_stops_both_workers_and_leaves_no_shared_memory(pd: DisaggregatedLLM) -> None:
    procs = list(pd.coordinator._procs.values())
    pids = [p.pid for p in procs]
    pd.close()
    assert all(not p.is_alive() and p.exitcode == 0 for p in procs)
    shm = Path("/dev/shm")
    if shm.is_dir():
        leftovers = [f for f in os.listdir(shm) if any(f.startswith(f"sagellm-kv-{pid}-") for pid in pids)]
        assert leftovers == []
