"""Ready on-hardware check: sageLLM's backend against the vendor's own bandwidth test (target >= 80 %).

    # on the vendor's machine: run the vendor tool, then the same sizes through sageLLM
    python benchmarks/vendor_busbw.py --vendor hccl --nranks 8
    # or parse a saved run of the tool (stdout), then time sageLLM
    python benchmarks/vendor_busbw.py --vendor rccl --parse all_reduce_perf.log
    # parse only (no accelerator needed): the vendor's busbw table
    python benchmarks/vendor_busbw.py --vendor xccl --parse xccl.log --nranks 8 --no-ours

Vendors and tools (from the vendor table): hccl -> CANN hccl_test
``all_reduce_test``; cncl -> ``/usr/local/neuware/bin/allreduce``; rccl ->
rccl-tests ``all_reduce_perf``; xccl -> ``/opt/xccl/perf/all_reduce``. The
vendor's rows become nccl-tests records (busbw from size and time with
nccl-tests' formula, printed algbw kept beside it); sageLLM's backend is
timed at the same sizes on ``--nranks`` spawned ranks; the report gives
ours / vendor busbw per size and, for messages of at least ``--large``
bytes, their median against ``--target`` (0.8). Writes
``vendor_busbw_<vendor>.json`` and ``.md`` into ``--out``.

No vendor figure in this repository was measured: none of this hardware
was available. ``--plugin-path``/``--preload``/``--backend``/``--device``
exist so CI can run the script end to end over the fake (gloo) plugins.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from sagellm.core.errors import SageLLMError
from sagellm.core.testing.comm_backend import free_init_method
from sagellm.domestic_interconnect import VendorSpec, bus_bandwidth_gbs, parse_tool_output, vendor_spec
from sagellm.domestic_interconnect.measure import MeasureRequest, measure_times_us
from sagellm.domestic_interconnect.tool_output import BandwidthRecord

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def tool_command(spec: VendorSpec, nranks: int, min_bytes: int, max_bytes: int) -> list[str]:
    """The vendor tool's all_reduce sweep, as its documentation (or FlagPerf's scripts) runs it."""
    b, e = str(min_bytes), str(max_bytes)
    if spec.key == "hccl":
        home = os.environ.get("ASCEND_HOME_PATH", "/usr/local/Ascend/ascend-toolkit/latest")
        tool = f"{home}/tools/hccl_test/bin/all_reduce_test"
        return [
            "mpirun",
            "-n",
            str(nranks),
            tool,
            "-b",
            b,
            "-e",
            e,
            "-f",
            "2",
            "-d",
            "fp32",
            "-o",
            "sum",
            "-p",
            str(nranks),
        ]
    if spec.key == "rccl":
        return ["all_reduce_perf", "-b", b, "-e", e, "-f", "2", "-g", str(nranks)]
    if spec.key == "cncl":  # counts are elements (fp32 by default)
        return [
            spec.bench_tool,
            "--thread",
            str(nranks),
            "--mincount",
            str(min_bytes // 4),
            "--maxcount",
            str(max_bytes // 4),
            "--multifactor",
            "2",
            "--warmup_loop",
            "20",
            "--loop",
            "200",
        ]
    return [
        spec.bench_tool,
        "--nxpus",
        str(nranks),
        "--minbytes",
        b,
        "--maxbytes",
        e,
        "--op_type",
        "sum",
        "--data_type",
        "float",
        "--warmup_iters",
        "20",
        "--iters",
        "200",
        "-c",
        "0",
    ]


def run_tool(spec: VendorSpec, command: list[str], timeout_s: float) -> str:
    """The tool's stdout; SystemExit with a clear message when it is missing or fails."""
    binary = command[1] if command[0] == "mpirun" else command[0]
    if shutil.which(command[0]) is None or (command[0] == "mpirun" and not Path(binary).exists()):
        raise SystemExit(
            f"{spec.vendor}'s test tool is not installed here ({shlex.join(command)}); "
            "run it where it is, save its stdout and pass --parse FILE"
        )
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def compare(records: list[BandwidthRecord], ours_us: dict[int, float] | None, large: int) -> list[dict[str, Any]]:
    rows = []
    for rec in records:
        row: dict[str, Any] = {
            "size_bytes": rec.size_bytes,
            "vendor_time_us": rec.time_us,
            "vendor_algbw_printed": rec.algbw_printed,
            "vendor_algbw_gbs": rec.algbw_gbs,
            "vendor_busbw_gbs": rec.busbw_gbs,
            "printed_unit_ratio": rec.printed_unit_ratio,
            "check": rec.check,
            "large": rec.size_bytes >= large,
        }
        if ours_us is not None and rec.size_bytes in ours_us:
            ours_alg = rec.size_bytes / ours_us[rec.size_bytes] / 1e3
            row["ours_time_us"] = ours_us[rec.size_bytes]
            row["ours_busbw_gbs"] = bus_bandwidth_gbs(rec.op, ours_alg, rec.nranks)
            row["ratio"] = row["ours_busbw_gbs"] / rec.busbw_gbs if rec.busbw_gbs else None
        rows.append(row)
    return rows


