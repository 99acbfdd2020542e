"""The coordinator: starts the prefill and decode workers, feeds them requests, collects their events.

It lives in the caller's process and computes nothing: it puts jobs on the
prefill worker's queue and reads one event queue both workers write to.
KV goes worker to worker over the KV transfer channel, never through here::

    caller ── submit ──► PDCoordinator ── PrefillJob ──► prefill worker (1 thread)
                              ▲                              │ KV blocks (shared memory)
                              │ FirstToken                   ▼
                              └──────── DecodeStep ◄── decode worker (1 thread)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import secrets
import time
from collections import deque
from typing import Any

from sagellm.core.config import SageLLMConfig, load_config
from sagellm.core.errors import ConfigError, InvalidRequestError
from sagellm.core.ports import ephemeral_port
from sagellm.core.types import SamplingParams
from sagellm.engines.disagg.decode_worker import decode_main
from sagellm.engines.disagg.messages import (
    DECODE,
    PREFILL,
    Abort,
    Event,
    PrefillJob,
    Reset,
    Shutdown,
    StatsRequest,
    WorkerFailed,
    WorkerReady,
    WorkerStats,
)
from sagellm.engines.disagg.prefill_worker import prefill_main
from sagellm.engines.disagg.remote_workers import RemoteWorkers, join_remote_workers
from sagellm.engines.disagg.worker_error import WorkerError
from sagellm.engines.engine.worker_link import RemoteWorker
from sagellm.engines.runtime.grammar import grammar_of

DEFAULT_CHANNEL = "shm"
START_TIMEOUT_S = 600.0  # loading a model on a busy 2-core machine can take a while
FULL_TIMEOUT_S = 30.0  # prefill waits this long for staging room before letting the decode side recompute


def disagg_config(config: SageLLMConfig, namespace: str) -> SageLLMConfig:
    """``config`` made fit for disaggregation: a receiving channel in a private namespace, prefix caching on.

    The prefix cache is how KV changes hands (see ``handoff``): without it
    the prefill side could not find the prompt's blocks, nor the decode
    side's admission the adopted ones.
    """
    if not config.prefix_cache.enabled:
        raise ConfigError("disaggregated prefill/decode hands KV over through the prefix cache: enable prefix_cache")
    section = config.kv_transfer
    implementation = DEFAULT_CHANNEL if section.implementation == "none" else section.implementation
    options = {"full_timeout_s": FULL_TIMEOUT_S, **section.options, "namespace": namespace}
    if implementation == "tcp" and "peers" not in options:  # both workers on this host, each on a free port
        options["peers"] = {role: f"127.0.0.1:{ephemeral_port()}" for role in (PREFILL, DECODE)}
    update = {"kv_transfer": section.model_copy(update={"implementation": implementation, "options": options})}
    return config.model_copy(update=update)


def worker_config(config: SageLLMConfig, num_threads: int) -> dict[str, Any]:
    """The worker's config as plain data (it crosses a process boundary), with its own thread count."""
    data = config.model_dump()
    data["model"]["num_threads"] = num_threads
    return data


