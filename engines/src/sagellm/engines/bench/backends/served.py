"""Peers that run as servers (``llama-server``, ``vllm serve``), measured through the same streaming client.

Each starts as a child process on a free port, is sent the run's exact
token ids over its OpenAI-compatible API (``--send-token-ids``), and is
stopped when the peer's process ends (the ``ExitStack`` it is given).
llama-server gets as many parallel slots as the largest batch the runs use,
so it batches continuously, as its users run it; vLLM runs at its defaults.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from sagellm.core.errors import NotSupportedError
from sagellm.core.ports import ephemeral_port
from sagellm.engines.bench.backends.base import GenerationOptions
from sagellm.engines.bench.backends.openai import OpenAIBackend
from sagellm.engines.bench.hf_export import export_hf_dir
from sagellm.engines.bench.served_peers import (
    LLAMA_SERVER_HINT,
    PEER_CACHE,
    VLLM_HINT,
    find_llama_server,
    find_vllm,
    llama_server_command,
    vllm_command,
)
from sagellm.engines.bench.server_process import ServerCommand, running_server
from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.engine.device import cpu_dtype, dtype_name
from sagellm.engines.model.config import ModelConfig


def served_peer(
    kind: str,
    model_path: Path,
    tokenizer: TokenizerLike,
    model_config: ModelConfig,
    generation: GenerationOptions,
    slots: int,
    threads: int,
    resources: ExitStack,
    show_progress: bool = False,
) -> OpenAIBackend:
    """Start the ``kind`` server (``llama-server`` or ``vllm``) for ``resources``' lifetime; its client."""
    command = peer_command(kind, model_path, slots, threads)
    base_url = resources.enter_context(running_server(command))
    backend = OpenAIBackend(
        base_url, tokenizer, model_config, generation=generation, send_token_ids=True, show_progress=show_progress
    )
    settings = {**backend.info.settings, "server": " ".join(command.argv)}
    backend.info = replace(backend.info, backend=kind, settings=settings)  # reports name the peer, not "openai"
    return backend


def peer_command(kind: str, model_path: Path, slots: int, threads: int) -> ServerCommand:
    """How to start the ``kind`` peer on ``model_path``; NotSupportedError (saying why) where it cannot run."""
    if kind == "llama-server":
        binary = find_llama_server()
        if binary is None:
            raise NotSupportedError(f"llama-server not found: {LLAMA_SERVER_HINT}")
        if not model_path.is_file():
            raise NotSupportedError(f"llama-server reads GGUF files only, not the directory {model_path}")
        return llama_server_command(binary, model_path, ephemeral_port(), slots, threads)
    if kind == "vllm":
        vllm = find_vllm()
        if vllm is None:
            raise NotSupportedError(f"vLLM not found: {VLLM_HINT}")
        hf_dir = export_hf_dir(model_path, PEER_CACHE) if model_path.is_file() else model_path
        return vllm_command(vllm, hf_dir, ephemeral_port(), dtype=dtype_name(cpu_dtype()))
    raise NotSupportedError(f"no served peer named {kind!r}")
