"""What the chain-of-thought driver needs of the engine that runs it (``LLMEngine`` provides it).

The driver decides when to fork, cancel or end sequences; the engine owns
the running and waiting lists, the detokenizers and the metrics, so these
few calls are the whole of what passes between them.
"""

from __future__ import annotations

from typing import Protocol

from sagellm.core.types import SequenceState
from sagellm.engines.runtime.kv_manager import KVManager
from sagellm.engines.tokenizer import Tokenizer


class ReasoningHost(Protocol):
    kv: KVManager
    tokenizer: Tokenizer
    max_model_len: int

    def spawn(self, seq: SequenceState) -> None:
        """Run a forked sequence (its KV already shared): straight into the running batch, no admission."""
        ...

    def drop(self, request_id: str) -> bool:
        """Stop a sequence and free its KV, emitting nothing; False if it is unknown or done."""
        ...

    def end(self, request_id: str) -> None:
        """Finish a sequence now ("stop"), freeing its KV: its last output is the driver's to send."""
        ...

    def generated_text(self, request_id: str) -> str:
        """Everything a running sequence has generated, as text (some of it maybe not sent yet)."""
        ...
