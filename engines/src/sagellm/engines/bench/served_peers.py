"""The servers compared side by side, each at its best on this machine, and where to find them.

* ``llama-server``: llama.cpp's own server with parallel slots (continuous
  batching), on the same GGUF. Found by ``--llama-server PATH``, then
  ``$SAGELLM_LLAMA_SERVER``, then ``~/.cache/sagellm-peers/llama.cpp/build/bin``
  (where ``../shared/tools/build_llama_server.sh`` puts it), then ``$PATH``.
* ``vllm``: vLLM's CPU build (``vllm serve``) on the same weights written as
  a Hugging Face directory (:mod:`sagellm.engines.bench.hf_export`). Found by
  ``$SAGELLM_VLLM``, then ``~/.cache/sagellm-peers/vllm-cpu/bin/vllm``
  (``../shared/tools/install_vllm_cpu.sh``), then ``$PATH``.
* ``sagellm``: ``sagellm serve`` itself, with any extra engine flags.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from sagellm.engines.bench.server_process import ServerCommand

PEER_CACHE = Path.home() / ".cache" / "sagellm-peers"
LLAMA_SERVER_ENV = "SAGELLM_LLAMA_SERVER"
VLLM_ENV = "SAGELLM_VLLM"
LLAMA_SERVER_HINT = (
    f"build it with ../shared/tools/build_llama_server.sh (~8 min), then pass --llama-server PATH or set "
    f"{LLAMA_SERVER_ENV}"
)
VLLM_HINT = f"install it with ../shared/tools/install_vllm_cpu.sh, or set {VLLM_ENV} to its vllm executable"
SLOT_CONTEXT = 1024  # tokens each llama-server slot holds: prompts + outputs of these benchmarks fit


def find_llama_server(explicit: str | None = None) -> Path | None:
    """The ``llama-server`` binary (a path to it or to its folder may be given), or None."""
    for candidate in (explicit, os.environ.get(LLAMA_SERVER_ENV), PEER_CACHE / "llama.cpp" / "build" / "bin"):
        if candidate:
            path = Path(candidate)
            path = path / "llama-server" if path.is_dir() else path
            if path.is_file() and os.access(path, os.X_OK):
                return path
    found = shutil.which("llama-server")
    return Path(found) if found else None


def find_llama_tool(server: Path, tool: str) -> Path | None:
    """A sibling of ``llama-server`` from the same build (``llama-perplexity``), or None."""
    path = server.with_name(tool)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def find_vllm() -> Path | None:
    for candidate in (os.environ.get(VLLM_ENV), PEER_CACHE / "vllm-cpu" / "bin" / "vllm"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    found = shutil.which("vllm")
    return Path(found) if found else None


def llama_server_command(binary: Path, gguf: Path, port: int, slots: int, threads: int) -> ServerCommand:
    """``slots`` parallel sequences (``-np``), continuously batched, ``SLOT_CONTEXT`` tokens each."""
    argv: tuple[str, ...] = (str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port))
    argv += ("-np", str(slots), "-c", str(slots * SLOT_CONTEXT), "-t", str(threads), "-tb", str(threads))
    return ServerCommand("llama-server", argv, port)


def vllm_command(binary: Path, hf_dir: Path, port: int, kv_cache_gb: int = 4, dtype: str = "bfloat16") -> ServerCommand:
    """vLLM's CPU build at its defaults on the model's Hugging Face directory, in ``dtype`` (its best on this
    CPU: bf16 where the CPU has bf16 instructions, float32 where bf16 is emulated)."""
    argv: tuple[str, ...] = (str(binary), "serve", str(hf_dir), "--dtype", dtype, "--max-model-len", "2048")
    argv += ("--host", "127.0.0.1", "--port", str(port))
    # VLLM_TARGET_DEVICE: the install script's metadata stub hides the "+cpu" version vLLM detects its platform by.
    env = {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gb), "VLLM_TARGET_DEVICE": "cpu"}
    return ServerCommand("vllm", argv, port, env=env, startup_timeout_s=900.0)


def sagellm_command(port: int, engine_args: Sequence[str] = ()) -> ServerCommand:
    argv = (sys.executable, "-m", "sagellm.engines.cli.main", "serve", "--port", str(port), "--log-level", "warning")
    return ServerCommand("sagellm", (*argv, *engine_args), port)
