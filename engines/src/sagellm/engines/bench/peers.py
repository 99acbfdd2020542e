"""The peers ``sagellm bench --compare`` can run next to sageLLM, by name.

``auto`` means each peer at its best where it is available: transformers at
fp32 (its default) and at bf16 (on CPUs with native bf16), llama.cpp's own
server with parallel slots (``llama-server``, when a build is found), and
vLLM's CPU build (``vllm``, when installed). ``llama.cpp`` (llama-cpp-python,
one sequence at a time) runs only when named. A peer named explicitly must
be available or the command fails before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from sagellm.core.errors import InvalidRequestError
from sagellm.engines.bench.backends.base import Backend, GenerationOptions
from sagellm.engines.bench.backends.llama_cpp import INSTALL_HINT as LLAMA_CPP_HINT
from sagellm.engines.bench.backends.llama_cpp import llama_cpp_installed
from sagellm.engines.bench.served_peers import LLAMA_SERVER_HINT, VLLM_HINT, find_llama_server, find_vllm
from sagellm.engines.engine.device import cpu_has_fast_bf16
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.tokenizer import Tokenizer

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class PeerRequest:
    """Everything a peer backend is built from."""

    model_path: Path
    tokenizer: Tokenizer
    model_config: ModelConfig
    generation: GenerationOptions
    max_batch: int
    show_progress: bool
    threads: int = 2
    resources: ExitStack = field(default_factory=ExitStack)  # closed when the peer's runs are done (servers)


def _transformers(dtype: str) -> Callable[[PeerRequest], Backend]:
    def build(peer: PeerRequest) -> Backend:
        from sagellm.engines.bench.backends.hf_transformers import TransformersBackend

        return TransformersBackend.load(
            peer.model_path,
            peer.tokenizer,
            peer.model_config,
            dtype=dtype,
            max_batch=peer.max_batch,
            generation=peer.generation,
            show_progress=peer.show_progress,
        )

    return build


def _llama_cpp(peer: PeerRequest) -> Backend:
    from sagellm.engines.bench.backends.llama_cpp import LlamaCppBackend

    return LlamaCppBackend.load(
        peer.model_path, peer.tokenizer, peer.model_config, generation=peer.generation, show_progress=peer.show_progress
    )


def _served(kind: str) -> Callable[[PeerRequest], Backend]:
    def build(peer: PeerRequest) -> Backend:
        from sagellm.engines.bench.backends.served import served_peer

        return served_peer(
            kind, peer.model_path, peer.tokenizer, peer.model_config, peer.generation,
            slots=peer.max_batch, threads=peer.threads, resources=peer.resources, show_progress=peer.show_progress,
        )  # fmt: skip

    return build


PEERS: dict[str, Callable[[PeerRequest], Backend]] = {
    "transformers": _transformers("float32"),
    "transformers-bf16": _transformers("bfloat16"),
    "llama-server": _served("llama-server"),
    "vllm": _served("vllm"),
    "llama.cpp": _llama_cpp,
}


def parse_peers(text: str) -> tuple[list[str], list[str]]:
    """Peer names to run, and notes on peers ``auto`` left out; InvalidRequestError on unknown or missing peers."""
    if text.strip().lower() == AUTO:
        return auto_peers()
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in PEERS]
    if not names or unknown:
        raise InvalidRequestError(
            f"--compare: unknown peer(s) {', '.join(unknown) or '(none given)'} (known: {AUTO}, {', '.join(PEERS)})"
        )
    if "llama.cpp" in names and not llama_cpp_installed():
        raise InvalidRequestError(f"--compare llama.cpp: llama-cpp-python is not installed ({LLAMA_CPP_HINT})")
    if "llama-server" in names and find_llama_server() is None:
        raise InvalidRequestError(f"--compare llama-server: not found ({LLAMA_SERVER_HINT})")
    if "vllm" in names and find_vllm() is None:
        raise InvalidRequestError(f"--compare vllm: not found ({VLLM_HINT})")
    return names, []


def auto_peers() -> tuple[list[str], list[str]]:
    """Every peer available here, and a note for each one left out."""
    names, notes = ["transformers"], []
    if cpu_has_fast_bf16():
        names.append("transformers-bf16")
    else:
        notes.append("transformers-bf16 left out: this CPU has no native bf16 (it would measure emulation)")
    if find_llama_server() is not None:
        names.append("llama-server")
    else:
        notes.append(f"llama-server left out: not found ({LLAMA_SERVER_HINT})")
    if find_vllm() is not None:
        names.append("vllm")
    else:
        notes.append(f"vllm left out: not found ({VLLM_HINT})")
    return names, notes


def build_peer(name: str, peer: PeerRequest) -> Backend:
    return PEERS[name](peer)
