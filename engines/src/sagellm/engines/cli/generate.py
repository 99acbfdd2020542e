"""``sagellm generate``: complete one or more prompts, streaming a single one."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sagellm.core.errors import InvalidRequestError
from sagellm.engines.cli.options import add_engine_options, add_sampling_options, config_from_args, sampling_from_args
from sagellm.engines.cli.streaming import stream_request
from sagellm.engines.engine.builder import build_engine

DESCRIPTION = """Generate text with the native engine. One prompt streams to the terminal as
it is produced; several prompts run together with continuous batching and
print when done. With --chat each prompt is one user turn, wrapped in the
model's chat template."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "generate",
        help="complete prompts (streams a single prompt)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompts", nargs="*", help="prompt text(s)")
    parser.add_argument("--file", "-f", help="read one prompt from this file ('-' = stdin)")
    parser.add_argument("--chat", action="store_true", help="apply the model's chat template to each prompt")
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    add_sampling_options(parser)
    add_engine_options(parser)
    parser.set_defaults(handler=run)


def read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompts)
    if args.file:
        try:
            prompts.append(sys.stdin.read() if args.file == "-" else Path(args.file).read_text())
        except OSError as exc:
            raise InvalidRequestError(f"cannot read prompt file: {exc}") from None
    if not prompts:
        raise InvalidRequestError("give a prompt, or --file PATH")
    return prompts


def run(args: argparse.Namespace) -> int:
    prompts = read_prompts(args)
    sampling = sampling_from_args(args)
    engine = build_engine(config_from_args(args))
    encoded = [engine.tokenizer.encode_chat([{"role": "user", "content": p}]) if args.chat else p for p in prompts]
    if len(prompts) == 1 and not args.json:
        return _stream_one(engine, encoded[0], sampling)
    started = time.perf_counter()
    ids = [engine.add_request(p, sampling) for p in encoded]
    texts = {rid: "" for rid in ids}
    reasons: dict[str, str | None] = {}
    while engine.has_unfinished():
        for out in engine.step():
            texts[out.request_id] += out.new_text
            reasons[out.request_id] = out.finish_reason
    elapsed = time.perf_counter() - started
    for prompt, rid in zip(prompts, ids):
        if args.json:
            print(json.dumps({"prompt": prompt, "text": texts[rid], "finish_reason": reasons.get(rid)}))
        else:
            print(f"=== {prompt!r}\n{texts[rid]}\n")
    print(f"[{len(ids)} prompts in {elapsed:.2f} s]", file=sys.stderr)
    return 0


def _stream_one(engine, prompt, sampling) -> int:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    rid = engine.add_request(prompt, sampling)
    first: float | None = None
    count, reason = 0, None
    for out in stream_request(engine, rid):
        first = first or time.perf_counter()
        count += len(out.new_token_ids)
        reason = out.finish_reason
        sys.stdout.write(out.new_text)
        sys.stdout.flush()
    end = time.perf_counter()
    decode = (count - 1) / (end - first) if first and count > 1 and end > first else 0.0
    ttft_ms = ((first or end) - started) * 1000
    print(f"\n[{count} tokens, finish: {reason}, TTFT {ttft_ms:.0f} ms, {decode:.1f} tok/s]", file=sys.stderr)
    return 0
