"""``sagellm ci-gate``: direction-aware comparisons, thresholds files and exit codes on hand-made reports."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from sagellm.engines.bench.gate import Check, ReportMismatch, compare
from sagellm.engines.bench.machine_reference import KIND, measure_reference, reference_score_of, reference_section
from sagellm.engines.bench.thresholds import DEFAULT_THRESHOLDS, Threshold, load_thresholds
from sagellm.engines.cli.main import main as sagellm

BASELINES = Path(__file__).resolve().parents[1] / "benchmarks" / "baselines"


def report(**overrides: float | None) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "avg_ttft_ms": 100.0,
        "p99_ttft_ms": 200.0,
        "avg_tpot_ms": 20.0,
        "output_throughput_tps": 50.0,
        "avg_prefix_hit_rate": 0.5,
        "error_rate": 0.0,
        "goodput_rps": None,
    }
    metrics.update(overrides)
    return {
        "schema_version": 1,
        "model": "tiny",
        "target": {"backend": "engine", "device": "cpu", "dtype": "float32"},
        "runs": [{"name": "Q1", "shape": {"input_len": 32, "output_len": 16}, "metrics": metrics}],
        "summary": dict(metrics),
    }


def by_metric(checks: list[Check], run: str = "Q1") -> dict[str, Check]:
    return {c.threshold.metric: c for c in checks if c.run == run}


def test_directions_and_allowances() -> None:
    checks = by_metric(
        compare(
            report(),
            report(avg_ttft_ms=150.0, avg_tpot_ms=40.0, output_throughput_tps=25.0, avg_prefix_hit_rate=0.42),
            DEFAULT_THRESHOLDS,
        )
    )
    assert checks["avg_ttft_ms"].status == "ok"  # +50 % <= 80 %
    assert checks["avg_tpot_ms"].status == "REGRESSED"  # +100 %
    assert checks["output_throughput_tps"].status == "ok"  # -50 % <= 60 %
    assert checks["avg_prefix_hit_rate"].status == "REGRESSED"  # -0.08 absolute > 0.05
    assert checks["goodput_rps"].status == "n/a"  # null on both sides never fails
    assert checks["avg_tpot_ms"].change_pct == pytest.approx(100.0)


def test_improvements_never_fail() -> None:
    better = report(avg_ttft_ms=10.0, avg_tpot_ms=1.0, output_throughput_tps=500.0, avg_prefix_hit_rate=0.9)
    assert not any(c.failed for c in compare(report(), better, DEFAULT_THRESHOLDS))


def test_threshold_edge_cases() -> None:
    errors = Threshold("error_rate", higher_is_better=False, allowance=0.0, relative=False)
    assert errors.passes(0.0, 0.0) and not errors.passes(0.0, 0.01)
    relative = Threshold("x", higher_is_better=False, allowance=0.5, relative=True)
    assert relative.passes(0.0, 0.0) and not relative.passes(0.0, 1.0)  # from zero: any rise is infinite


def test_mismatched_reports_are_refused() -> None:
    other_shape = report()
    other_shape["runs"][0]["shape"] = {"input_len": 64, "output_len": 16}
    for current, reason in [
        ({**report(), "schema_version": 2}, "schema"),
        ({**report(), "model": "big"}, "models differ"),
        ({**report(), "runs": [{"name": "Q9", "shape": {}, "metrics": {}}]}, "no run name"),
        (other_shape, "workload shape"),
    ]:
        with pytest.raises(ReportMismatch, match=reason):
            compare(report(), current, DEFAULT_THRESHOLDS)


def on_machine(data: dict[str, Any], cpu: str, isa: list[str], peak: str) -> dict[str, Any]:
    data["environment"] = {"cpu": {"model": cpu, "isa": isa}, "cuda_device": None}
    data["notes"] = {"mfu": peak}
    return data


EPYC = ("AMD EPYC", ["avx2", "avx512f", "avx512_bf16"], "cpu avx512_bf16, bfloat16: 320 GFLOP/s/core x 2 cores (table)")
XEON = ("Intel Xeon", ["avx2", "avx512f", "avx512_bf16", "amx_bf16"], "cpu amx_bf16, bfloat16: 2560 GFLOP/s/core x 2")


def test_peak_derived_metrics_are_gated_only_on_the_same_machine() -> None:
    """The Xeon run is faster, yet its MFU reads 80 % lower: its table peak (AMX) is 8x the EPYC's."""
    base = on_machine(report(mfu=0.05, output_throughput_tps=50.0), *EPYC)
    faster_elsewhere = on_machine(report(mfu=0.01, output_throughput_tps=80.0), *XEON)
    checks = by_metric(compare(base, faster_elsewhere, DEFAULT_THRESHOLDS))
    assert checks["mfu"].status == "n/a (other machine)" and not checks["mfu"].failed
    assert checks["output_throughput_tps"].status == "ok"  # throughput is still gated across machines
    slower_here = on_machine(report(mfu=0.01, output_throughput_tps=10.0), *EPYC)
    checks = by_metric(compare(base, slower_here, DEFAULT_THRESHOLDS))
    assert checks["mfu"].failed and checks["output_throughput_tps"].failed


