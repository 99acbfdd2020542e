"""``sagellm bench``: measure latency and throughput of the engine or of an OpenAI-compatible server.

Builds the workload (the Q1-Q8 suite by default, or one data set / trace),
sends it under the chosen load, and reports TTFT, TPOT, ITL, E2E,
throughput, goodput, prefix-cache hit rate, preemptions, MFU and cost as
a Markdown table (stdout) and JSON (``--out DIR``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from sagellm.core.errors import InvalidRequestError
from sagellm.engines.bench.backends.base import Backend, GenerationOptions
from sagellm.engines.bench.bench_session import BenchSession
from sagellm.engines.bench.comparison import build_comparison
from sagellm.engines.bench.load_pattern import LoadPattern
from sagellm.engines.bench.metrics import SLO, MetricContext
from sagellm.engines.bench.peers import AUTO, PEERS, parse_peers
from sagellm.engines.bench.served_peers import LLAMA_SERVER_ENV
from sagellm.engines.bench.sweep import SweepPlan
from sagellm.engines.bench.workloads import PRESETS, WORKLOADS, RunSpec, WorkloadOptions, build_suite
from sagellm.engines.cli import arg_types
from sagellm.engines.cli.options import add_engine_options, config_from_args

DESCRIPTION = """Benchmark the in-process engine (default) or any OpenAI-compatible server.

What runs: the named suite Q1-Q8 (--preset ci, the default, or --preset full),
or one workload (--workload). How requests arrive: each workload's own load
(suite: one user, or all at once; traces: their timestamps) unless
--concurrency N (closed loop, N users) or --request-rate R (open loop,
Poisson) says otherwise; --sweep raises the rate until the SLO is missed.

