"""``python -m sagellm.lifetime_predictor.evaluate``: accuracy of "reused within T" on a chronological split.

    python -m sagellm.lifetime_predictor.evaluate                     # bundled Mooncake trace, predictor 'online'
    python -m sagellm.lifetime_predictor.evaluate --trace my.jsonl --horizons 10,60 --json out.json

Prints one Markdown row per horizon and mode, next to two baselines on
the same test uses (always answering the commoner class, and "reused
before, so again") and a bound: the look-ahead table, each feature key's
commoner answer learnt from the first half of the test questions' own
answers and scored on the second half. Exit code 2 with a message on bad
input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from sagellm.core.config import LifetimePredictorSection
from sagellm.core.errors import SageLLMError
from sagellm.core.registry import create_lifetime_predictor
from sagellm.lifetime_predictor.binary_scores import BinaryScores
from sagellm.lifetime_predictor.chronological import SplitSettings, TestPredictions, run_split
from sagellm.lifetime_predictor.trace_uses import BUNDLED_TRACES, DEFAULT_TRACE, load_uses

EXIT_BAD_INPUT = 2
ASKED = ("at use", "at eviction")  # the two test sets of run_split
LOOKAHEAD = "look-ahead table (learns from test answers)"  # see sagellm.lifetime_predictor.lookahead


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sagellm.lifetime_predictor.evaluate",
        description="Score a lifetime predictor on a block-hash trace: learn from the past, predict the future.",
    )
    parser.add_argument(
        "--trace",
        default=DEFAULT_TRACE,
        help=f"a bundled trace ({', '.join(BUNDLED_TRACES)}; default {DEFAULT_TRACE}) or a Mooncake-style jsonl(.gz)",
    )
    parser.add_argument("--implementation", default="online", help="predictor from core's registry (default online)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="predictor option")
    parser.add_argument("--horizons", default="30,60,120", help="T values in seconds, comma-separated")
    parser.add_argument("--train-share", type=float, default=0.7, help="first share of block uses that trains")
    parser.add_argument("--never-after", type=float, default=1200.0, help="seconds after which a use counts as never")
    parser.add_argument(
        "--min-depth",
        type=int,
        default=0,
        help="ask only about blocks at this prefix depth or deeper (1 leaves out a system prompt all requests share)",
    )
    parser.add_argument("--mode", choices=("online", "frozen", "both"), default="both")
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N requests")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        results = evaluate(args)
    except (SageLLMError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(markdown(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    horizons = tuple(float(h) for h in args.horizons.split(",") if h.strip())
    section = LifetimePredictorSection(implementation=args.implementation, options=_options(args.option))
    create_lifetime_predictor(section)  # an unknown name or bad option fails before the replay
    uses = load_uses(args.trace, args.limit)
    modes = ("online", "frozen") if args.mode == "both" else (args.mode,)
    rows: list[dict[str, Any]] = []
    for mode in modes:
        settings = SplitSettings(
            horizons, args.train_share, args.never_after, online=mode == "online", min_depth=args.min_depth
        )
        started = time.perf_counter()
        answer_sets = run_split(create_lifetime_predictor(section), uses, settings)
        seconds = time.perf_counter() - started
        for asked, answers in zip(ASKED, answer_sets):
            for horizon in horizons:
                rows.append(_row(f"{args.implementation} ({mode})", asked, horizon, answers.scores(horizon), seconds))
    references = (
        ("baseline: reused before", TestPredictions.heuristic_scores),
        (LOOKAHEAD, TestPredictions.lookahead_scores),
    )
    for name, scores_of in references:
        for asked, answers in zip(ASKED, answer_sets):
            for horizon in horizons:
                rows.append(_row(name, asked, horizon, scores_of(answers, horizon), 0.0))
    unanswerable = sorted({r["horizon_s"] for r in rows if r["num"] == 0})
    if unanswerable:
        print(
            f"note: no test question for T = {', '.join(f'{h:g}' for h in unanswerable)} s has its answer inside "
            "the trace; those rows are left out (use a smaller T or --train-share)",
            file=sys.stderr,
        )
    return {
        "trace": args.trace,
        "num_block_uses": len(uses),
        "train_share": args.train_share,
        "never_after_s": args.never_after,
        "min_depth": args.min_depth,
        "rows": [r for r in rows if r["num"] > 0],
    }


def _row(name: str, asked: str, horizon: float, scores: BinaryScores, seconds: float) -> dict[str, Any]:
    return {"predictor": name, "asked": asked, "horizon_s": horizon, "replay_s": round(seconds, 2), **scores.as_dict()}


def _options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}")
        options[key] = yaml.safe_load(value)
    return options


def markdown(results: dict[str, Any]) -> str:
    header = (
        "| predictor | asked | T (s) | questions | reused within T | accuracy | majority-class acc. | balanced acc. "
        "| precision | recall | AUC |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {r['predictor']} | {r['asked']} | {r['horizon_s']:g} | {r['num']:,} | {r['positive_rate']:.1%} | {r['accuracy']:.1%} "
        f"| {r['majority_accuracy']:.1%} | {r['balanced_accuracy']:.1%} | {r['precision']:.1%} | {r['recall']:.1%} "
        f"| {r['auc']:.3f} |"
        for r in results["rows"]
    ]
    return header + "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