def summarize(rows: list[dict[str, Any]], target: float) -> dict[str, Any]:
    ratios = [r["ratio"] for r in rows if r["large"] and r.get("ratio") is not None and r["check"] != "failed"]
    if not ratios:
        return {"large_ratio_median": None, "target": target, "meets_target": None}
    median = statistics.median(ratios)
    return {"large_ratio_median": median, "target": target, "meets_target": median >= target}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# {result['vendor']} ({result['library']}): sageLLM vs {result['tool']}, {result['op']}, {result['nranks']} ranks",
        "",
        "| size (B) | vendor time (us) | vendor algbw printed | vendor busbw (GB/s) | ours time (us) | ours busbw (GB/s) | ours/vendor |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        ours_t = f"{r['ours_time_us']:.2f}" if "ours_time_us" in r else "-"
        ours_b = f"{r['ours_busbw_gbs']:.2f}" if "ours_busbw_gbs" in r else "-"
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-"
        printed = "-" if r["vendor_algbw_printed"] is None else f"{r['vendor_algbw_printed']:g}"
        lines.append(
            f"| {r['size_bytes']} | {r['vendor_time_us']:.2f} | {printed} | {r['vendor_busbw_gbs']:.2f} "
            f"| {ours_t} | {ours_b} | {ratio} |"
        )
    s = result["summary"]
    verdict = "not measured" if s["meets_target"] is None else ("meets" if s["meets_target"] else "MISSES")
    median = "-" if s["large_ratio_median"] is None else f"{s['large_ratio_median']:.3f}"
    lines += [
        "",
        f"Median ours/vendor busbw for sizes >= {result['large_bytes']} B: {median} "
        f"(target >= {s['target']}): {verdict}.",
        f"Source of vendor rows: {result['vendor_source']}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--vendor", required=True, help="hccl, cncl, rccl, xccl (or bkcl)")
    parser.add_argument("--parse", type=Path, help="a saved stdout of the vendor tool instead of running it")
    parser.add_argument("--nranks", type=int, help="ranks of the run (read from the output when it lists them)")
    parser.add_argument("--op", default="all_reduce")
    parser.add_argument("--min-bytes", type=int, default=1 << 20)
    parser.add_argument("--max-bytes", type=int, default=1 << 30)
    parser.add_argument("--large", type=int, default=1 << 26, help="sizes counted for the target (bytes)")
    parser.add_argument("--target", type=float, default=0.8)
    parser.add_argument("--no-ours", action="store_true", help="only parse and convert the vendor's numbers")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--backend", help="torch.distributed backend override (CI fakes only)")
    parser.add_argument("--device", help="device override, e.g. cpu (CI fakes only)")
    parser.add_argument("--plugin-path", help="directory put first on sys.path in every rank (CI fakes only)")
    parser.add_argument("--preload", help="module imported first in every rank (CI fakes only)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    spec = vendor_spec(args.vendor)
    if args.parse:
        text, source = args.parse.read_text(encoding="utf-8", errors="replace"), str(args.parse)
    else:
        command = tool_command(spec, args.nranks or 8, args.min_bytes, args.max_bytes)
        text, source = run_tool(spec, command, args.timeout * 10), shlex.join(command)
    records = parse_tool_output(spec.bench_format, text, op=args.op, nranks=args.nranks)
    nranks = records[0].nranks
    ours_us = None
    if not args.no_ours:
        options = {k: v for k, v in (("backend", args.backend), ("device", args.device)) if v}
        sizes = tuple(sorted({r.size_bytes for r in records if r.ok}))
        request = MeasureRequest(
            key=spec.key,
            op=args.op,
            sizes=sizes,
            iters=args.iters,
            warmup=args.warmup,
            timeout_s=args.timeout,
            options=options,
            plugin_path=args.plugin_path,
            preload=args.preload,
        )
        try:
            ours_us = measure_times_us(request, nranks, free_init_method())
        except SageLLMError as exc:
            print(f"sageLLM's '{spec.key}' backend could not be timed: {exc}", file=sys.stderr)
            return 2
    rows = compare(records, ours_us, args.large)
    result = {
        "benchmark": "vendor_busbw",
        "vendor": spec.vendor,
        "key": spec.key,
        "library": spec.library,
        "tool": spec.bench_tool,
        "op": args.op,
        "nranks": nranks,
        "large_bytes": args.large,
        "vendor_source": source,
        "rows": rows,
        "summary": summarize(rows, args.target),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"vendor_busbw_{spec.key}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / f"{stem}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
