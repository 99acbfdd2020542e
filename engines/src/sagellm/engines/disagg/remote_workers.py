"""Workers on other hosts: the coordinator waits for them to dial in, then treats them as its own.

``sagellm serve --disaggregated --remote-workers decode --worker-listen
0.0.0.0:7000`` spawns the prefill worker as usual and waits for a
``sagellm pd-worker --role decode --connect SERVER:7000`` to join; the
joined worker gets the deployment's config (:class:`Welcome`) and from
then on the same messages a local worker gets (see worker_link).
KV still goes worker to worker, so the channel must reach across hosts:
``tcp`` with ``peers`` naming where each role listens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.engines.disagg.messages import DECODE, PREFILL, Join, Welcome
from sagellm.engines.disagg.worker_error import WorkerError
from sagellm.engines.engine.worker_link import (
    RemoteWorker,
    await_joins,
    check_token,
    parse_address,
    read_greeting,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RemoteWorkers:
    """Which roles run elsewhere and dial in, where they dial (HOST:PORT), and the token they must know."""

    roles: tuple[str, ...]
    listen: str
    token: str | None

    def check(self, config: SageLLMConfig) -> None:
        """ConfigError for what could not work: unknown roles, no token, a channel that stays on one host."""
        unknown = sorted(set(self.roles) - {PREFILL, DECODE})
        if not self.roles or unknown:
            raise ConfigError(
                f"remote worker roles must be among prefill, decode; got {', '.join(self.roles) or 'none'}"
            )
        check_token(self.token)
        parse_address(self.listen, "the worker listen address")
        section = config.kv_transfer
        peers = section.options.get("peers") or {}
        if section.implementation != "tcp" or not {PREFILL, DECODE} <= set(peers):
            raise ConfigError(
                "workers on other hosts need KV over tcp with both workers' addresses: --kv-transfer tcp "
                '--kv-transfer-option \'peers={prefill: "HOST:PORT", decode: "HOST:PORT"}\''
            )


def join_remote_workers(
    spec: RemoteWorkers, config: SageLLMConfig, events: Any, timeout_s: float
) -> dict[str, RemoteWorker]:
    """Wait until a worker has joined for every remote role (WorkerError after ``timeout_s``)."""
    address = parse_address(spec.listen, "the worker listen address")
    logger.info("waiting for the %s worker(s) to join at %s:%s", ", ".join(spec.roles), *address)

    def greet(conn: Connection, peer: str, wanted: list[str]) -> str | None:
        """The role a new connection takes, answered with the config; None (and closed) if none we want."""
        message = read_greeting(conn)
        if not isinstance(message, Join) or message.role not in wanted:
            logger.warning("dropped a worker connection from %s: it offered %r, wanted %s", peer, message, wanted)
            conn.close()
            return None
        conn.send(Welcome(config.model_dump()))
        return message.role

    def missing(roles: list[str], where: str) -> WorkerError:
        return WorkerError(f"no {', '.join(roles)} worker joined at {where} within {timeout_s:.0f} s")

    joined = await_joins(address, check_token(spec.token), spec.roles, greet, timeout_s, missing)
    return {role: RemoteWorker(role, conn, peer, events) for role, (conn, peer) in joined.items()}
