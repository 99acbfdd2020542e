"""What both worker processes share: start-up, the message loop's plumbing, failure reporting.

A worker is a spawned process holding one whole engine (model, pool,
prefix cache, scheduler) with its own torch thread count, plus one end of
the KV transfer channel. It talks to the coordinator through two
multiprocessing queues: ``inbox`` (jobs and control messages) and
``events`` (everything it reports); a remote worker (``sagellm pd-worker``)
gets the same two over its link instead (worker_link). It exits on
:class:`Shutdown`, or by itself when the coordinator process is gone.
"""

from __future__ import annotations

import os
import queue
import signal
import traceback
from collections.abc import Callable
from typing import Any

import torch

from sagellm.core.config import SageLLMConfig
from sagellm.core.protocols import DuplexKVChannel
from sagellm.engines.disagg.channel_api import open_channel
from sagellm.engines.disagg.messages import WorkerFailed, WorkerReady
from sagellm.engines.engine.builder import DTYPE_NAMES, assemble_engine, build_engine
from sagellm.engines.engine.llm_engine import LLMEngine
from sagellm.engines.engine.slots import DISAGGREGATED_KINDS
from sagellm.engines.engine.worker_link import LinkInbox

POLL_S = 0.05  # an idle worker re-checks its inbox (and whether its parent lives) this often


class WorkerBase:
    role = ""

    def __init__(self, config_data: dict[str, Any], inbox: Any, events: Any) -> None:
        self.config = SageLLMConfig(**config_data)
        self.inbox = inbox
        self.events = events
        # A spawned worker outlives nothing: it leaves when its parent does. A remote one has its link for that.
        self.parent = None if isinstance(inbox, LinkInbox) else os.getppid()
        self.engine: LLMEngine = build_engine(self.config, show_progress=False, wired=DISAGGREGATED_KINDS)
        self.channel: DuplexKVChannel = open_channel(self.config, self.engine.kv.pool, self.role)

    def reset(self) -> None:
        """A fresh engine around the same model (and a channel over its new pool); then announce again."""
        self.channel.close()
        self.engine = assemble_engine(self.config, self.engine.runner.model, self.engine.tokenizer)
        self.channel = open_channel(self.config, self.engine.kv.pool, self.role)
        self.announce()

    def announce(self) -> None:
        layout = self.engine.kv.pool.layout
        info = {
            "model": self.engine.model_name,
            "dtype": DTYPE_NAMES.get(self.engine.runner.model.dtype, str(self.engine.runner.model.dtype)),
            "threads": torch.get_num_threads(),
            "block_size": layout.block_size,
            "num_blocks": layout.num_blocks,
            "bytes_per_block": layout.bytes_per_block,
            "max_model_len": self.engine.max_model_len,
            "vocab_size": self.engine.model_config.vocab_size,
        }
        self.events.put(WorkerReady(self.role, os.getpid(), info))

    def messages(self, block: bool) -> list[Any]:
        """Everything in the inbox now; with ``block``, wait (up to POLL_S) for at least one."""
        out = []
        try:
            out.append(self.inbox.get(timeout=POLL_S) if block else self.inbox.get_nowait())
            while True:
                out.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        if (
            not out and self.parent is not None and os.getppid() != self.parent
        ):  # orphaned: the coordinator died without saying goodbye
            raise SystemExit(0)
        return out


def run_worker(role: str, events: Any, body: Callable[[], None]) -> None:
    """Run a worker's body; report a crash (with its traceback) instead of dying silently.

    SIGTERM (``Process.terminate``, a ``timeout`` killing the process group)
    becomes a normal exit, so exit-time cleanup still runs: above all the
    channel's finalizer, which unlinks its shared-memory staging segment.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        body()
    except SystemExit:
        raise
    except BaseException:
        events.put(WorkerFailed(role, traceback.format_exc()))
        raise SystemExit(1) from None


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
