"""Workload generation for ``sagellm bench``: traces, the Q1-Q8 suite, load patterns, the dispatcher."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sagellm.engines.bench.dispatcher import Dispatcher
from sagellm.engines.bench.load_pattern import LoadPattern, apply_load, poisson_arrivals, scale_arrivals
from sagellm.engines.bench.prompt_resolver import PromptResolver, clip_to_context
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.token_fit import block_token_ids, fit_tokens, repeat_to
from sagellm.engines.bench.workloads import WORKLOADS, WorkloadOptions, build_suite
from sagellm.engines.bench.workloads.mooncake import BLOCK_TOKENS, prompt_from_hash_ids
from sagellm.engines.bench.workloads.suite import PRESETS
from sagellm.engines.data.datasets import load_grounded_passages

VOCAB = 49152


class CharTokenizer:
    """One id per character: enough for workloads that only count and cut tokens."""

    vocab_size = VOCAB

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) % VOCAB for c in text]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)

    def encode_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return self.encode(text + ("<assistant>" if add_generation_prompt else ""))


# ------------------------------------------------------------------ Mooncake
def test_equal_hash_ids_give_equal_blocks_and_different_ids_different_blocks() -> None:
    a, b = block_token_ids(7, 512, VOCAB), block_token_ids(7, 512, VOCAB)
    assert a == b and len(a) == 512
    assert block_token_ids(8, 512, VOCAB) != a
    assert all(300 <= t < VOCAB - 300 for t in a)  # clear of special tokens at both ends


def test_shared_hash_ids_mean_shared_prefixes_and_input_length_trims_the_last_block() -> None:
    first = prompt_from_hash_ids((1, 2, 3), 2 * BLOCK_TOKENS + 100, BLOCK_TOKENS, VOCAB)
    second = prompt_from_hash_ids((1, 2, 9), 3 * BLOCK_TOKENS, BLOCK_TOKENS, VOCAB)
    assert len(first) == 2 * BLOCK_TOKENS + 100
    assert first[: 2 * BLOCK_TOKENS] == second[: 2 * BLOCK_TOKENS]
    assert first[2 * BLOCK_TOKENS :] == block_token_ids(3, BLOCK_TOKENS, VOCAB)[:100]
    assert second[2 * BLOCK_TOKENS :] != block_token_ids(3, BLOCK_TOKENS, VOCAB)


def test_mooncake_replays_the_bundled_trace_scaled() -> None:
    options = WorkloadOptions(num_requests=60, length_scale=0.01, time_scale=0.5)
    spec = WORKLOADS["mooncake"](CharTokenizer(), options)
    assert len(spec.requests) == 60 and spec.load == LoadPattern()  # trace arrivals, open loop
    assert spec.shape["block_tokens"] == 6  # 512 x 0.01, rounded up
    from sagellm.engines.data.datasets import load_mooncake

    rows = load_mooncake()[:60]
    for row, request in zip(rows, spec.requests):
        assert len(request.prompt_token_ids) == max(1, round(row.input_length * 0.01))
        assert request.arrival_s == pytest.approx((row.timestamp_ms - rows[0].timestamp_ms) / 1000 * 0.5)
    # Rows sharing a leading hash id (rows 15 and 58 do) share their first scaled block.
    by_first: dict[int, list[tuple[int, ...]]] = {}
    for row, request in zip(rows, spec.requests):
        by_first.setdefault(row.hash_ids[0], []).append(request.prompt_token_ids[:6])
    assert any(len(group) > 1 for group in by_first.values())
    assert all(len(set(group)) == 1 for group in by_first.values())


def test_azure_trace_arrivals_and_lengths() -> None:
    spec = WORKLOADS["azure"](CharTokenizer(), WorkloadOptions(num_requests=5, length_scale=0.1, time_scale=2.0))
    arrivals = [r.arrival_s for r in spec.requests]
    assert arrivals[0] == 0.0 and arrivals == sorted(arrivals)
    assert arrivals[1] == pytest.approx((0.03196 - 0.0) * 2, abs=0.06)  # rows 1-2 of the trace: 52 ms apart x 2
    assert len(spec.requests[0].prompt_token_ids) == round(4808 * 0.1)
    assert spec.requests[0].max_tokens == 1  # 10 x 0.1


def test_scale_arrivals_and_poisson() -> None:
    assert scale_arrivals([5.0, 6.0, 8.0], 0.5) == [0.0, 0.5, 1.5]
    times = poisson_arrivals(2000, rate=4.0, seed=1)
    assert times[0] == 0.0 and times == sorted(times)
    assert times[-1] / 1999 == pytest.approx(0.25, rel=0.1)  # mean gap 1/rate
    assert poisson_arrivals(3, math.inf) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        LoadPattern(concurrency=2, request_rate=1.0)


# ------------------------------------------------------------------ suite
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_suite_shapes(preset: str, llm: Any) -> None:
    specs = build_suite(preset, llm.tokenizer)
    assert [s.name for s in specs] == [f"Q{i}" for i in range(1, 9)]
    for spec, entry in zip(specs, PRESETS[preset]):
        assert spec.shape["input_len"] == entry.input_len and spec.load.concurrency == entry.concurrency
        roots = [r for r in spec.requests if r.follows is None]
        assert len(roots) == entry.count
        assert all(r.max_tokens == entry.output_len for r in spec.requests)
        for request in roots:
            n = len(request.prompt_token_ids) or len(llm.tokenizer.encode_chat(list(request.messages)))
            assert abs(n - entry.input_len) <= (2 if request.is_chat else 0), (spec.name, n)
    full = {e.name: (e.input_len, e.output_len, e.count, e.concurrency) for e in PRESETS["full"]}
    assert full == {
        "Q1": (32, 64, 5, 1),
        "Q2": (512, 128, 3, 1),
        "Q3": (128, 256, 3, 1),
        "Q4": (256, 256, 3, 1),
        "Q5": (32, 64, 10, 10),
        "Q6": (512, 256, 10, 10),
        "Q7": (256, 512, 3, 1),
        "Q8": (192, 128, 4, 4),
    }


def test_suite_prompts_are_real_text(llm: Any) -> None:
    q4, q7, q8 = build_suite("ci", llm.tokenizer, ("Q4", "Q7", "Q8"))
    assert [r.follows for r in q4.requests] == [None, "Q4-0-t1", None, "Q4-1-t1"]  # 2 conversations x 2 turns
    cot = llm.tokenizer.decode(q7.requests[0].prompt_token_ids)
    assert cot.rstrip().endswith("Let's think step by step.") and "Question:" in cot
    assert [r.tag for r in q8.requests] == ["qa", "code", "cot", "summarise"]


def test_fit_tokens_is_exact() -> None:
    assert fit_tokens(10, [1, 2, 3], prefix=[9], suffix=[8]) == [9, 1, 2, 3, 1, 2, 3, 1, 2, 8]
    assert fit_tokens(3, [1], prefix=[9, 9], suffix=[8, 8]) == [9, 9, 8]
    assert repeat_to([1, 2], 5) == [1, 2, 1, 2, 1]


def test_mt_bench_turn_two_follows_turn_one(llm: Any) -> None:
    spec = WORKLOADS["mt-bench"](llm.tokenizer, WorkloadOptions(num_requests=2, output_len=8))
    assert [r.follows for r in spec.requests] == [None, "mt-bench-0-t1", None, "mt-bench-1-t1"]
    assert spec.load.concurrency == 2


def test_synthetic_and_gsm8k(llm: Any) -> None:
    spec = WORKLOADS["synthetic"](llm.tokenizer, WorkloadOptions(num_requests=3, input_len=20, output_len=5))
    assert [len(r.prompt_token_ids) for r in spec.requests] == [20, 20, 20]
    assert spec.requests[0].prompt_token_ids != spec.requests[1].prompt_token_ids
    gsm = WORKLOADS["gsm8k"](llm.tokenizer, WorkloadOptions(num_requests=2, data_path=None))
    assert "Janet" in gsm.requests[0].messages[0]["content"]


def test_datasets_reject_bad_files(tmp_path: Path) -> None:
    from sagellm.core.errors import InvalidRequestError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n')
    with pytest.raises(InvalidRequestError, match="missing field"):
        WORKLOADS["gsm8k"](CharTokenizer(), WorkloadOptions(data_path=bad))


# ------------------------------------------------------------------ dispatch
def _req(rid: str, arrival: float = 0.0, follows: str | None = None) -> BenchRequest:
    return BenchRequest(rid, 4, prompt_token_ids=(1, 2, 3), arrival_s=arrival, follows=follows)


def test_closed_loop_keeps_n_in_flight_and_continues_conversations_first() -> None:
    requests = [_req("a"), _req("a2", follows="a"), _req("b"), _req("c")]
    d = Dispatcher(requests, concurrency=2)
    assert [r.request_id for r, _ in d.due(0.0)] == ["a", "b"]
    assert d.due(0.1) == []
    d.finished("a", 1.0)
    assert [(r.request_id, t) for r, t in d.due(1.0)] == [("a2", 1.0)]  # the same user carries on
    d.finished("b", 2.0)
    d.finished("a2", 2.0)
    assert [r.request_id for r, _ in d.due(2.0)] == ["c"]
    d.finished("c", 3.0)
    assert d.done


def test_open_loop_releases_on_arrival_and_follow_ups_after_think_time() -> None:
    requests = [_req("a", 0.0), _req("b", 1.5), _req("a2", 0.25, follows="a")]
    d = Dispatcher(requests)
    assert [r.request_id for r, _ in d.due(0.0)] == ["a"]
    assert d.next_time() == 1.5
    d.finished("a", 1.0)
    assert d.next_time() == 1.25
    assert [(r.request_id, t) for r, t in d.due(2.0)] == [("a2", 1.25), ("b", 1.5)]  # due times, not send time


def test_apply_load_gives_poisson_arrivals_to_first_turns_only() -> None:
    requests = [_req("a"), _req("a2", 0.5, follows="a"), _req("b")]
    loaded = apply_load(requests, LoadPattern(request_rate=2.0), seed=3)
    assert loaded[0].arrival_s == 0.0 and loaded[2].arrival_s > 0 and loaded[1].arrival_s == 0.5


def test_prompt_resolver_builds_follow_ups_from_the_answer_and_clips_to_context() -> None:
    tok = CharTokenizer()
    resolver = PromptResolver(tok, max_model_len=None)
    first = BenchRequest("t1", 4, messages=({"role": "user", "content": "hi"},))
    second = BenchRequest("t2", 4, messages=({"role": "user", "content": "more"},), follows="t1")
    p1 = resolver.resolve(first)
    resolver.answered("t1", "hello")
    p2 = resolver.resolve(second)
    assert tok.decode(p2.token_ids) == "<user>hi</user><assistant>hello</assistant><user>more</user><assistant>"
    assert p2.token_ids[: len(p1.token_ids) - len("<assistant>")] == p1.token_ids[: -len("<assistant>")]
    clipped = clip_to_context(list(range(100)), 80, max_model_len=64, keep_tail=False)
    assert clipped.clipped and clipped.max_tokens == 32 and clipped.token_ids == list(range(32))
    assert clip_to_context([1, 2], 3, 64, False).clipped is False


def test_grounded_tasks_quote_their_passage_and_cycle_the_tasks() -> None:
    spec = WORKLOADS["grounded"](CharTokenizer(), WorkloadOptions(num_requests=48, output_len=32))
    passages = load_grounded_passages()
    assert len(passages) == 16 and {p.kind for p in passages} == {"scene", "code"}
    assert [r.tag for r in spec.requests[:16]] == ["edit"] * 16
    assert {r.tag for r in spec.requests} == {"edit", "extract", "summarise"}
    for index, request in enumerate(spec.requests):
        passage, content = passages[index % 16], request.messages[0]["content"]
        assert content.endswith(passage.text) and request.max_tokens == 32
        if (request.tag == "extract") == (passage.kind == "scene"):  # scene quotes and code edits/summaries
            assert passage.name in content.removesuffix(passage.text)  # the speaker / function is named
