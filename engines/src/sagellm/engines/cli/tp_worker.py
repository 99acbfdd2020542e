"""``sagellm tp-worker``: a tensor-parallel rank on another host, joining a ``sagellm serve -tp N``."""

from __future__ import annotations

import argparse
import dataclasses

from sagellm.engines.cli import arg_types
from sagellm.engines.cli.worker_args import add_dial_options, worker_token

DESCRIPTION = """Run one tensor-parallel rank on this host. The worker dials rank 0
(its --worker-listen address), proves it knows the shared token, receives the
group's config and rendezvous, loads its shard and runs every forward pass
rank 0 runs until rank 0 stops. The collectives cross hosts, so use gloo.

  # rank 0 (10.0.0.1)
  SAGELLM_WORKER_TOKEN=s3cret sagellm serve -tp 2 --remote-ranks 1 --worker-listen 0.0.0.0:7000 \\
    --dist-init-method tcp://10.0.0.1:29500 --collective-backend gloo
  # rank 1 (10.0.0.2)
  SAGELLM_WORKER_TOKEN=s3cret sagellm tp-worker --rank 1 --connect 10.0.0.1:7000

No encryption: run it on a trusted network."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "tp-worker",
        help="a tensor-parallel rank for sagellm serve --tensor-parallel-size on another host",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rank", required=True, type=arg_types.positive_int, help="this worker's rank (1..N-1)")
    add_dial_options(parser, "rank 0", "all cores")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sagellm.engines.engine.remote_ranks import dial_rank0, host_config_json
    from sagellm.engines.engine.tensor_parallel_worker import run_worker

    token = worker_token(args)
    conn, setup = dial_rank0(args.rank, args.connect, token, args.connect_timeout)
    overrides = {"model_path": args.model, "num_threads": args.threads}
    setup = dataclasses.replace(setup, config_json=host_config_json(setup.config_json, overrides))
    return run_worker(setup, args.rank, conn)
