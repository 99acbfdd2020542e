"""``sagellm serve``: the OpenAI- and Anthropic-compatible HTTP server."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Iterator

from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError, EngineDeadError
from sagellm.core.ports import is_port_free
from sagellm.engines.cli import arg_types
from sagellm.engines.cli.disagg_options import add_disagg_options, apply_disagg_options, disagg_settings
from sagellm.engines.cli.options import add_engine_options, config_from_args
from sagellm.engines.cli.remote_options import add_remote_options, apply_remote_options
from sagellm.engines.model.generation_config import SamplingDefaults, load_sampling_defaults
from sagellm.engines.server.served_engine import ServedEngine

API_KEY_ENV = "SAGELLM_API_KEY"

DESCRIPTION = """Serve the model over HTTP: OpenAI's /v1/completions, /v1/chat/completions
and /v1/models, Anthropic's /v1/messages (all with streaming), plus /health
and Prometheus /metrics. Concurrent clients share one continuously batched
engine. When the waiting queue is full, requests get 429 with Retry-After.
On SIGTERM the server stops accepting, lets in-flight requests finish for
--shutdown-grace seconds, aborts the rest and exits 0. With --disaggregated,
prefill and decode run in two worker processes and the server only routes;
if a worker (or a tensor-parallel rank) dies, the server exits 1.

  sagellm serve --port 8000
  curl localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 32}'
  sagellm serve --disaggregated --kv-transfer tcp"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "serve",
        help="OpenAI/Anthropic-compatible HTTP server",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = parser.add_argument_group("server")
    group.add_argument("--host", help="address to bind (default 127.0.0.1, or server.host in the config)")
    group.add_argument("--port", type=arg_types.port, help="TCP port (default 8000, or server.port in the config)")
    group.add_argument(
        "--served-model-name",
        help="model name /v1/models reports and requests use (default: the model's own name, also always accepted)",
    )
    group.add_argument(
        "--max-waiting",
        type=arg_types.positive_int,
        help="requests that may wait for a batch slot before new ones get 429 (default 1024)",
    )
    group.add_argument(
        "--shutdown-grace",
        type=arg_types.non_negative_float,
        default=20.0,
        help="seconds in-flight requests may run on after SIGTERM before they are aborted (default 20)",
    )
    group.add_argument(
        "--api-key",
        help=f"clients must send this key (Authorization: Bearer KEY, or x-api-key); default ${API_KEY_ENV}, "
        "else none. /health and /version stay open",
    )
    group.add_argument(
        "--protect-metrics", action="store_true", help="with --api-key, /metrics wants the key too (default: open)"
    )
    group.add_argument(
        "--allowed-origins",
        metavar="ORIGINS",
        help="origins browsers may call the API from (CORS), comma-separated or a JSON list: '[\"https://a.example\"]' "
        "or '*' (default: none, no CORS headers)",
    )
    group.add_argument(
        "--generation-config",
        default="auto",
        metavar="SOURCE",
        help="sampling defaults for fields a request leaves out: auto = the model directory's "
        "generation_config.json (temperature, top_p, top_k, min_p, repetition_penalty, max_new_tokens), "
        "none = the APIs' own, or a folder holding a generation_config.json (default auto, as vLLM)",
    )
    group.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        default="info",
        help="uvicorn log level (default info)",
    )
    add_engine_options(parser)
    add_disagg_options(parser)
    add_remote_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sagellm.engines.server import ServerOptions, create_app, serve

    log_to_stderr(args.log_level)
    config = _config(args)
    host, port = args.host or config.server.host, args.port if args.port is not None else config.server.port
    options = ServerOptions(
        served_model_name=args.served_model_name,
        shutdown_grace_s=args.shutdown_grace,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        protect_metrics=args.protect_metrics,
        allowed_origins=allowed_origins(args.allowed_origins),
        sampling_defaults=load_sampling_defaults(config.model.path, args.generation_config),
    )
    if options.sampling_defaults != SamplingDefaults():
        logging.getLogger(__name__).info(
            "sampling defaults from generation_config.json: %s (--generation-config none for the APIs' own)",
            options.sampling_defaults.describe(),
        )
    if options.protect_metrics and options.api_key is None:
        raise ConfigError("--protect-metrics needs an API key (--api-key or $SAGELLM_API_KEY)")
    if options.api_key is None and not is_loopback(host):
        print(
            f"sagellm: warning: serving on {host} without an API key: anyone who can reach port {port} can use "
            "the model (set --api-key or $SAGELLM_API_KEY)",
            file=sys.stderr,
        )
    if port and not is_port_free(port, host):  # fail before spending seconds loading the model
        raise ConfigError(f"cannot listen on {host}:{port}: the port is in use (try --port)")
    try:
        with _engine(args, config) as engine:
            serve(create_app(engine, options), host, port, args.log_level)
    except EngineDeadError as exc:  # a rank or worker died: not the user's input, so exit 1, not the bad-input 2
        print(f"sagellm: error: {exc}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _engine(args: argparse.Namespace, config: SageLLMConfig) -> Iterator[ServedEngine]:
    """The engine to serve: colocated (tensor-parallel ranks included) or a prefill/decode pair, closed after."""
    if not args.disaggregated:
        from sagellm.engines.engine.builder import build_engine

        yield build_engine(config)
        return
    from sagellm.engines.disagg.disaggregated_engine import DisaggregatedEngine

    engine = DisaggregatedEngine(config, **disagg_settings(args))
    try:
        yield engine
    finally:
        engine.close()


def log_to_stderr(level: str) -> None:
    """sageLLM's own loggers follow --log-level too (uvicorn's are configured by uvicorn)."""
    logger = logging.getLogger("sagellm")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)


def allowed_origins(text: str | None) -> tuple[str, ...]:
    """--allowed-origins as a tuple: a JSON list, or comma-separated origins."""
    if not text:
        return ()
    if text.lstrip().startswith("["):
        try:
            origins = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--allowed-origins is not a valid JSON list: {exc}") from None
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            raise ConfigError("--allowed-origins must be a JSON list of strings")
        return tuple(origins)
    return tuple(origin.strip() for origin in text.split(",") if origin.strip())


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _config(args: argparse.Namespace) -> SageLLMConfig:
    config = config_from_args(args)
    if args.max_waiting is not None:
        config.scheduler_ir.max_waiting = args.max_waiting  # validated by argparse, and by the config on assignment
    apply_disagg_options(args, config)
    apply_remote_options(args, config)
    return config
