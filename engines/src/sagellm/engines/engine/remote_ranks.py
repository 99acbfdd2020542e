"""Tensor-parallel ranks on other hosts: rank 0 waits for them to dial in; a rank dials and takes its setup.

``sagellm serve -tp 2 --remote-ranks 1 --worker-listen 0.0.0.0:7000
--dist-init-method tcp://RANK0_HOST:29500 --collective-backend gloo`` starts
rank 0 and waits for ``sagellm tp-worker --rank 1 --connect RANK0_HOST:7000``.
The joined rank then gets the same :class:`WorkerSetup` and the same
stream of forwards as a spawned one (over the authenticated link of
worker_link instead of a socket pair), and joins the collectives'
rendezvous like any rank. Collectives must cross hosts, so not ``shm``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from multiprocessing.connection import Connection
from typing import Any

from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.engines.engine.worker_link import TOKEN_ENV, WorkerListener, check_token, dial, parse_address
from sagellm.engines.model.parallel_ops import RankFailedError

GREETING_TIMEOUT_S = 10.0
SETUP_TIMEOUT_S = 600.0  # rank 0 answers once every remote rank has joined, which may take a while
HOST_LOCAL_BACKENDS = ("shm",)  # collectives that cannot reach another host


@dataclasses.dataclass(frozen=True, slots=True)
class RankJoin:
    """A remote rank's first message: which rank it is."""

    rank: int


def check_remote_ranks(config: SageLLMConfig, backend: str) -> None:
    """ConfigError for remote ranks that could not work: out of range, no listen address or token,
    no explicit rendezvous, or a backend confined to one host."""
    section = config.collective_ops
    ranks = section.remote_ranks
    if not ranks:
        return
    size = section.world_size
    if len(set(ranks)) != len(ranks) or not all(0 < rank < size for rank in ranks):
        raise ConfigError(
            f"remote ranks must be distinct ranks among 1..{size - 1}, got {ranks} (rank 0 is this process)"
        )
    if not section.worker_listen:
        raise ConfigError("remote ranks dial rank 0: give collective_ops.worker_listen (--worker-listen HOST:PORT)")
    parse_address(section.worker_listen, "collective_ops.worker_listen")
    check_token(os.environ.get(TOKEN_ENV))
    if not section.init_method:
        raise ConfigError(
            "remote ranks join the collectives' rendezvous too: give collective_ops.init_method "
            "(--dist-init-method tcp://HOST:PORT, an address they can reach)"
        )
    if backend in HOST_LOCAL_BACKENDS:
        raise ConfigError(
            f"the '{backend}' collectives stay on one host; remote ranks need gloo (--collective-backend gloo)"
        )


def join_remote_ranks(config: SageLLMConfig, ranks: list[int], timeout_s: float) -> dict[int, tuple[Connection, str]]:
    """Wait until every rank in ``ranks`` has dialled in; RankFailedError naming the missing ones after ``timeout_s``."""
    section = config.collective_ops
    address = parse_address(section.worker_listen or "", "collective_ops.worker_listen")
    listener = WorkerListener(address, check_token(os.environ.get(TOKEN_ENV)))
    joined: dict[int, tuple[Connection, str]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(joined) < len(ranks):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = ", ".join(str(r) for r in ranks if r not in joined)
                raise RankFailedError(
                    f"tensor-parallel rank(s) {missing} did not dial {address[0]}:{address[1]} within {timeout_s:.0f} s"
                )
            got = listener.accept(min(remaining, 1.0))
            if got is None:
                continue
            conn, peer = got
            rank = _greet(conn, [r for r in ranks if r not in joined])
            if rank is not None:
                joined[rank] = (conn, peer)
                logging.getLogger(__name__).info("tensor-parallel rank %d joined from %s", rank, peer)
    except BaseException:
        for conn, _ in joined.values():
            conn.close()
        raise
    finally:
        listener.close()
    return joined


def _greet(conn: Connection, wanted: list[int]) -> int | None:
    try:
        message = conn.recv() if conn.poll(GREETING_TIMEOUT_S) else None
    except (EOFError, OSError):
        message = None
    if not isinstance(message, RankJoin) or message.rank not in wanted:
        conn.close()
        return None
    return message.rank


def dial_rank0(rank: int, connect: str, token: str | None, timeout_s: float) -> tuple[Connection, Any]:
    """Join rank 0 at ``connect`` as ``rank``; the connection and the WorkerSetup it answered with."""
    conn = dial(parse_address(connect, "--connect"), check_token(token), timeout_s)
    conn.send(RankJoin(rank))
    try:
        setup = conn.recv() if conn.poll(SETUP_TIMEOUT_S) else None
    except (EOFError, OSError):
        setup = None
    if setup is None:
        conn.close()
        raise ConfigError(
            f"rank 0 at {connect} did not take this worker as rank {rank}: it spawns that rank itself "
            "(see its --remote-ranks) or another worker took it first"
        )
    return conn, setup


def host_config_json(config_json: str, overrides: dict[str, Any]) -> str:
    """The group's config with what this host sets for itself: its model file and threads (all cores by
    default, unpinned: the rank has the host to itself)."""
    data = json.loads(config_json)
    if overrides.get("model_path"):
        data["model"]["path"] = overrides["model_path"]
    data["model"]["num_threads"] = overrides.get("num_threads") or os.cpu_count() or 1
    data["topology"]["implementation"] = "none"
    return json.dumps(data)
