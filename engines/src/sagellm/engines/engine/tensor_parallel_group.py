"""Rank 0's handle on the other tensor-parallel ranks: start them, feed them each forward, stop them.

Workers are ``python -m sagellm.engines.engine.tensor_parallel_main``
processes, not ``multiprocessing`` children: a spawned child re-imports the
parent's ``__main__``, which re-runs a user's unguarded script (and fails
outright under ``python -`` or a notebook). Each worker inherits one end of
a socket pair, which carries its setup and then every forward's inputs;
when either side dies the other reads end-of-file.

Ranks listed in ``collective_ops.remote_ranks`` are not spawned: they run
on other hosts (``sagellm tp-worker``) and dial rank 0 at
``collective_ops.worker_listen`` (remote_ranks.py); their link carries the
same setup and forwards. A worker that fails to start is reported with its traceback; one that dies
later is noticed at the next forward (its connection closes) and the step
fails with RankFailedError naming the rank, rather than rank 0 waiting in a
collective forever (the backend's timeout bounds that wait too). ``close``
stops every worker and is safe to call twice.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection, wait

from sagellm.core.config import SageLLMConfig
from sagellm.core.types import KVLayout
from sagellm.engines.engine.forward_wire import STOP, encode_forward
from sagellm.engines.engine.remote_ranks import join_remote_ranks
from sagellm.engines.engine.tensor_parallel_worker import CONTROL_FD_ENV, ERROR, RANK_ENV, READY, WorkerSetup
from sagellm.engines.model.forward_args import ForwardArgs
from sagellm.engines.model.parallel_ops import RankFailedError

JOIN_TIMEOUT_S = 5.0
REMOTE_JOIN_TIMEOUT_S = 600.0  # how long rank 0 waits for ranks started by hand on other hosts to dial in
WORKER_MODULE = "sagellm.engines.engine.tensor_parallel_main"


class TensorParallelGroup:
    """Ranks 1..N-1, each behind a connection: a spawned process's socket pair, or a remote rank's link."""

    def __init__(
        self,
        processes: list[subprocess.Popen[bytes] | None],
        pipes: list[Connection],
        num_blocks: int,
        peers: dict[int, str] | None = None,
    ) -> None:
        self.processes = processes  # None for a rank on another host
        self.pipes = pipes
        self.num_blocks = num_blocks  # the most blocks any engine over this group may use
        self.peers = peers or {}  # rank -> the address a remote rank dialled from
        self.closed = False

    @classmethod
    def start(cls, config: SageLLMConfig, init_method: str, rank0_layout: KVLayout) -> TensorParallelGroup:
        """Start ranks 1..N-1 (and wait for the remote ones to dial in); they then join the rendezvous at
        ``init_method`` and load their shards meanwhile."""
        setup = WorkerSetup(config.model_dump_json(), init_method, rank0_layout)
        remote = set(config.collective_ops.remote_ranks)
        processes: list[subprocess.Popen[bytes] | None] = []
        pipes: dict[int, Connection] = {}
        for rank in range(1, config.collective_ops.world_size):
            if rank in remote:
                processes.append(None)
                continue
            ours, theirs = socket.socketpair()
            with theirs:
                processes.append(_spawn(rank, theirs.fileno()))
            pipes[rank] = Connection(ours.detach())
            pipes[rank].send(setup)
        peers: dict[int, str] = {}
        if remote:
            try:
                joined = join_remote_ranks(config, sorted(remote), REMOTE_JOIN_TIMEOUT_S)
            except BaseException:
                cls(processes, list(pipes.values()), rank0_layout.num_blocks).close()
                raise
            for rank, (conn, peer) in joined.items():
                conn.send(setup)
                pipes[rank], peers[rank] = conn, peer
        return cls(processes, [pipes[rank] for rank in sorted(pipes)], rank0_layout.num_blocks, peers)

    def wait_ready(self, timeout_s: float) -> None:
        """Block until every rank has loaded; a failed or silent rank raises with its reason."""
        deadline = time.monotonic() + timeout_s
        for rank, pipe in enumerate(self.pipes, start=1):
            if not wait([pipe], timeout=max(0.0, deadline - time.monotonic())):
                raise RankFailedError(f"tensor-parallel rank {rank} sent nothing within {timeout_s:.0f} s of starting")
            try:
                kind, text = pipe.recv()
            except EOFError:
                raise RankFailedError(self._failure(rank)) from None
            if kind == ERROR:
                raise RankFailedError(text)
            if kind != READY:
                raise RankFailedError(f"tensor-parallel rank {rank} sent {kind!r} while starting")

    def mirror(self, args: ForwardArgs) -> None:
        """Hand one forward's inputs to every other rank (installed as the rank-0 model's ``mirror``)."""
        message = encode_forward(args)
        for rank, pipe in enumerate(self.pipes, start=1):
            if pipe.poll():  # a worker only ever writes when it failed (or its end closed)
                raise RankFailedError(self._failure(rank))
            try:
                pipe.send_bytes(message)
            except OSError:
                raise RankFailedError(self._failure(rank)) from None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send_bytes(encode_forward(STOP))
        for process in self.processes:
            if process is None:  # a remote rank: the STOP above (or its link closing below) ends it
                continue
            try:
                process.wait(JOIN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(JOIN_TIMEOUT_S)
        for pipe in self.pipes:
            pipe.close()

    def _failure(self, rank: int) -> str:
        """Why a rank stopped: its own report when it sent one, else its exit code."""
        pipe, process = self.pipes[rank - 1], self.processes[rank - 1]
        with contextlib.suppress(EOFError, OSError):
            if pipe.poll():
                kind, text = pipe.recv()
                if kind == ERROR:
                    return str(text)
        if process is None:
            return f"tensor-parallel rank {rank} at {self.peers.get(rank, '?')} disconnected; the engine cannot step without it"
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(1.0)
        return (
            f"tensor-parallel rank {rank} stopped (exit code {process.returncode}); the engine cannot step without it"
        )


def _spawn(rank: int, fd: int) -> subprocess.Popen[bytes]:
    """``python -m`` the worker with one end of a socket pair as its connection to rank 0."""
    env = {**os.environ, CONTROL_FD_ENV: str(fd), RANK_ENV: str(rank)}
    return subprocess.Popen([sys.executable, "-m", WORKER_MODULE], env=env, stdin=subprocess.DEVNULL, pass_fds=(fd,))
