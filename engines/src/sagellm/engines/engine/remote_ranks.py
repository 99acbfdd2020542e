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
import os
from multiprocessing.connection import Connection
from typing import Any

from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.engines.engine.worker_link import (
    TOKEN_ENV,
    await_joins,
    check_token,
    dial,
    parse_address,
    read_greeting,
)
from sagellm.engines.model.parallel_ops import RankFailedError

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
    address = parse_address(config.collective_ops.worker_listen or "", "collective_ops.worker_listen")

    def greet(conn: Connection, peer: str, wanted: list[int]) -> int | None:
        message = read_greeting(conn)
        if not isinstance(message, RankJoin) or message.rank not in wanted:
            conn.close()
            return None
        return message.rank

    def missing(absent: list[int], where: str) -> RankFailedError:
        ranks_text = ", ".join(str(r) for r in absent)
        return RankFailedError(f"tensor-parallel rank(s) {ranks_text} did not dial {where} within {timeout_s:.0f} s")

    return await_joins(address, check_token(os.environ.get(TOKEN_ENV)), ranks, greet, timeout_s, missing)


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
