"""The llama.cpp reference runner: reads llama-bench's JSON, reports its failures, and runs a real build."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from sagellm.engines.bench.llama_bench import find_llama_bench, llama_server_request, run_llama_bench
from sagellm.engines.bench.served_peers import find_llama_server
from sagellm.engines.model.default_model import default_model_path

LINE = {
    "build_commit": "abc123",
    "build_number": 7000,
    "n_threads": 2,
    "n_prompt": 0,
    "n_gen": 16,
    "n_depth": 512,
    "avg_ts": 80.0,
    "stddev_ts": 1.5,
}


def fake_binary(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "llama-bench"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_reads_the_json_line_and_passes_the_test_shape(tmp_path: Path) -> None:
    args_file = tmp_path / "args"
    binary = fake_binary(tmp_path, f"echo \"$@\" > {args_file}\necho '{json.dumps([LINE])}'")
    run = run_llama_bench(binary, Path("m.gguf"), 2, gen_tokens=16, depth=512, extra=("-fa", "1"))
    assert (run.gen_tokens, run.depth, run.threads, run.tokens_per_s) == (16, 512, 2, 80.0)
    assert run.ms_per_token == pytest.approx(12.5) and run.build == "7000 (abc123)" and run.peak_rss_mib > 0
    assert args_file.read_text().split() == (
        ["-m", "m.gguf", "-t", "2", "-p", "0", "-n", "16", "-d", "512", "-r", "3", "-o", "json", "-fa", "1"]
    )


def test_a_failed_run_raises_with_its_message(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, "echo 'error: failed to load model' >&2\nexit 1")
    with pytest.raises(RuntimeError, match="failed to load model"):
        run_llama_bench(binary, Path("missing.gguf"), 1, prompt_tokens=8)


def test_one_test_per_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        run_llama_bench(tmp_path / "llama-bench", Path("m.gguf"), 1, prompt_tokens=8, gen_tokens=8)


@pytest.mark.skipif(find_llama_bench() is None, reason="no llama.cpp build (../shared/tools/build_llama_server.sh)")
def test_a_real_build_decodes_the_default_model() -> None:
    binary = find_llama_bench()
    assert binary is not None
    run = run_llama_bench(binary, default_model_path(), 1, gen_tokens=4, repetitions=1)
    assert run.gen_tokens == 4 and run.tokens_per_s > 0 and run.peak_rss_mib > 10


@pytest.mark.skipif(find_llama_server() is None, reason="no llama.cpp build (../shared/tools/build_llama_server.sh)")
def test_one_llama_server_request_reports_prompt_and_token_timings() -> None:
    server = find_llama_server()
    assert server is not None
    timings = llama_server_request(server, default_model_path(), 1, list(range(100, 140)), 4)
    assert timings.prompt_tokens == 40 and timings.generated_tokens == 4
    assert timings.prompt_ms > 0 and timings.ms_per_token > 0
