"""A prefill or decode worker on its own host: dial the coordinator, take its config, run the worker loop.

This is what ``sagellm pd-worker`` runs. The worker is the same code as a
spawned one (prefill_worker / decode_worker); only its queues are the link.
"""

from __future__ import annotations

import copy
from typing import Any

from sagellm.core.errors import ConfigError
from sagellm.engines.disagg.decode_worker import decode_main
from sagellm.engines.disagg.messages import PREFILL, Join, Welcome
from sagellm.engines.disagg.prefill_worker import prefill_main
from sagellm.engines.engine.worker_link import LinkEvents, LinkInbox, check_token, dial, parse_address

WELCOME_TIMEOUT_S = 30.0


def local_config(config_data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The deployment's config with what this host sets for itself: its model file, threads, KV listen address."""
    data = copy.deepcopy(config_data)
    if overrides.get("model_path"):
        data["model"]["path"] = overrides["model_path"]
    if overrides.get("num_threads"):
        data["model"]["num_threads"] = overrides["num_threads"]
    if overrides.get("kv_listen"):
        data["kv_transfer"]["options"]["listen"] = overrides["kv_listen"]
    return data


def run_remote_worker(
    role: str, connect: str, token: str | None, overrides: dict[str, Any], connect_timeout_s: float
) -> None:
    """Join the coordinator at ``connect`` as ``role`` and work until it says Shutdown or hangs up."""
    address = parse_address(connect, "--connect")
    conn = dial(address, check_token(token), connect_timeout_s)
    conn.send(Join(role, overrides))
    try:
        welcome = conn.recv() if conn.poll(WELCOME_TIMEOUT_S) else None
    except (EOFError, OSError):
        welcome = None
    if not isinstance(welcome, Welcome):
        conn.close()
        raise ConfigError(
            f"the coordinator at {connect} did not take this worker as {role}: it runs that role itself "
            "(see its --remote-workers) or another worker took it first"
        )
    main = prefill_main if role == PREFILL else decode_main
    main(local_config(welcome.config_data, overrides), LinkInbox(conn), LinkEvents(conn))
