"""Run one peer's side of ``--compare`` in a fresh process.

Peers in the benchmark's own process disturb each other: after
transformers has run, torch's and llama.cpp's OpenMP thread pools fight
over the same two cores and llama.cpp's prefills got 5-10x slower
(measured: its TTFT p99 on the Q5 burst went from 3.5 s alone to 16-20 s).
A spawned process per peer starts clean, as each side of
``engines/benchmarks/bench_engine.py`` does; it gets the same runs (token
ids, loads, seed) and sends back its report.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from sagellm.core.errors import SageLLMError
from sagellm.engines.bench.backends.base import GenerationOptions
from sagellm.engines.bench.bench_session import BenchSession
from sagellm.engines.bench.load_pattern import LoadPattern
from sagellm.engines.bench.metrics import MetricContext
from sagellm.engines.bench.workloads.base import RunSpec


class PeerFailedError(SageLLMError):
    """A peer could not be built or crashed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class PeerJob:
    """Everything the child needs (picklable: no model, no tokenizer -- it loads its own)."""

    name: str
    model: str | None
    generation: GenerationOptions
    max_batch: int
    show_progress: bool
    threads: int
    specs: list[RunSpec]
    load: LoadPattern | None
    context: MetricContext
    seed: int
    warmup: bool
    config: dict[str, Any]


def run_peer(job: PeerJob) -> dict[str, Any]:
    """The peer's report; PeerFailedError when the child reports an error or dies."""
    spawn = multiprocessing.get_context("spawn")
    receiver, sender = spawn.Pipe(duplex=False)
    child = spawn.Process(target=_child_main, args=(job, sender), name=f"sagellm-peer-{job.name}", daemon=True)
    child.start()
    sender.close()
    try:
        kind, payload = receiver.recv()
    except EOFError:
        child.join()
        raise PeerFailedError(f"peer {job.name} exited without a report (exit code {child.exitcode})") from None
    finally:
        receiver.close()
    child.join()
    if kind != "ok":
        raise PeerFailedError(f"peer {job.name}: {payload}")
    return dict(payload)


def _child_main(job: PeerJob, sender: Connection) -> None:
    try:
        sender.send(("ok", _run(job)))
    except SageLLMError as exc:
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
    except Exception as exc:  # noqa: BLE001 -- crossing a process boundary: a message, not a traceback
        sender.send(("error", f"unexpected {type(exc).__name__}: {exc}"))
    finally:
        sender.close()


def _run(job: PeerJob) -> dict[str, Any]:
    import torch

    from sagellm.engines.bench.peers import PeerRequest, build_peer
    from sagellm.engines.bench.tokenizer_source import load_tokenizer
    from sagellm.engines.model.loader import resolve_model_path

    torch.set_num_threads(job.threads)
    started = time.perf_counter()
    tokenizer, model_config = load_tokenizer(job.model)
    request = PeerRequest(
        resolve_model_path(job.model), tokenizer, model_config, job.generation, job.max_batch, job.show_progress,
        threads=job.threads,
    )  # fmt: skip
    with request.resources:  # a served peer's process stops here
        peer = build_peer(job.name, request)
        if job.warmup:
            peer.warmup()
        session = BenchSession(peer, job.context, seed=job.seed)
        session.run(job.specs, job.load)
        return session.report(job.config, elapsed_s=time.perf_counter() - started)
