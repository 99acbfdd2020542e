"""``sagellm chat``: an interactive conversation that keeps its history."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sagellm.engines.cli.options import add_engine_options, add_sampling_options, config_from_args, sampling_from_args
from sagellm.engines.cli.streaming import stream_request
from sagellm.engines.engine.builder import build_engine

HELP_TEXT = "commands: /reset clears the history, /exit (or Ctrl-D) quits"


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "chat", help="interactive chat with history", description=f"Chat with the model in the terminal. {HELP_TEXT}."
    )
    parser.add_argument("--system", help="system prompt (default: the model template's own)")
    add_sampling_options(parser, max_tokens=512)
    add_engine_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    engine = build_engine(config_from_args(args))
    sampling = sampling_from_args(args)
    history = _fresh_history(args.system)
    print(f"sageLLM chat with {engine.model_name} — {HELP_TEXT}", file=sys.stderr)
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            history = _fresh_history(args.system)
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        reply = _reply(engine, history, sampling)
        history.append({"role": "assistant", "content": reply})


def _fresh_history(system: str | None) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}] if system else []


def _reply(engine, history, sampling) -> str:  # type: ignore[no-untyped-def]
    rid = engine.add_request(engine.tokenizer.encode_chat(history), sampling)
    sys.stdout.write("assistant> ")
    text = ""
    try:
        for out in stream_request(engine, rid):
            text += out.new_text
            sys.stdout.write(out.new_text)
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write(" [interrupted]")
    sys.stdout.write("\n")
    return text
