"""llama.cpp's own ``llama-bench`` on a GGUF file: the outside reference for speed and memory on that file.

The comparison is fair when it is the same file and the same thread count,
with llama.cpp's defaults otherwise (memory-mapped weights, its batch
sizes): prompt speed is its ``pp`` test (a P-token prompt on an empty
cache), decode speed its ``tg`` test (N tokens one at a time) after
``depth`` tokens already in the cache, so a TPOT at an 8K context is ``tg``
at depth 8K. Peak resident memory is the child's own (``wait4``), mapped
file pages included, as a user's ``top`` shows it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sagellm.engines.bench.served_peers import find_llama_server, find_llama_tool


@dataclass(frozen=True, slots=True)
class LlamaBenchRun:
    """One ``llama-bench`` test: ``prompt_tokens`` > 0 is a prefill test, else ``gen_tokens`` decoded."""

    prompt_tokens: int
    gen_tokens: int
    depth: int
    threads: int
    tokens_per_s: float
    stddev_tokens_per_s: float
    peak_rss_mib: float
    build: str

    @property
    def ms_per_token(self) -> float:
        return 1000.0 / self.tokens_per_s


def find_llama_bench(explicit: str | None = None) -> Path | None:
    """``llama-bench`` from the build that holds ``llama-server`` (see ``served_peers.find_llama_server``)."""
    server = find_llama_server(explicit)
    return None if server is None else find_llama_tool(server, "llama-bench")


def run_llama_bench(
    binary: Path,
    model: Path,
    threads: int,
    prompt_tokens: int = 0,
    gen_tokens: int = 0,
    depth: int = 0,
    repetitions: int = 3,
    timeout_s: float = 3600.0,
    extra: Sequence[str] = (),
) -> LlamaBenchRun:
    """Run one test (a prefill when ``prompt_tokens``, else a decode) and read its JSON line.

    ``extra``: more ``llama-bench`` flags (``-ctk q8_0 -ctv q8_0 -fa on`` for its 8-bit KV cache)."""
    if (prompt_tokens > 0) == (gen_tokens > 0):
        raise ValueError("one llama-bench test: a prompt length or a generation length, not both")
    command = [str(binary), "-m", str(model), "-t", str(threads), "-p", str(prompt_tokens), "-n", str(gen_tokens)]
    command += ["-d", str(depth), "-r", str(repetitions), "-o", "json", *extra]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
        timer = threading.Timer(timeout_s, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"llama-bench exited {process.returncode}: {stderr.strip()[-600:]}")
    test = json.loads(stdout)[0]
    return LlamaBenchRun(
        prompt_tokens=int(test["n_prompt"]),
        gen_tokens=int(test["n_gen"]),
        depth=int(test.get("n_depth", 0)),
        threads=int(test["n_threads"]),
        tokens_per_s=float(test["avg_ts"]),
        stddev_tokens_per_s=float(test["stddev_ts"]),
        peak_rss_mib=usage.ru_maxrss / 1024,
        build=f"{test.get('build_number', '?')} ({test.get('build_commit', '?')})",
    )


@dataclass(frozen=True, slots=True)
class LlamaServerTimings:
    """One request to ``llama-server``: its own prompt and per-token timings (``timings`` in the reply)."""

    prompt_tokens: int
    prompt_ms: float
    generated_tokens: int
    ms_per_token: float


def llama_server_request(
    server: Path, model: Path, threads: int, prompt_ids: Sequence[int], new_tokens: int, extra: Sequence[str] = ()
) -> LlamaServerTimings:
    """Serve ``prompt_ids`` once (one slot, context just large enough, no prompt cache) and read the timings.

    One prefill gives both TTFT and TPOT, where ``llama-bench`` would prefill the context twice
    (its ``pp`` test, then the depth of its ``tg`` test): at 32K tokens that is ten minutes saved here.
    """
    import httpx

    from sagellm.core.ports import ephemeral_port
    from sagellm.engines.bench.server_process import ServerCommand, running_server

    port = ephemeral_port()
    context = len(prompt_ids) + new_tokens + 16
    argv = (str(server), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-np", "1")
    argv += ("-c", str(context), "-t", str(threads), "-tb", str(threads), *extra)
    with running_server(ServerCommand("llama-server", argv, port)):
        body = {"prompt": list(prompt_ids), "n_predict": new_tokens, "cache_prompt": False, "ignore_eos": True}
        reply = httpx.post(f"http://127.0.0.1:{port}/completion", json=body, timeout=None).json()
    if "timings" not in reply:
        raise RuntimeError(f"llama-server refused the request: {str(reply.get('error', reply))[:600]}")
    timings = reply["timings"]
    return LlamaServerTimings(
        prompt_tokens=int(timings["prompt_n"]),
        prompt_ms=float(timings["prompt_ms"]),
        generated_tokens=int(timings["predicted_n"]),
        ms_per_token=float(timings["predicted_per_token_ms"]),
    )
