"""The bench report: JSON schema fields, the Markdown table, sweeps, and CLI argument errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from sagellm.engines.bench.backends.base import TargetInfo
from sagellm.engines.bench.bench_session import BenchSession
from sagellm.engines.bench.load_pattern import LoadPattern
from sagellm.engines.bench.markdown import report_markdown
from sagellm.engines.bench.metrics import SLO, MetricContext
from sagellm.engines.bench.record import BackendStats, RequestRecord, RunOutcome
from sagellm.engines.bench.report import SCHEMA_VERSION, read_report, write_json
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.sweep import SweepPlan
from sagellm.engines.bench.workloads.base import RunSpec
from sagellm.engines.cli.main import main as sagellm

DESIGN_FIELDS = (  # the names sageLLM users know (DESIGN.md section 5)
    "avg_ttft_ms",
    "p95_ttft_ms",
    "avg_tbt_ms",
    "output_throughput_tps",
    "request_throughput_rps",
    "avg_prefix_hit_rate",
    "evict_count",
    "spec_accept_rate",
    "peak_mem_mb",
    "error_rate",
)
MORE_FIELDS = tuple(f"{p}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2e") for p in ("avg", "p50", "p90", "p99"))
MORE_FIELDS += ("goodput_rps", "preemptions", "comm_share", "mfu", "cost_per_1m_output_tokens", "num_clipped")


class SimulatedBackend:
    """Answers every request after ``ttft`` s, then one token per ``tpot`` s, more slowly as the rate rises."""

    def __init__(self, ttft: float = 0.05, tpot: float = 0.01) -> None:
        self.ttft, self.tpot = ttft, tpot
        self.info = TargetInfo("engine", "tiny", "cpu", "float32", 64, settings={"threads": 1})
        self.tokenizer: Any = None

    def warmup(self) -> None:
        pass

    def run(self, label: str, requests: Sequence[BenchRequest], concurrency: int | None) -> RunOutcome:
        records = []
        rate = len(requests) / max(max(r.arrival_s for r in requests), 1e-9)
        slowdown = 1.0 + (rate / 4.0 if concurrency is None else 0.0)  # queueing grows with the offered rate
        for r in requests:
            first = r.arrival_s + self.ttft * slowdown
            times = [first + k * self.tpot for k in range(r.max_tokens)]
            records.append(
                RequestRecord(
                    r.request_id,
                    r.arrival_s,
                    len(r.prompt_token_ids),
                    r.max_tokens,
                    times,
                    r.max_tokens,
                    0,
                    times[-1],
                    "length",
                )
            )
        return RunOutcome(records, max(t.end_s or 0 for t in records), BackendStats(0.0, 0, 0, 100.0))


def spec(name: str = "Q1", count: int = 4) -> RunSpec:
    requests = [BenchRequest(f"{name}-{i}", 5, prompt_token_ids=(1, 2, 3)) for i in range(count)]
    return RunSpec(name, requests, LoadPattern(concurrency=1), {"input_len": 3, "output_len": 5}, "short Q&A")


def test_report_has_every_field(tmp_path: Path) -> None:
    session = BenchSession(SimulatedBackend(), MetricContext(slo=SLO(ttft_ms=100)))
    session.run([spec("Q1"), spec("Q2")])
    report = session.report({"preset": "ci"}, elapsed_s=1.0)
    assert report["schema_version"] == SCHEMA_VERSION
    for key in ("tool", "created_utc", "model", "environment", "target", "config", "notes", "runs", "summary"):
        assert key in report, key
    env = report["environment"]
    for key in ("python", "torch", "sagellm", "device", "cpu"):
        assert key in env, key
    assert "sagellm-engines" in env["sagellm"] and "isa" in env["cpu"]
    assert [r["name"] for r in report["runs"]] == ["Q1", "Q2"]
    for metrics in [r["metrics"] for r in report["runs"]] + [report["summary"]]:
        for key in DESIGN_FIELDS + MORE_FIELDS:
            assert key in metrics, key
    assert report["runs"][0]["metrics"]["avg_ttft_ms"] == pytest.approx(50.0)
    assert report["summary"]["num_requests"] == 8
    assert "comm_share" in report["notes"]
    path = tmp_path / "bench.json"
    write_json(report, path)
    assert read_report(path) == json.loads(path.read_text())

    table = report_markdown(report)
    assert "| run | shape | load | reqs |" in table and "| Q1 | 3->5 | 1 conc. | 4 |" in table and "**all**" in table


def test_machine_reference_is_sampled_around_every_run_only_when_asked() -> None:
    plain = BenchSession(SimulatedBackend(), MetricContext(slo=SLO(ttft_ms=100)))
    plain.run([spec("Q1")])
    assert "reference" not in plain.report({})
    session = BenchSession(SimulatedBackend(), MetricContext(slo=SLO(ttft_ms=100)), machine_reference=True)
    session.run([spec("Q1"), spec("Q2")])
    reference = session.report({})["reference"]
    assert len(reference["samples"]) == 3 and reference["score"] > 0  # before Q1, before Q2, after Q2


def test_sweep_finds_the_highest_rate_meeting_the_slo() -> None:
    session = BenchSession(SimulatedBackend(ttft=0.05), MetricContext(slo=SLO(ttft_ms=100)))
    result = session.sweep(spec("synthetic", count=8), SweepPlan(start=1.0, factor=2.0, max_points=5, refine_steps=1))
    rates = [p.rate for p in result.points]
    assert rates[:3] == [1.0, 2.0, 4.0]  # 4 req/s doubles TTFT to the limit; 8 misses; 6 is the bisection
    best = result.max_rate_meeting_slo
    assert best is not None and 2.0 <= best < 8.0
    assert all(p.met == (p.rate <= best) for p in result.points)
    sweep_json = session.report({"workload": "synthetic"})["sweep"]
    assert sweep_json["max_rate_meeting_slo"] == best and len(sweep_json["points"]) == len(rates)
    assert "max rate meeting the SLO" in report_markdown(session.report({"workload": "synthetic"}))


@pytest.mark.parametrize(
    "argv",
    [
        ["--concurrency", "0"],
        ["--request-rate", "-1"],
        ["--preset", "huge"],
        ["--workload", "nope"],
        ["--concurrency", "2", "--request-rate", "3"],
        ["--preset", "ci", "--workload", "synthetic"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        sagellm(["bench", *argv])
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sweep"], "--sweep needs --workload"),
        (["--workload", "synthetic", "--sweep"], "--slo-ttft-ms"),
        (["--tasks", "Q1,Q9"], "unknown task(s) Q9"),
        (["--plot"], "--out"),
        (["--slo-attainment", "2"], "(0, 1]"),
    ],
)
def test_inconsistent_arguments_exit_2_before_loading_anything(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sagellm(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        sagellm(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--preset", "--workload", "--concurrency", "--request-rate", "--sweep", "--backend", "--base-url"):
        assert option in text
    assert "default" in text and "Q1 32->64 x5" in text


def test_plot_needs_matplotlib(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert sagellm(["bench", "--plot", "--out", str(tmp_path)]) == 2
    assert "pip install 'sagellm-engines[plot]'" in capsys.readouterr().err


def test_plots_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    session = BenchSession(SimulatedBackend(), MetricContext(slo=SLO(ttft_ms=100)))
    session.sweep(spec("synthetic", count=6), SweepPlan(start=1.0, max_points=3, refine_steps=0))
    paths = session.plot(tmp_path)
    assert [p.name for p in paths] == ["latency_cdf.png", "sweep_throughput.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