def test_checked_in_thresholds_match_the_defaults() -> None:
    assert load_thresholds(BASELINES / "thresholds.yaml") == list(DEFAULT_THRESHOLDS)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("metrics: [1, 2]", "metrics"),
        ("metrics:\n  avg_ttft_ms: {better: sideways, relative: 0.5}", "better"),
        ("metrics:\n  avg_ttft_ms: {better: lower}", "exactly one"),
        ("metrics:\n  avg_ttft_ms: {better: lower, relative: -1}", ">= 0"),
        ("metrics: {a: [", "YAML"),
    ],
)
def test_bad_thresholds_files(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=reason):
        load_thresholds(path)


def write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "base.json", report())
    same = write(tmp_path, "same.json", report(avg_ttft_ms=120.0))
    worse = write(tmp_path, "worse.json", report(avg_ttft_ms=400.0))
    thresholds = BASELINES / "thresholds.yaml"

    assert sagellm(["ci-gate", "--baseline", str(base), "--current", str(same), "--thresholds", str(thresholds)]) == 0
    out = capsys.readouterr().out
    assert "| run | metric | baseline | current | change | threshold | status |" in out
    assert "| Q1 | avg_ttft_ms | 100 | 120 | +20.0% | +80% | ok |" in out
    assert "ci-gate: pass" in out

    xeon = write(tmp_path, "xeon.json", on_machine(report(mfu=0.01), *XEON))
    epyc = write(tmp_path, "epyc.json", on_machine(report(mfu=0.05), *EPYC))
    assert sagellm(["ci-gate", "--baseline", str(epyc), "--current", str(xeon)]) == 0
    out = capsys.readouterr().out
    assert "baseline ran on: AMD EPYC (avx2, avx512f, avx512_bf16), device cpu; peak: cpu avx512_bf16" in out
    assert "current ran on:  Intel Xeon (avx2, avx512f, avx512_bf16, amx_bf16)" in out
    assert "| Q1 | mfu | 0.05 | 0.01 | -80.0% | -60% | n/a (other machine) |" in out
    assert "other machine: mfu not gated" in out

    assert sagellm(["ci-gate", "--baseline", str(base), "--current", str(worse)]) == 1
    out = capsys.readouterr().out
    assert "**REGRESSED**" in out and "Q1/avg_ttft_ms" in out and "all/avg_ttft_ms" in out

    missing = tmp_path / "missing.json"
    assert sagellm(["ci-gate", "--baseline", str(base), "--current", str(missing)]) == 2
    assert "cannot read" in capsys.readouterr().err
    garbage = write(tmp_path, "garbage.json", "{not json")
    assert sagellm(["ci-gate", "--baseline", str(garbage), "--current", str(base)]) == 2
    assert "not JSON" in capsys.readouterr().err
    other = copy.deepcopy(report())
    other["model"] = "other"
    assert sagellm(["ci-gate", "--baseline", str(base), "--current", str(write(tmp_path, "o.json", other))]) == 2
    assert "models differ" in capsys.readouterr().err


