"""``sagellm pd-worker``: a prefill or decode worker on another host, joining a ``sagellm serve --disaggregated``."""

from __future__ import annotations

import argparse

from sagellm.engines.cli.worker_args import add_dial_options, worker_token

DESCRIPTION = """Run one half of a disaggregated deployment on this host. The worker
dials the server (its --worker-listen address), proves it knows the shared
token, receives the deployment's config and works until the server stops.
KV goes straight to the other worker over tcp, so this host must be reachable
at the address the server's peers option gives for this role.

  # server host (10.0.0.1): prefill here, decode elsewhere
  SAGELLM_WORKER_TOKEN=s3cret sagellm serve --disaggregated --remote-workers decode \\
    --worker-listen 0.0.0.0:7000 --kv-transfer tcp \\
    --kv-transfer-option 'peers={prefill: "10.0.0.1:7001", decode: "10.0.0.2:7002"}' \\
    --kv-transfer-option listen=0.0.0.0:7001
  # decode host (10.0.0.2)
  SAGELLM_WORKER_TOKEN=s3cret sagellm pd-worker --role decode --connect 10.0.0.1:7000 --kv-listen 0.0.0.0:7002

No encryption: run it on a trusted network."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "pd-worker",
        help="a prefill or decode worker for sagellm serve --disaggregated on another host",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--role", required=True, choices=["prefill", "decode"], help="the half this worker runs")
    add_dial_options(parser, "the server", "the server's, else all cores")
    parser.add_argument(
        "--kv-listen", metavar="HOST:PORT", help="where this worker's tcp KV channel binds (e.g. 0.0.0.0:7002)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sagellm.engines.disagg.remote_worker_main import run_remote_worker

    overrides = {"model_path": args.model, "num_threads": args.threads, "kv_listen": args.kv_listen}
    token = worker_token(args)
    try:
        run_remote_worker(args.role, args.connect, token, overrides, args.connect_timeout)
    except SystemExit as exc:  # the worker loop's own exit: 0 on Shutdown, 1 after reporting a failure
        return int(exc.code or 0)
    return 0
