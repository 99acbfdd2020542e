"""``python -m sagellm.lifetime_predictor.evaluate``: a table on the bundled trace; bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagellm.lifetime_predictor.evaluate import EXIT_BAD_INPUT, main


def test_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval.json"
    assert main(["--limit", "600", "--horizons", "30", "--mode", "online", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| online (online) | at use | 30 |" in table and "baseline: reused before" in table
    assert "| look-ahead table (learns from test answers) | at eviction | 30 |" in table
    rows = json.loads(out.read_text())["rows"]
    assert {r["asked"] for r in rows} == {"at use", "at eviction"}
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["num"] > 0 for r in rows)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--implementation", "no-such"], "no-such"),
        (["--trace", "/no/such/trace.jsonl"], "cannot read"),
        (["--trace", "mooncake-nope"], "bundled traces: mooncake-synthetic"),
        (["--min-depth", "-1"], "min_depth"),
        (["--train-share", "1.5"], "train_share"),
        (["--option", "batch_size"], "KEY=VALUE"),
        (["--option", "batch_size=0"], "batch_size"),
    ],
)
def test_bad_input_exits_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_BAD_INPUT
    assert needle in capsys.readouterr().err


def test_bad_trace_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "hash_ids": [1]}\nnot json\n')
    assert main(["--trace", str(trace)]) == EXIT_BAD_INPUT
    assert "t.jsonl:2" in capsys.readouterr().err


def test_horizons_past_the_trace_are_left_out_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--limit", "600", "--horizons", "30,100000", "--never-after", "100000", "--mode", "online"]) == 0
    captured = capsys.readouterr()
    assert "| 100000 |" not in captured.out and "| 30 |" in captured.out
    assert "T = 100000 s" in captured.err
