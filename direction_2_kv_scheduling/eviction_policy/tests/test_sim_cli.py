"""``python -m sagellm.eviction_policy.sim``: tables and JSON on success, exit 2 and one line on bad input."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sagellm.eviction_policy.sim import load_trace, synthetic_trace
from sagellm.eviction_policy.sim.cli import main, parse_options
from sagellm.eviction_policy.sim.progress import Progress
from sagellm.eviction_policy.sim.trace import TraceError


def _write_trace(path: Path, num_requests: int = 60) -> Path:
    rows = [
        {"timestamp": int(r.timestamp_s * 1000), "input_length": 512 * len(r.hash_ids), "hash_ids": list(r.hash_ids)}
        for r in synthetic_trace(num_requests=num_requests).requests
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def test_prints_the_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = _write_trace(tmp_path / "t.jsonl")
    out = tmp_path / "out" / "r.json"
    argv = ["--trace", str(trace), "--cache-sizes", "5%", "20", "--policies", "lru,arc", "--json", str(out)]
    assert main([*argv, "--option", "arc.capacity=30", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| lru | arc | belady |" in printed and "unique blocks" in printed
    data = json.loads(out.read_text())
    assert [row["capacity_blocks"] for row in data["rows"]] == sorted(row["capacity_blocks"] for row in data["rows"])
    assert set(data["rows"][0]["results"]) == {"lru", "arc", "belady"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no requests"),
        ("{not json\n", "not JSON"),
        ("[1, 2]\n", "expected a JSON object"),
        ('{"timestamp": 0}\n', "'hash_ids' must be a list of integers"),
        ('{"timestamp": 0, "hash_ids": [1, "a"]}\n', "'hash_ids' must be a list of integers"),
        ('{"hash_ids": [1]}\n', "'timestamp' (ms) must be a number"),
    ],
)
def test_bad_format_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert main(["--trace", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "extra",
    [
        ["--policies", "lru,nope"],
        ["--cache-sizes", "zero"],
        ["--option", "lru"],
        ["--option", "lru.nope=1"],
        ["--limit", "0"],
        ["--predictor", "no-such-predictor"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]) -> None:
    trace = _write_trace(tmp_path / "t.jsonl", num_requests=10)
    assert main(["--trace", str(trace), "--no-progress", *extra]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_missing_or_unreadable_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--trace", str(tmp_path / "absent.jsonl")]) == 2
    assert "cannot read trace" in capsys.readouterr().err
    assert main(["--trace", str(tmp_path)]) == 2
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    assert main(["--trace", str(binary)]) == 2
    with pytest.raises(TraceError):
        load_trace(binary)


def test_gzipped_traces_read_like_plain_ones(tmp_path: Path) -> None:
    plain = _write_trace(tmp_path / "t.jsonl", num_requests=20)
    packed = tmp_path / "t.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert load_trace(packed) == load_trace(plain)
    not_gzip = tmp_path / "fake.jsonl.gz"
    not_gzip.write_text("{}\n")
    with pytest.raises(TraceError, match="not a text file"):
        load_trace(not_gzip)


def test_module_entry_point_runs(tmp_path: Path) -> None:
    trace = _write_trace(tmp_path / "t.jsonl", num_requests=20)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sagellm.eviction_policy.sim",
            "--trace",
            str(trace),
            "--cache-sizes",
            "10",
            "--policies",
            "lru",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0 and "| lru | belady |" in run.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "sagellm.eviction_policy.sim", "--trace", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "error: cannot read trace" in bad.stderr


def test_parse_options_reads_json_values() -> None:
    assert parse_options(["s3fifo.ghost_ratio=3", "s3fifo.tail_first=false", "arc.capacity=7"]) == {
        "s3fifo": {"ghost_ratio": 3, "tail_first": False},
        "arc": {"capacity": 7},
    }


def test_plain_progress_without_tqdm(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import fails: plain lines
    with Progress(10, "replaying x") as bar:
        for _ in range(10):
            bar.update()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "replaying x: 10%" and lines[-1] == "replaying x: 100%" and len(lines) == 10
