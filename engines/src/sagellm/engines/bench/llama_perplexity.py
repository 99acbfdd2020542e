"""Run llama.cpp's ``llama-perplexity`` on a text and read its final estimate: the outside reference.

Its method (chunks of ``n_ctx`` tokens, the second half of each scored) is
what :mod:`sagellm.engines.engine.served_perplexity` reproduces through the
serving path, so the two numbers on the same GGUF and text are comparable.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sagellm.core.errors import SageLLMError

FINAL = re.compile(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)")
CHUNKS = re.compile(r"calculating perplexity over (\d+) chunks")


class LlamaPerplexityError(SageLLMError):
    """llama-perplexity failed or printed no final estimate; the message quotes its output."""


@dataclass(frozen=True, slots=True)
class LlamaPerplexity:
    perplexity: float
    stderr: float
    num_chunks: int


def llama_perplexity(
    binary: Path, gguf: Path, text_file: Path, n_ctx: int, max_chunks: int | None = None, threads: int = 2
) -> LlamaPerplexity:
    argv = [str(binary), "-m", str(gguf), "-f", str(text_file), "-c", str(n_ctx), "-b", str(n_ctx)]
    argv += ["-t", str(threads), "-tb", str(threads)]
    if max_chunks is not None:
        argv += ["--chunks", str(max_chunks)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    final, chunks = FINAL.search(output), CHUNKS.search(output)
    if done.returncode != 0 or final is None or chunks is None:
        raise LlamaPerplexityError(f"{' '.join(argv)} (exit {done.returncode}): {output[-1500:]}")
    return LlamaPerplexity(float(final.group(1)), float(final.group(2)), int(chunks.group(1)))