Latencies are measured from the moment each request was due. Output: a
Markdown table on stdout; --out DIR writes bench.json and bench.md there.
Compare two JSON reports with `sagellm ci-gate`."""

EPILOG = """examples:
  sagellm bench                                        # --preset ci, in-process, ~40 s on 2 cores
  sagellm bench --preset full --out results/
  sagellm bench --workload synthetic --input-len 256 --output-len 64 --num-requests 32 --concurrency 8
  sagellm bench --workload mooncake --num-requests 100 --length-scale 0.05 --time-scale 0.5
  sagellm bench --workload synthetic --sweep --slo-ttft-ms 2000 --slo-tpot-ms 200
  sagellm bench --backend openai --base-url http://127.0.0.1:8000/v1 --preset ci
  sagellm bench --compare                              # + every peer available here, with ratios
  sagellm bench --workload mt-bench --concurrency 16 --compare transformers,llama-server,vllm"""

PRESET_HELP = "; ".join(
    f"{name}: " + ", ".join(f"{e.name} {e.input_len}->{e.output_len} x{e.count}" for e in entries)
    for name, entries in PRESETS.items()
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "bench",
        help="benchmark latency and throughput (engine or OpenAI-compatible server)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_workload_options(parser)
    _add_load_options(parser)
    _add_target_options(parser)
    _add_compare_options(parser)
    _add_output_options(parser)
    add_engine_options(parser)
    parser.set_defaults(handler=run)


def _add_workload_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("workload")
    which = group.add_mutually_exclusive_group()
    which.add_argument(
        "--preset", choices=sorted(PRESETS), help=f"the Q1-Q8 suite at a size (default ci). {PRESET_HELP}"
    )
    which.add_argument("--workload", choices=sorted(WORKLOADS), help="one workload instead of the suite")
    group.add_argument("--tasks", help="comma-separated suite tasks to run, e.g. Q1,Q5 (default: all)")
    group.add_argument(
        "--num-requests",
        type=arg_types.positive_int,
        default=10,
        help="--workload: requests (mt-bench: conversations; traces: first N rows) (default 10)",
    )
    group.add_argument(
        "--input-len", type=arg_types.positive_int, default=128, help="synthetic: prompt tokens (default 128)"
    )
    group.add_argument(
        "--output-len",
        type=arg_types.positive_int,
        default=64,
        help="synthetic, mt-bench, gsm8k, grounded: max new tokens (default 64)",
    )
    group.add_argument("--data", type=Path, help="read this file instead of the bundled subset (same format)")
    group.add_argument(
        "--length-scale", type=arg_types.positive_float, default=1.0, help="traces: multiply every length (default 1.0)"
    )
    group.add_argument(
        "--time-scale",
        type=arg_types.positive_float,
        default=1.0,
        help="traces: multiply inter-arrival gaps (default 1.0)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed for synthetic tokens and Poisson arrivals (default 0)")


def _add_load_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("load")
    mode = group.add_mutually_exclusive_group()
    mode.add_argument(
        "--concurrency", type=arg_types.positive_int, help="closed loop: this many users, each waiting for its answer"
    )
    mode.add_argument(
        "--request-rate", type=_rate, help="open loop: Poisson arrivals at this many req/s ('inf': all at once)"
    )
    group.add_argument(
        "--sweep", action="store_true", help="raise the rate until the SLO is missed; report the max rate meeting it"
    )
    group.add_argument(
        "--sweep-start", type=arg_types.positive_float, default=0.5, help="first sweep rate, req/s (default 0.5)"
    )
    group.add_argument("--sweep-factor", type=float, default=2.0, help="rate multiplier per sweep step (default 2)")
    group.add_argument(
        "--sweep-points", type=arg_types.positive_int, default=6, help="rising rates tried at most (default 6)"
    )
    group.add_argument(
        "--slo-ttft-ms", type=arg_types.positive_float, help="TTFT limit for goodput and --sweep (default none)"
    )
    group.add_argument(
        "--slo-tpot-ms", type=arg_types.positive_float, help="TPOT limit for goodput and --sweep (default none)"
    )
    group.add_argument(
        "--slo-attainment",
        type=float,
        default=0.9,
        help="share of requests within the SLO for a rate to pass (default 0.9)",
    )


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("target")
    group.add_argument(
        "--backend",
        choices=["engine", "openai"],
        default="engine",
        help="in-process engine (default) or an OpenAI-compatible HTTP server",
    )
    group.add_argument(
        "--base-url", default="http://127.0.0.1:8000/v1", help="openai: API root (default http://127.0.0.1:8000/v1)"
    )
    group.add_argument("--api-key", help="openai: bearer token (default: $OPENAI_API_KEY, else none)")
    group.add_argument("--served-model-name", help="openai: model name to request (default: first of GET /models)")
    group.add_argument(
        "--send-token-ids",
        action="store_true",
        help="openai: send prompts as token ids, not text (same tokenizer needed)",
    )
    group.add_argument(
        "--timeout", type=arg_types.positive_float, default=600.0, help="openai: seconds per request (default 600)"
    )
    group.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy)")
    group.add_argument(
        "--stop-at-eos", action="store_true", help="let answers end at EOS (default: ignore EOS, so lengths are exact)"
    )
    group.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up request")


def _add_compare_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("peers side by side")
    group.add_argument(
        "--compare",
        nargs="?",
        const=AUTO,
        metavar="PEERS",
        help="after sageLLM, run the same workload on peers (each in its own process) and report ratios: "
        f"comma-separated from {', '.join(PEERS)}; bare --compare: every peer available here at its best "
        "(transformers fp32 and bf16, llama.cpp's llama-server with parallel slots, vLLM's CPU build); "
        "llama-server is found by --llama-server, $SAGELLM_LLAMA_SERVER or the build script's folder",
    )
    group.add_argument(
        "--llama-server",
        metavar="PATH",
        help="llama.cpp's llama-server binary or its folder, for --compare (sets $SAGELLM_LLAMA_SERVER)",
    )
    group.add_argument(
        "--compare-max-batch",
        type=arg_types.positive_int,
        default=64,
        help="transformers: largest static cohort when requests arrive open-loop (default 64; "
        "closed loop: --concurrency)",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--out", type=Path, help="write bench.json and bench.md (and --plot PNGs) into this directory")
    group.add_argument("--json", action="store_true", help="print the JSON report to stdout instead of the table")
    group.add_argument("--plot", action="store_true", help="with --out: latency CDF (and sweep) PNGs; needs matplotlib")
    group.add_argument(
        "--price-per-hour",
        type=float,
        default=0.0,
        help="device price per hour for cost per 1M output tokens (default 0: no cost)",
    )
    group.add_argument(
        "--peak-tflops", type=arg_types.positive_float, help="device peak for MFU (default: the built-in table)"
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    group.add_argument(
        "--machine-reference",
        action="store_true",
        help="time fixed torch work before each run and after the last, and record the median in the report: "
        "`sagellm ci-gate` then judges speed at the baseline machine's pace (~0.1 s per sample)",
    )


def run(args: argparse.Namespace) -> int:
    _validate(args)
    if args.llama_server:
        os.environ[LLAMA_SERVER_ENV] = str(args.llama_server)  # the peers' processes inherit it
    peers, peer_notes = parse_peers(args.compare) if args.compare else ([], [])
    started = time.perf_counter()
    backend = _backend(args)
    specs = _specs(args, backend)
    context = _context(args, backend)
    if not args.no_warmup:
        backend.warmup()
    session = BenchSession(backend, context, seed=args.seed, machine_reference=args.machine_reference)
    if args.sweep:
        session.sweep(specs[0], _sweep_plan(args))
    else:
        session.run(specs, _load_override(args))
    report = session.report(_config_summary(args), elapsed_s=time.perf_counter() - started)
    if peers:
        peer_reports = [_run_peer(args, name, specs, context) for name in peers]
        report["compare"] = build_comparison(report, peer_reports) | {"left_out": peer_notes}
        report["peer_reports"] = peer_reports
    _emit(args, session, report)
    return 0 if session.any_completed else 1


def _run_peer(args: argparse.Namespace, name: str, specs: list[RunSpec], context: MetricContext) -> dict[str, Any]:
    """The same runs on one peer, in a process of its own (see bench/peer_process.py)."""
    import torch

    from sagellm.engines.bench.peer_process import PeerJob, run_peer

    print(f"comparing: {name}", file=sys.stderr)
    job = PeerJob(
        name=name,
        model=None if args.model is None else str(args.model),
        generation=_generation(args),
        max_batch=args.compare_max_batch,
        show_progress=not args.no_progress,
        threads=torch.get_num_threads(),
        specs=specs,
        load=_load_override(args),
        context=context,
        seed=args.seed,
        warmup=not args.no_warmup,
        config=_config_summary(args),
    )
    return run_peer(job)


def _validate(args: argparse.Namespace) -> None:
    if args.sweep and not args.workload:
        raise InvalidRequestError("--sweep needs --workload (a sweep runs one workload at rising rates)")
    if args.sweep and args.slo_ttft_ms is None and args.slo_tpot_ms is None:
        raise InvalidRequestError("--sweep needs --slo-ttft-ms and/or --slo-tpot-ms")
    if args.sweep and args.compare:
        raise InvalidRequestError("--compare runs fixed loads; it does not combine with --sweep")
    if args.sweep and (args.concurrency or args.request_rate):
        raise InvalidRequestError("--sweep sets the request rate itself; drop --concurrency/--request-rate")
    if args.tasks and args.workload:
        raise InvalidRequestError("--tasks selects suite tasks; it does not apply to --workload")
    known = {e.name for e in PRESETS[args.preset or "ci"]}
    unknown = sorted(set(_tasks(args)) - known)
    if unknown:
        raise InvalidRequestError(f"--tasks: unknown task(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if args.plot:
        if args.out is None:
            raise InvalidRequestError("--plot writes PNG files: give --out DIR")
        from sagellm.engines.bench.plots import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            raise InvalidRequestError(str(exc)) from None
    if not 0 < args.slo_attainment <= 1:
        raise InvalidRequestError("--slo-attainment must be in (0, 1]")
    if not args.sweep_factor > 1:
        raise InvalidRequestError("--sweep-factor must be > 1")
    if args.price_per_hour < 0:
        raise InvalidRequestError("--price-per-hour must be >= 0")


def _tasks(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(t.strip().upper() for t in args.tasks.split(",") if t.strip()) if args.tasks else ()


def _generation(args: argparse.Namespace) -> GenerationOptions:
    return GenerationOptions(temperature=args.temperature, ignore_eos=not args.stop_at_eos)


def _backend(args: argparse.Namespace) -> Backend:
    generation = _generation(args)
    show = not args.no_progress
    if args.backend == "openai":
        from sagellm.engines.bench.backends.openai import OpenAIBackend
        from sagellm.engines.bench.tokenizer_source import load_tokenizer

        tokenizer, model_config = load_tokenizer(args.model)
        return OpenAIBackend(
            args.base_url,
            tokenizer,
            model_config,
            served_model=args.served_model_name,
            api_key=args.api_key,
            generation=generation,
            max_model_len=args.max_model_len,
            send_token_ids=args.send_token_ids,
            timeout_s=args.timeout,
            show_progress=show,
        )
    from sagellm.engines.bench.backends.engine import EngineBackend

    return EngineBackend.from_config(config_from_args(args), generation, show_progress=show)


def _specs(args: argparse.Namespace, backend: Backend) -> list[RunSpec]:
    try:
        if args.workload:
            options = WorkloadOptions(
                num_requests=args.num_requests,
                input_len=args.input_len,
                output_len=args.output_len,
                length_scale=args.length_scale,
                time_scale=args.time_scale,
                data_path=args.data,
                seed=args.seed,
            )
            return [WORKLOADS[args.workload](backend.tokenizer, options)]
        return build_suite(args.preset or "ci", backend.tokenizer, _tasks(args))
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None


def _context(args: argparse.Namespace, backend: Backend) -> MetricContext:
    import torch

    from sagellm.engines.bench.device_peak import DevicePeak, detect_peak, given_peak
    from sagellm.engines.engine.device import cpu_flags

    info = backend.info
    peak: DevicePeak | None
    if args.peak_tflops:
        peak = given_peak(args.peak_tflops)
    else:
        peak = detect_peak(info.device, info.dtype, cpu_flags(), torch.get_num_threads())
    return MetricContext(
        slo=SLO(args.slo_ttft_ms, args.slo_tpot_ms),
        model_config=info.model_config,
        peak=peak,
        price_per_hour=args.price_per_hour or None,
        world_size=info.world_size,
    )


def _load_override(args: argparse.Namespace) -> LoadPattern | None:
    if args.concurrency:
        return LoadPattern(concurrency=args.concurrency)
    if args.request_rate:
        return LoadPattern(request_rate=args.request_rate)
    return None


def _sweep_plan(args: argparse.Namespace) -> SweepPlan:
    return SweepPlan(args.sweep_start, args.sweep_factor, args.sweep_points, attainment=args.slo_attainment)


def _config_summary(args: argparse.Namespace) -> dict[str, Any]:
    override = _load_override(args)
    summary: dict[str, Any] = {
        "preset": None if args.workload else (args.preset or "ci"),
        "tasks": args.tasks,
        "workload": args.workload,
        "load_override": override.to_json() if override else None,
        "slo": {"ttft_ms": args.slo_ttft_ms, "tpot_ms": args.slo_tpot_ms, "attainment": args.slo_attainment},
        "generation": {"temperature": args.temperature, "ignore_eos": not args.stop_at_eos},
        "seed": args.seed,
        "warmup": not args.no_warmup,
        "price_per_hour": args.price_per_hour or None,
    }
    if args.workload:
        summary["workload_options"] = {
            "num_requests": args.num_requests,
            "input_len": args.input_len,
            "output_len": args.output_len,
            "length_scale": args.length_scale,
            "time_scale": args.time_scale,
            "data": str(args.data) if args.data else None,
        }
    return summary


def _emit(args: argparse.Namespace, session: BenchSession, report: dict[str, Any]) -> None:
    from sagellm.engines.bench.comparison import comparison_markdown
    from sagellm.engines.bench.markdown import report_markdown
    from sagellm.engines.bench.report import JSON_NAME, MARKDOWN_NAME, write_json

    table = report_markdown(report)
    if "compare" in report:
        table += "\n" + comparison_markdown(report["compare"])
        table += "".join(f"{note}\n" for note in report["compare"]["left_out"])
    print(json.dumps(report, indent=2) if args.json else table, end="" if not args.json else "\n")
    if args.out is None:
        return
    write_json(report, args.out / JSON_NAME)
    (args.out / MARKDOWN_NAME).write_text(table)
    written = [args.out / JSON_NAME, args.out / MARKDOWN_NAME]
    if args.plot:
        written += session.plot(args.out)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)


# ----------------------------------------------------------------- argument types


def _rate(text: str) -> float:
    return math.inf if text.strip().lower() in ("inf", "infinity") else arg_types.positive_float(text)
