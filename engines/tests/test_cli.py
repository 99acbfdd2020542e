"""The `sagellm` command line: help, exit codes, and a real generation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sagellm.engines.cli.main import EXIT_BAD_INPUT, main


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sagellm.engines.cli.main", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=300,
    )


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("generate", "chat", "info"):
        assert command in out


def test_subcommand_help_explains_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    assert "--max-tokens" in out and "--temperature" in out and "embedded SmolLM2" in out


def test_no_command_is_bad_input() -> None:
    assert main([]) == EXIT_BAD_INPUT


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--max-tokens", "-3", "hi"],
        ["generate", "--temperature", "-1", "hi"],
        ["generate", "--top-p", "0", "hi"],
        ["generate"],  # no prompt
        ["generate", "--file", "/nonexistent/prompt.txt"],
        ["generate", "--model", "/nonexistent/model.gguf", "hi"],
        ["generate", "--rope-scaling", "{yarn", "hi"],
        ["generate", "--rope-scaling", '["yarn"]', "hi"],
        ["generate", "--rope-scaling", '{"rope_type": "su", "factor": 2}', "hi"],
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("sagellm: error:") and "Traceback" not in err


def test_unknown_option_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--no-such-flag", "hi"])
    assert exc.value.code == 2


def test_corrupt_model_file_exits_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    assert main(["generate", "--model", str(bad), "hi"]) == EXIT_BAD_INPUT


def test_unknown_implementation_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--eviction", "no-such-policy", "--max-tokens", "2", "hi"]) == EXIT_BAD_INPUT
    assert "no-such-policy" in capsys.readouterr().err


def test_info_json_reports_modules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "sagellm-core" in data["packages"]
    assert "paged" in data["implementations"]["kv_pool"]
    assert "hash_chain" in data["implementations"]["prefix_cache"]
    slots = set(data["implementations"])
    assert len(slots) == 15 and "domestic_interconnect" in slots and "speculative_decoding" in slots
    assert data["device"] in ("cpu", "cuda")


def test_generate_streams_real_text() -> None:
    done = run_cli("generate", "--temperature", "0", "--max-tokens", "8", "The capital of France is")
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout
    assert "tokens" in done.stderr  # the summary line


def test_generate_json_batch_and_stdin_file() -> None:
    done = run_cli(
        "generate",
        "--json",
        "--chat",
        "--temperature",
        "0",
        "--max-tokens",
        "6",
        "Say hi",
        "--file",
        "-",
        stdin="Name a colour.",
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["prompt"] for r in rows] == ["Say hi", "Name a colour."]
    assert all(r["text"] and r["finish_reason"] in ("stop", "length") for r in rows)


def test_chat_keeps_history_and_exits_cleanly() -> None:
    done = run_cli("chat", "--temperature", "0", "--max-tokens", "12", stdin="My name is Ada.\n/reset\nHello\n/exit\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("assistant>") == 2
