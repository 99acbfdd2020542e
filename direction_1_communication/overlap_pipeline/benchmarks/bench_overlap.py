"""Overlap efficiency of the thread manager on the three scenarios, against the serial schedule.

    python benchmarks/bench_overlap.py [--quick] [--out DIR] [--compute-threads 1 2] [--cold]

For each scenario and each torch thread count of the compute side it times
T_comp (comm switched off), T_comm (compute switched off), the serial
schedule and T_both (the ``threads`` manager), each the median of
``--repeats`` runs, and reports

    E    = (T_comp + T_comm - T_both) / min(T_comp, T_comm)
    idle = max(0, T_both - T_comp) / T_both

plus whether the overlapped outputs are bit-identical to the serial ones.
Writes ``bench_overlap.json`` and ``bench_overlap.md`` into ``--out``
(default ``benchmarks/results/``). ``--quick`` runs small sizes in seconds
(CI smoke test); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from sagellm.overlap_pipeline import SerialOverlapManager, ThreadOverlapManager, idle_share, overlap_efficiency
from sagellm.overlap_pipeline.scenarios.decoder_layer import LayerShape, make_layers
from sagellm.overlap_pipeline.scenarios.disk_kv_store import DiskKVStore
from sagellm.overlap_pipeline.scenarios.gloo_ranks import gloo_all_reduce, run_gloo_ranks
from sagellm.overlap_pipeline.scenarios.kv_prefetch import PrefetchDecode
from sagellm.overlap_pipeline.scenarios.kv_receiver import KVReceiverProcess
from sagellm.overlap_pipeline.scenarios.kv_shipping import LayerwiseKVShipping
from sagellm.overlap_pipeline.scenarios.tp_all_reduce import MicrobatchTP, make_shards

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
SHAPE = LayerShape()  # SmolLM2-135M: hidden 576, MLP 1536, 9 heads / 3 KV heads of 64

FULL = {
    "prefetch": {"layers": 8, "batch": 16, "tokens": 1024, "steps": 2},
    # a 256-token prompt; then 128 new tokens after a 4096-token prefix cached on the prefill side
    "shipping": [{"layers": 8, "tokens": 256, "prefix": 0}, {"layers": 8, "tokens": 128, "prefix": 4096}],
    "tp": {"layers": 8, "microbatch": 64},
    "repeats": 7,
}
QUICK = {
    "prefetch": {"layers": 4, "batch": 4, "tokens": 128, "steps": 1},
    "shipping": [{"layers": 4, "tokens": 32, "prefix": 0}, {"layers": 2, "tokens": 16, "prefix": 64}],
    "tp": {"layers": 4, "microbatch": 8},
    "repeats": 2,
}

Run = Callable[..., Any]  # run(manager, compute=..., comm=...) -> outputs


def interleaved_medians(
    runs: dict[str, Callable[[], Any]], repeats: int, before: Callable[[], None] | None = None
) -> dict[str, float]:
    """Median seconds of each run, taking turns so that a burst of load on shared cores hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            if before is not None:
                before()
            began = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - began)
    return {name: statistics.median(times) for name, times in samples.items()}


def same_outputs(a: Any, b: Any) -> bool:
    """Bit-identical tensors (or equal digests): "the same tokens as the serial schedule"."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same_outputs(x, y) for x, y in zip(a, b))
    return bool(a == b)


def measure(run: Run, repeats: int, before: Callable[[], None] | None = None) -> dict[str, Any]:
    """T_comp, T_comm, serial and overlapped wall time of one scenario, and E / idle from them."""
    serial, threads = SerialOverlapManager(), ThreadOverlapManager(cuda_streams="off")
    try:
        reference = run(serial)  # also the warm-up of both sides
        overlapped = run(threads)
        runs = {
            "comp": lambda: run(serial, comm=False),
            "comm": lambda: run(serial, compute=False),
            "serial": lambda: run(serial),
            "both": lambda: run(threads),
        }
        threads.stats.reset()
        t = interleaved_medians(runs, repeats, before)
        t_comp, t_comm, t_serial, t_both = t["comp"], t["comm"], t["serial"], t["both"]
        in_call = list(threads.stats.snapshot().values())[0]  # one kind: "schedule" or "start"
    finally:
        serial.close()
        threads.close()
    return {
        "t_comp_ms": t_comp * 1e3,
        "t_comm_ms": t_comm * 1e3,
        "t_serial_ms": t_serial * 1e3,
        "t_both_ms": t_both * 1e3,
        "efficiency": overlap_efficiency(t_comp, t_comm, t_both),
        "efficiency_serial": overlap_efficiency(t_comp, t_comm, t_serial),
        # the manager's own per-call figures, summed over the timed overlapped runs (see stats.py)
        "efficiency_in_call": in_call.efficiency,
        "idle_share_in_call": in_call.idle_share,
        "idle_share": idle_share(t_comp, t_both),
        "speedup": t_serial / t_both,
        "same_as_serial": same_outputs(reference, overlapped),
    }


def bench_prefetch(size: dict[str, int], repeats: int, cold: bool) -> dict[str, Any]:
    """(a) decode layer l while layer l+1's KV is read from disk (os.preadv into host buffers)."""
    kv_shape = (size["batch"], size["tokens"], SHAPE.num_kv_heads, SHAPE.head_dim)
    with tempfile.TemporaryDirectory(prefix="sagellm-kv-", dir=Path.home()) as tmp:
        store = DiskKVStore.create(Path(tmp) / "kv.bin", size["layers"], kv_shape)
        try:
            x0 = torch.randn(size["batch"], SHAPE.hidden, generator=torch.Generator().manual_seed(0))
            decode = PrefetchDecode(store, make_layers(SHAPE, min(size["layers"], 4)), x0, steps=size["steps"])
            row = measure(decode.run, repeats, store.drop_page_cache if cold else None)
        finally:
            store.close()
    mib = size["steps"] * size["layers"] * store.chunk_nbytes / 2**20
    return {"scenario": "a: disk-to-host KV prefetch", "comm": f"{mib:.0f} MiB read", **row}


