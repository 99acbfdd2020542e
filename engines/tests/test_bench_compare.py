"""``sagellm bench --compare``: static-cohort peers, ratios, and the CLI around them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from sagellm.core.types import SamplingParams
from sagellm.engines.bench.backends.base import GenerationOptions, TargetInfo
from sagellm.engines.bench.backends.cohort import CohortBackend, CohortMember
from sagellm.engines.bench.backends.hf_transformers import TransformersBackend
from sagellm.engines.bench.backends.llama_cpp import llama_cpp_installed
from sagellm.engines.bench.comparison import build_comparison, comparison_markdown, ratio
from sagellm.engines.bench.peers import parse_peers
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.served_peers import find_llama_server, find_vllm
from sagellm.engines.cli.main import main
from sagellm.engines.engine.device import cpu_has_fast_bf16

STEP_S = 0.002


class CountingBackend(CohortBackend):
    """Emits token ``len(prompt) + k`` at step k, one step per ``STEP_S``; records cohort sizes."""

    def __init__(self, tokenizer: Any, max_batch: int = 4, generation: GenerationOptions | None = None) -> None:
        info = TargetInfo(backend="counting", model="none", device="cpu")
        super().__init__(tokenizer, info, max_batch, generation or GenerationOptions(), eos_token_ids=(7,))
        self.cohorts: list[list[str]] = []

    def _generate(self, cohort: list[CohortMember], now: Callable[[], float]) -> None:
        self.cohorts.append([m.record.request_id for m in cohort])
        step = 0
        while not all(m.done for m in cohort):
            time.sleep(STEP_S)
            self._take_all(cohort, [len(m.prompt) + step for m in cohort], now())
            step += 1


def requests(count: int, max_tokens: int = 3, prompt_len: int = 4) -> list[BenchRequest]:
    return [BenchRequest(f"r{i}", max_tokens, prompt_token_ids=tuple(range(1, prompt_len + 1))) for i in range(count)]


def test_closed_loop_runs_cohorts_of_the_concurrency(llm: Any) -> None:
    backend = CountingBackend(llm.tokenizer, max_batch=8)
    outcome = backend.run("x", requests(5), concurrency=2)
    assert backend.cohorts == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    for record in outcome.records:
        assert record.ok and record.num_output_tokens == 3 and record.finish_reason == "length"
    first, _, third = outcome.records[0], outcome.records[1], outcome.records[2]
    assert third.start_s >= first.end_s  # r2 waited for the whole first cohort
    assert outcome.duration_s >= outcome.records[-1].end_s  # type: ignore[operator]


def test_open_loop_arrivals_join_the_next_cohort(llm: Any) -> None:
    backend = CountingBackend(llm.tokenizer, max_batch=8)
    early = BenchRequest("early", 20, prompt_token_ids=(1, 2, 3))
    late = BenchRequest("late", 2, prompt_token_ids=(1, 2, 3), arrival_s=0.005)
    outcome = backend.run("x", [early, late], concurrency=None)
    assert backend.cohorts == [["early"], ["late"]]
    late_record = outcome.records[1]
    assert late_record.ttft_s is not None and late_record.ttft_s > 15 * STEP_S  # queued behind "early"


def test_rows_end_at_their_own_max_tokens_and_at_eos_when_asked(llm: Any) -> None:
    backend = CountingBackend(llm.tokenizer, max_batch=4, generation=GenerationOptions(ignore_eos=False))
    short = BenchRequest("short", 2, prompt_token_ids=(1,) * 4)  # emits 4, 5: length
    eos = BenchRequest("eos", 9, prompt_token_ids=(1,) * 6)  # emits 6, 7 (EOS): stop
    long = BenchRequest("long", 5, prompt_token_ids=(1,) * 8)
    outcome = backend.run("x", [short, eos, long], concurrency=3)
    by_id = {r.request_id: r for r in outcome.records}
    assert (by_id["short"].num_output_tokens, by_id["short"].finish_reason) == (2, "length")
    assert (by_id["eos"].num_output_tokens, by_id["eos"].finish_reason) == (2, "stop")
    assert (by_id["long"].num_output_tokens, by_id["long"].finish_reason) == (5, "length")


def test_follow_up_turn_waits_for_its_answer(llm: Any) -> None:
    backend = CountingBackend(llm.tokenizer, max_batch=4)
    first = BenchRequest("t1", 2, messages=({"role": "user", "content": "Hello there"},))
    second = BenchRequest("t2", 2, messages=({"role": "user", "content": "And?"},), follows="t1")
    outcome = backend.run("x", [first, second], concurrency=4)
    t1, t2 = outcome.records
    assert backend.cohorts == [["t1"], ["t2"]]
    assert t2.start_s >= t1.end_s and t2.num_prompt_tokens > t1.num_prompt_tokens


def test_transformers_peer_matches_our_greedy_tokens(hf_model: Any, llm: Any, prompts: list[list[int]]) -> None:
    info = TargetInfo(backend="transformers", model="m", device="cpu", max_model_len=2048)
    backend = TransformersBackend(hf_model, llm.tokenizer, info, max_batch=4)
    from sagellm.engines.bench.record import RequestRecord

    member = CohortMember(RequestRecord("a", 0.0), prompts[0], 6)
    start = time.perf_counter()
    backend._generate([member], lambda: time.perf_counter() - start)
    greedy = SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
    ours = llm.generate([prompts[0]], greedy)[0].token_ids
    assert member.output == list(ours)
    assert member.record.token_times_s == sorted(member.record.token_times_s) and member.done


def test_transformers_peer_pads_a_cohort_and_stops_each_row(hf_model: Any, llm: Any, prompts: list[list[int]]) -> None:
    info = TargetInfo(backend="transformers", model="m", device="cpu", max_model_len=2048)
    backend = TransformersBackend(hf_model, llm.tokenizer, info, max_batch=4)
    reqs = [
        BenchRequest("a", 3, prompt_token_ids=tuple(prompts[1])),
        BenchRequest("b", 5, prompt_token_ids=tuple(prompts[2][:7])),
    ]
    outcome = backend.run("x", reqs, concurrency=2)
    a, b = outcome.records
    assert (a.num_output_tokens, b.num_output_tokens) == (3, 5)
    assert a.ttft_s is not None and b.ttft_s is not None and abs(a.ttft_s - b.ttft_s) < 1e-6  # one prefill
    assert outcome.stats.peak_mem_mb is not None and outcome.stats.kv_hit_rate is None


def test_ratios_say_how_many_times_better_we_are() -> None:
    assert ratio(200.0, 50.0, higher_is_better=True) == 4.0
    assert ratio(100.0, 400.0, higher_is_better=False) == 4.0
    assert ratio(None, 3.0, True) is None and ratio(3.0, 0.0, True) is None


def test_comparison_table_has_every_side_and_ratio() -> None:
    def report(backend: str, tps: float, ttft: float) -> dict[str, Any]:
        metrics = {"output_throughput_tps": tps, "p50_ttft_ms": ttft, "p99_ttft_ms": 2 * ttft}
        return {"target": {"backend": backend}, "runs": [{"name": "Q1", "metrics": metrics}], "summary": metrics}

    comparison = build_comparison(report("engine", 300, 100), [report("transformers", 100, 400)])
    assert comparison["sides"] == ["sageLLM", "transformers"]
    (row,) = comparison["runs"]
    assert row["ratios"]["transformers"]["output_throughput_tps"] == 3.0
    assert row["ratios"]["transformers"]["p99_ttft_ms"] == 4.0
    table = comparison_markdown(comparison)
    assert "x vs transformers" in table and "| Q1 | out tok/s | 300.000 | 100.000 | 3.00 |" in table


def test_peer_names_are_checked() -> None:
    names, notes = parse_peers("auto")
    assert names[0] == "transformers" and "llama.cpp" not in names  # one sequence at a time: only when named
    assert ("llama-server" in names) == (find_llama_server() is not None)
    assert ("vllm" in names) == (find_vllm() is not None)
    assert ("transformers-bf16" in names) == cpu_has_fast_bf16()
    assert len(names) + len(notes) == 4  # every peer left out says why
    assert parse_peers("transformers-bf16, transformers")[0] == ["transformers-bf16", "transformers"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--compare", "sglang"], "unknown peer(s) sglang"),
        (["--compare", ",,"], "unknown peer(s) (none given)"),
        (["--compare", "--workload", "synthetic", "--sweep", "--slo-ttft-ms", "9"], "does not combine with --sweep"),
    ],
)
def test_bad_compare_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(llama_cpp_installed(), reason="llama-cpp-python is installed here")
def test_llama_cpp_named_but_missing_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--compare", "llama.cpp"]) == 2
    assert "llama-cpp-python is not installed" in capsys.readouterr().err


def test_cli_compare_prints_the_side_by_side_table(
    model_path: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")
    argv = ["bench", "--preset", "ci", "--tasks", "Q1", "--compare", "transformers", "--no-progress"]
    argv += ["--model", str(model_path), "--dtype", "float32", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "## Side by side" in out and "x vs transformers" in out
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["compare"]["sides"] == ["sageLLM", "transformers"]
    ratios = report["compare"]["summary"]["ratios"]["transformers"]
    assert ratios["output_throughput_tps"] > 0
    (peer,) = report["peer_reports"]
    assert peer["target"]["backend"] == "transformers" and peer["summary"]["num_completed"] > 0


def test_a_peer_that_cannot_start_fails_with_its_reason(tmp_path: Any) -> None:
    from sagellm.engines.bench.metrics import MetricContext
    from sagellm.engines.bench.peer_process import PeerFailedError, PeerJob, run_peer

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    job = PeerJob(
        name="transformers",
        model=str(broken),
        generation=GenerationOptions(),
        max_batch=2,
        show_progress=False,
        threads=1,
        specs=[],
        load=None,
        context=MetricContext(),
        seed=0,
        warmup=False,
        config={},
    )
    with pytest.raises(PeerFailedError, match="peer transformers: .*broken.gguf"):
        run_peer(job)


@pytest.mark.skipif(
    find_llama_server() is None, reason="no llama-server build found (../shared/tools/build_llama_server.sh)"
)
def test_llama_server_peer_runs_as_a_server_with_parallel_slots(
    model_path: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--preset", "ci", "--tasks", "Q5", "--compare", "llama-server", "--no-progress"]
    argv += ["--model", str(model_path), "--out", str(tmp_path)]
    assert main(argv) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["compare"]["sides"] == ["sageLLM", "llama-server"]
    (peer,) = report["peer_reports"]
    assert peer["summary"]["num_completed"] == peer["summary"]["num_requests"] > 1
    assert "-np" in peer["target"]["server"]  # continuous batching, not one sequence at a time
