"""``sagellm``: the command-line entry point.

Exit codes: 0 success, 2 bad input (arguments, config, prompt, model file),
1 an unexpected failure. Errors print one line, never a traceback, unless
``SAGELLM_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import os
import sys

from sagellm.core.errors import SageLLMError
from sagellm.engines.cli import bench, chat, ci_gate, generate, info, pd_worker, serve, tp_worker
from sagellm.engines.version import __version__

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sagellm",
        description="sageLLM: a modular LLM inference engine. Run `sagellm <command> --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"sagellm {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="<command>")
    generate.add_parser(subparsers)
    chat.add_parser(subparsers)
    serve.add_parser(subparsers)
    pd_worker.add_parser(subparsers)
    tp_worker.add_parser(subparsers)
    bench.add_parser(subparsers)
    ci_gate.add_parser(subparsers)
    info.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(args.handler(args))
    except SageLLMError as exc:
        _report(exc)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: one clear line instead of a traceback
        _report(exc)
        return 1


def _report(exc: BaseException) -> None:
    if os.environ.get("SAGELLM_DEBUG") == "1":
        raise exc
    print(f"sagellm: error: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