def bench_shipping(size: dict[str, int], repeats: int) -> dict[str, Any]:
    """(b) prefill layer l while layer l-1's KV goes over a Unix socket pair to a receiver process."""
    x = torch.randn(size["tokens"], SHAPE.hidden, generator=torch.Generator().manual_seed(0))
    receiver = KVReceiverProcess()
    try:
        prefill = LayerwiseKVShipping(make_layers(SHAPE, size["layers"]), x, receiver, size["prefix"])
        row = measure(prefill.run, repeats)
    finally:
        receiver.close()
    mib = size["layers"] * 2 * (size["prefix"] + size["tokens"]) * SHAPE.kv_dim * 4 / 2**20
    prompt = f"{size['tokens']} tokens" + (f" after a cached {size['prefix']}" if size["prefix"] else "")
    return {"scenario": f"b: layer-wise KV shipping, {prompt}", "comm": f"{mib:.1f} MiB sent", **row}


def _tp_rank(rank: int, world_size: int, size: dict[str, int], repeats: int, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(size["microbatch"], SHAPE.hidden, generator=gen) for _ in range(2)]
    scenario = MicrobatchTP(make_shards(SHAPE, size["layers"], rank, world_size), xs, gloo_all_reduce)
    return measure(scenario.run, repeats, dist.barrier)  # the barrier starts every timed run together


class _TPRank:
    """A picklable ``fn(rank, world_size)`` for run_gloo_ranks carrying the sizes."""

    def __init__(self, size: dict[str, int], repeats: int, threads: int) -> None:
        self.size, self.repeats, self.threads = size, repeats, threads

    def __call__(self, rank: int, world_size: int) -> dict[str, Any]:
        return _tp_rank(rank, world_size, self.size, self.repeats, self.threads)


def bench_tp(size: dict[str, int], repeats: int, threads: int) -> dict[str, Any]:
    """(c) 2 gloo ranks, two micro-batches: one computes while the other's all-reduce runs."""
    ranks = run_gloo_ranks(_TPRank(size, repeats, threads), world_size=2, threads_per_rank=threads)
    row = dict(ranks[0])
    row["same_as_serial"] = all(r["same_as_serial"] for r in ranks)
    kib = 2 * size["microbatch"] * SHAPE.hidden * 4 / 1024
    return {
        "scenario": "c: async all-reduce (2 gloo ranks)",
        "comm": f"{size['layers']} x {kib:.0f} KiB all-reduced",
        **row,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(rows: list[dict[str, Any]]) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    lines = [
        "| scenario | compute threads | comm | T_comp ms | T_comm ms | serial ms | T_both ms | E | idle | speedup "
        "| E in call | same as serial |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['compute_threads']} | {r['comm']} | {r['t_comp_ms']:.2f} | {r['t_comm_ms']:.2f} "
            f"| {r['t_serial_ms']:.2f} | {r['t_both_ms']:.2f} | {num(r['efficiency'], '.2f')} "
            f"| {num(r['idle_share'], '.0%')} | {r['speedup']:.2f}x | {num(r['efficiency_in_call'], '.2f')} "
            f"| {'yes' if r['same_as_serial'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (seconds; figures mean nothing)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--compute-threads", type=int, nargs="+", default=None, help="torch threads of compute (default 1 2; quick: 1)"
    )
    parser.add_argument("--scenarios", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure (median)")
    parser.add_argument("--cold", action="store_true", help="(a): drop the KV file's page cache before every run")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or int(sizes["repeats"])  # type: ignore[call-overload]
    rows: list[dict[str, Any]] = []
    for threads in args.compute_threads or ([1] if args.quick else [1, 2]):
        torch.set_num_threads(threads)
        benches = {
            "a": lambda: [bench_prefetch(sizes["prefetch"], repeats, args.cold)],  # type: ignore[arg-type]
            "b": lambda: [bench_shipping(size, repeats) for size in sizes["shipping"]],  # type: ignore[attr-defined]
            "c": lambda: [bench_tp(sizes["tp"], repeats, threads)],  # type: ignore[arg-type]  # noqa: B023
        }
        for name in args.scenarios:
            for measured in benches[name]():
                row = {**measured, "compute_threads": threads}
                rows.append(row)
                print(markdown([row]).splitlines()[-1], flush=True)
    result = {
        "benchmark": "overlap_pipeline",
        "quick": args.quick,
        "cold_page_cache": args.cold,
        "repeats": repeats,
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "sizes": {k: v for k, v in sizes.items() if k != "repeats"},
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_overlap.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(rows)
    (args.out / "bench_overlap.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