def test_checked_in_baseline_passes_against_itself(capsys: pytest.CaptureFixture[str]) -> None:
    baseline = BASELINES / "ci.json"
    assert sagellm(["ci-gate", "--baseline", str(baseline), "--current", str(baseline)]) == 0
    assert "ci-gate: pass" in capsys.readouterr().out


def with_reference(report_: dict[str, Any], score: float, kind: str = KIND) -> dict[str, Any]:
    return {**report_, "reference": {"kind": kind, "score": score}}


def test_speed_is_judged_at_the_baseline_machines_pace() -> None:
    """A machine half as fast today is no regression; the same engine 25 % slower on the same machine is."""
    baseline = with_reference(report(), 100.0)
    slower_machine = with_reference(report(output_throughput_tps=25.0, avg_tpot_ms=40.0, avg_ttft_ms=200.0), 50.0)
    checks = compare(baseline, slower_machine, DEFAULT_THRESHOLDS)
    assert not [c for c in checks if c.failed]
    assert by_metric(checks, "all")["output_throughput_tps"].current == pytest.approx(50.0)
    assert by_metric(checks, "all")["avg_tpot_ms"].current == pytest.approx(20.0)
    slower_engine = with_reference(report(output_throughput_tps=37.5, avg_tpot_ms=26.7), 100.0)
    failed = {(c.run, c.threshold.metric) for c in compare(baseline, slower_engine, DEFAULT_THRESHOLDS) if c.failed}
    assert failed == {("all", "output_throughput_tps"), ("all", "avg_tpot_ms")}  # each run alone stays within 60 %


def test_without_a_reference_on_both_sides_speed_is_compared_as_measured() -> None:
    checks = compare(with_reference(report(), 100.0), report(output_throughput_tps=25.0), DEFAULT_THRESHOLDS)
    assert by_metric(checks, "all")["output_throughput_tps"].current == 25.0
    assert by_metric(checks, "all")["output_throughput_tps"].failed


def test_references_of_another_kind_are_not_compared() -> None:
    """A baseline timed with another reference (the bf16 GEMM of before) says nothing about today's score."""
    old = with_reference(report(), 454.0, kind="gemm 16x576x1536")
    checks = compare(old, with_reference(report(output_throughput_tps=25.0), 100.0), DEFAULT_THRESHOLDS)
    assert by_metric(checks, "all")["output_throughput_tps"].current == 25.0


def test_the_reference_is_measured_and_its_median_counts() -> None:
    measured = measure_reference()
    assert measured["score"] == pytest.approx(math.sqrt(measured["int8_gops"] * measured["tiny_op_kops"]))
    assert measured["int8_gops"] > 0 and measured["tiny_op_kops"] > 0
    samples = [{**measured, "score": score} for score in (100.0, 40.0, 110.0)]
    section = reference_section(samples)
    assert section["score"] == 100.0 and len(section["samples"]) == 3
    assert reference_score_of({"reference": section}) == 100.0
    with pytest.raises(ValueError):
        reference_section([])


def test_summary_thresholds_apply_to_the_summary_only(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "metrics:\n  avg_tpot_ms: {better: lower, relative: 0.6}\n"
        "summary:\n  output_throughput_tps: {better: higher, relative: 0.1}\n"
    )
    thresholds = load_thresholds(path)
    checks = compare(report(), report(output_throughput_tps=40.0), thresholds)
    assert {(c.run, c.threshold.metric) for c in checks if c.threshold.metric == "output_throughput_tps"} == {
        ("all", "output_throughput_tps")
    }
    assert by_metric(checks, "all")["output_throughput_tps"].failed
