"""The options every worker that dials in from another host shares (``pd-worker``, ``tp-worker``)."""

from __future__ import annotations

import argparse
import os

from sagellm.engines.cli import arg_types
from sagellm.engines.engine.worker_link import TOKEN_ENV


def add_dial_options(parser: argparse.ArgumentParser, peer: str, default_threads: str) -> None:
    """--connect, --worker-token, --model, --threads, --connect-timeout; ``peer`` names what is dialled."""
    parser.add_argument("--connect", required=True, metavar="HOST:PORT", help=f"{peer}'s --worker-listen address")
    parser.add_argument("--worker-token", help=f"the shared token (default: ${TOKEN_ENV})")
    parser.add_argument("--model", "-m", help=f"the model file on this host (default: the path {peer} uses)")
    parser.add_argument("--threads", type=arg_types.positive_int, help=f"torch threads (default: {default_threads})")
    parser.add_argument(
        "--connect-timeout",
        type=arg_types.positive_float,
        default=600.0,
        help=f"seconds to keep dialling {peer} while it is not up yet (default 600)",
    )


def worker_token(args: argparse.Namespace) -> str | None:
    return args.worker_token or os.environ.get(TOKEN_ENV)