class PDCoordinator:
    """Two worker processes and the queues between them; ``submit`` requests, ``poll`` events.

    ``prefill_threads`` / ``decode_threads``: torch threads of each worker
    (one each on a 2-core machine: one core per phase).
    """

    def __init__(
        self,
        config: SageLLMConfig | None = None,
        *,
        prefill_threads: int = 1,
        decode_threads: int = 1,
        start_timeout_s: float = START_TIMEOUT_S,
        remote: RemoteWorkers | None = None,
        **sections: Any,
    ) -> None:
        self.namespace = f"pd-{os.getpid()}-{secrets.token_hex(3)}"
        self.config = disagg_config(config or load_config(**sections), self.namespace)
        if remote is not None:
            remote.check(self.config)
        ctx = mp.get_context("spawn")  # fork would copy the caller's torch threads and locks
        self._events: Any = ctx.Queue()
        self._backlog: deque[Event] = deque()
        self.info: dict[str, dict[str, Any]] = {}
        self._remote: dict[str, RemoteWorker] = {}
        local = [role for role in (DECODE, PREFILL) if remote is None or role not in remote.roles]
        self._inboxes: dict[str, Any] = {role: ctx.Queue() for role in local}
        threads = {PREFILL: prefill_threads, DECODE: decode_threads}
        mains = {PREFILL: prefill_main, DECODE: decode_main}
        self._procs = {
            role: ctx.Process(
                target=mains[role],
                args=(worker_config(self.config, threads[role]), self._inboxes[role], self._events),
                name=f"sagellm-{role}",
                daemon=True,
            )
            for role in local
        }
        self._closed = False
        for proc in self._procs.values():  # the decode worker first: it must listen before the first transfer
            proc.start()
        try:
            if remote is not None:
                self._remote = join_remote_workers(remote, self.config, self._events, start_timeout_s)
                self._inboxes.update(self._remote)
            self._await_ready(start_timeout_s)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PDCoordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def worker_pids(self) -> list[int]:
        return [proc.pid for proc in self._procs.values() if proc.pid is not None]

    def submit(self, request_id: str, prompt: str | tuple[int, ...], sampling: SamplingParams) -> None:
        """Queue a prompt for the prefill worker; a grammar is refused here, since the workers' engines
        rebuild sampling parameters without it and would return an unconstrained reply."""
        if grammar_of(sampling) is not None:
            raise InvalidRequestError("structured output is not supported by the disaggregated engine")
        self._inboxes[PREFILL].put(PrefillJob(request_id, prompt, sampling))

    def abort(self, request_ids: list[str], roles: tuple[str, ...] = (PREFILL, DECODE)) -> None:
        """Tell ``roles``' workers to drop these requests (the decode side also refuses their KV in flight)."""
        for role in roles:
            self._inboxes[role].put(Abort(tuple(request_ids)))

    def poll(self, timeout: float | None) -> list[Event]:
        """Events that arrived, waiting up to ``timeout`` for the first; WorkerError if a worker failed."""
        events = list(self._backlog)
        self._backlog.clear()
        if not events:
            try:
                events.append(self._events.get(timeout=timeout))
            except queue.Empty:
                self.check_alive()
                return []
        events.extend(self._drain())
        for event in events:
            if isinstance(event, WorkerFailed) and event.request_id is None:
                raise WorkerError(f"the {event.role} worker failed:\n{event.error}")
        return events

    def stats(self, reset: bool = True, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
        """Both workers' counters (events arriving meanwhile are kept for the next ``poll``)."""
        for inbox in self._inboxes.values():
            inbox.put(StatsRequest(reset))
        got: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(got) < 2:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError(f"workers did not report their stats within {timeout} s")
            try:
                event = self._events.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                self.check_alive()
                continue
            if isinstance(event, WorkerStats):
                got[event.role] = event.stats
            else:
                self._backlog.append(event)
        return got

    def reset(self, timeout: float = START_TIMEOUT_S) -> None:
        """Both workers start over with fresh engines (empty pools and prefix caches); call it between runs.

        Only while nothing is in flight: requests still running are lost.
        """
        for inbox in self._inboxes.values():
            inbox.put(Reset())
        ready: set[str] = set()
        deadline = time.monotonic() + timeout
        while len(ready) < 2:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError(f"workers did not come back from a reset within {timeout:.0f} s")
            try:
                event = self._events.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                self.check_alive()
                continue
            if isinstance(event, WorkerFailed) and event.request_id is None:
                raise WorkerError(f"the {event.role} worker failed during a reset:\n{event.error}")
            if isinstance(event, WorkerReady):
                ready.add(event.role)
                self.info[event.role] = event.info
            else:
                self._backlog.append(event)

    def close(self, timeout: float = 60.0) -> None:
        """Stop the prefill worker first (it waits for its transfers to be accepted), then the decode worker."""
        if self._closed:
            return
        self._closed = True
        for role in (PREFILL, DECODE):
            if role in self._remote:
                self._stop_remote(self._remote[role], timeout)
                continue
            proc = self._procs[role]
            if proc.is_alive():
                self._inboxes[role].put(Shutdown())
                proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for role in self._procs:
            self._inboxes[role].close()
            self._inboxes[role].cancel_join_thread()
        self._events.close()
        self._events.cancel_join_thread()

    @staticmethod
    def _stop_remote(worker: RemoteWorker, timeout: float) -> None:
        """Ask it to shut down and wait until it hangs up (it then exits), then drop the link."""
        worker.put(Shutdown())
        worker.disconnected.wait(timeout)
        worker.close()

    def _await_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.info) < 2:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError(f"workers not ready after {timeout:.0f} s")
            try:
                event = self._events.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                self.check_alive()
                continue
            if isinstance(event, WorkerFailed):
                raise WorkerError(f"the {event.role} worker failed to start:\n{event.error}")
            if isinstance(event, WorkerReady):
                self.info[event.role] = event.info

    def _drain(self) -> list[Event]:
        out = []
        try:
            while True:
                out.append(self._events.get_nowait())
        except queue.Empty:
            return out

    def check_alive(self) -> None:
        """WorkerError if a worker process has exited (or a remote one hung up) while the coordinator is open."""
        if self._closed:
            return
        for role, proc in self._procs.items():
            if not proc.is_alive():
                raise WorkerError(f"the {role} worker exited unexpectedly (exit code {proc.exitcode})")
        for role, worker in self._remote.items():
            if worker.disconnected.is_set():
                raise WorkerError(f"the {role} worker at {worker.peer} disconnected")
