"""The peers ``sagellm bench --compare`` can run next to sageLLM, by name.

``auto`` means transformers (fp32, its default) plus llama.cpp when
llama-cpp-python is installed; a peer named explicitly must be available
or the command fails before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sagellm.core.errors import InvalidRequestError
from sagellm.engines.bench.backends.base import Backend, GenerationOptions
from sagellm.engines.bench.backends.llama_cpp import INSTALL_HINT as LLAMA_CPP_HINT
from sagellm.engines.bench.backends.llama_cpp import llama_cpp_installed
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


PEERS: dict[str, Callable[[PeerRequest], Backend]] = {
    "transformers": _transformers("float32"),
    "transformers-bf16": _transformers("bfloat16"),
    "llama.cpp": _llama_cpp,
}


def parse_peers(text: str) -> tuple[list[str], list[str]]:
    """Peer names to run, and notes on peers ``auto`` left out; InvalidRequestError on unknown or missing peers."""
    if text.strip().lower() == AUTO:
        if llama_cpp_installed():
            return ["transformers", "llama.cpp"], []
        return ["transformers"], [f"llama.cpp left out: llama-cpp-python is not installed ({LLAMA_CPP_HINT})"]
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in PEERS]
    if not names or unknown:
        raise InvalidRequestError(
            f"--compare: unknown peer(s) {', '.join(unknown) or '(none given)'} (known: {AUTO}, {', '.join(PEERS)})"
        )
    if "llama.cpp" in names and not llama_cpp_installed():
        raise InvalidRequestError(f"--compare llama.cpp: llama-cpp-python is not installed ({LLAMA_CPP_HINT})")
    return names, []


def build_peer(name: str, peer: PeerRequest) -> Backend:
    return PEERS[name](peer)
