"""``sagellm serve``'s flags for workers that run on other hosts and dial in (disaggregated roles, TP ranks)."""

from __future__ import annotations

import argparse
import os

from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.engines.engine.worker_link import TOKEN_ENV


def add_remote_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("workers on other hosts")
    group.add_argument(
        "--remote-workers",
        metavar="ROLES",
        help="with --disaggregated: roles that run on other hosts and dial in (prefill, decode or prefill,decode; "
        "each started there with sagellm pd-worker) instead of being spawned here; needs --kv-transfer tcp with peers",
    )
    group.add_argument(
        "--remote-ranks",
        metavar="RANKS",
        help="with --tensor-parallel-size: ranks that run on other hosts and dial in (e.g. 1 or 1,2; each started "
        "there with sagellm tp-worker); needs --dist-init-method on a reachable address and gloo collectives",
    )
    group.add_argument("--worker-listen", metavar="HOST:PORT", help="where remote workers dial in (e.g. 0.0.0.0:7000)")
    group.add_argument("--worker-token", help=f"shared token remote workers must present (default: ${TOKEN_ENV})")


def apply_remote_options(args: argparse.Namespace, config: SageLLMConfig) -> None:
    """Remote TP ranks into ``config``; the token where the rank-0 side reads it; refuse flags that do nothing."""
    if not (args.remote_workers or args.remote_ranks):
        given = [
            flag
            for flag, value in (("--worker-listen", args.worker_listen), ("--worker-token", args.worker_token))
            if value
        ]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --remote-workers or --remote-ranks")
        return
    if args.worker_token:
        os.environ[TOKEN_ENV] = args.worker_token  # spawned ranks inherit it; rank 0's listener reads it
    if args.remote_ranks:
        config.collective_ops.remote_ranks = _ranks(args.remote_ranks)
        config.collective_ops.worker_listen = args.worker_listen


def _ranks(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--remote-ranks takes rank numbers such as 1 or 1,2; got {text!r}") from None
