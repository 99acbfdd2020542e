"""``sagellm serve --disaggregated``: its flags, and the combinations refused before anything loads."""

from __future__ import annotations

import argparse
import os
from typing import Any

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.engines.cli import arg_types
from sagellm.engines.cli.options import key_values
from sagellm.engines.disagg.remote_workers import RemoteWorkers
from sagellm.engines.engine.worker_link import TOKEN_ENV

DEFAULT_CHANNEL = "shm"
CHANNEL_KIND = "kv_transfer_channel"
OVERLAP_KIND = "overlap_manager"


def add_disagg_options(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(sorted(registry.available(CHANNEL_KIND))) or "none"
    group = parser.add_argument_group("disaggregated prefill/decode")
    group.add_argument(
        "--disaggregated",
        action="store_true",
        help="prefill and decode in two worker processes, each prompt's KV handed from one to the other "
        "through --kv-transfer; this process only serves HTTP and tokenizes (needs the prefix cache)",
    )
    group.add_argument(
        "--prefill-threads", type=arg_types.positive_int, help="torch threads of the prefill worker (default 1)"
    )
    group.add_argument(
        "--decode-threads", type=arg_types.positive_int, help="torch threads of the decode worker (default 1)"
    )
    group.add_argument(
        "--kv-transfer",
        metavar="CHANNEL",
        help=f"how KV goes from prefill to decode (installed: {names}; default {DEFAULT_CHANNEL}): shm = shared "
        "memory on this host; tcp = sockets, each worker on a free 127.0.0.1 port unless the peers option names them",
    )
    group.add_argument(
        "--kv-transfer-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="KV channel option, repeatable (staging_mb=256, full_timeout_s=30, connect_timeout_s=5, "
        'peers={prefill: "HOST:PORT", decode: "HOST:PORT"}, listen=0.0.0.0:PORT)',
    )
    group.add_argument(
        "--overlap-pipeline",
        metavar="NAME",
        help="the prefill worker stages each prompt's KV on this overlap manager's thread while it prefills the "
        f"next prompts (installed: {', '.join(sorted(registry.available(OVERLAP_KIND))) or 'none'}; default none: "
        "staging waits in line)",
    )


def disagg_settings(args: argparse.Namespace) -> dict[str, Any]:
    """DisaggregatedEngine's keyword arguments: worker threads, and the roles that join from other hosts."""
    remote = None
    if args.remote_workers:
        roles = tuple(role.strip() for role in args.remote_workers.split(",") if role.strip())
        token = args.worker_token or os.environ.get(TOKEN_ENV)
        remote = RemoteWorkers(roles, args.worker_listen or "", token)
    return {"prefill_threads": args.prefill_threads or 1, "decode_threads": args.decode_threads or 1, "remote": remote}


def apply_disagg_options(args: argparse.Namespace, config: SageLLMConfig) -> None:
    """Put the channel into ``config``; refuse flags that would be ignored or cannot work together."""
    given = [
        flag
        for flag, value in (
            ("--prefill-threads", args.prefill_threads),
            ("--decode-threads", args.decode_threads),
            ("--kv-transfer", args.kv_transfer),
            ("--kv-transfer-option", args.kv_transfer_option or None),
            ("--remote-workers", args.remote_workers),
            ("--overlap-pipeline", args.overlap_pipeline),
        )
        if value is not None
    ]
    if not args.disaggregated:
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --disaggregated")
        return
    if config.collective_ops.world_size > 1:
        raise ConfigError("--disaggregated and --tensor-parallel-size > 1 cannot be combined yet")
    if args.threads is not None:
        raise ConfigError("with --disaggregated, give --prefill-threads and --decode-threads instead of --threads")
    if not config.prefix_cache.enabled:
        raise ConfigError("--disaggregated hands KV over through the prefix cache: drop --no-prefix-cache")
    name = args.kv_transfer or DEFAULT_CHANNEL
    if name not in registry.available(CHANNEL_KIND):
        installed = ", ".join(sorted(registry.available(CHANNEL_KIND))) or "none"
        raise ConfigError(f"--kv-transfer {name!r} is not installed (installed: {installed})")
    options: dict[str, Any] = {
        **config.kv_transfer.options,
        **(key_values(args.kv_transfer_option, "--kv-transfer-option") or {}),
    }
    config.kv_transfer = config.kv_transfer.model_copy(update={"implementation": name, "options": options})
    if args.overlap_pipeline:
        if args.overlap_pipeline not in registry.available(OVERLAP_KIND):
            installed = ", ".join(sorted(registry.available(OVERLAP_KIND))) or "none"
            raise ConfigError(f"--overlap-pipeline {args.overlap_pipeline!r} is not installed (installed: {installed})")
        config.overlap_pipeline.implementation = args.overlap_pipeline
    remote = disagg_settings(args)["remote"]
    if remote is not None:
        if not args.worker_listen:
            raise ConfigError("--remote-workers needs --worker-listen HOST:PORT (where the workers dial in)")
        remote.check(config)
