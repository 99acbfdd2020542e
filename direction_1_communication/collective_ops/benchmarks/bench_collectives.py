"""nccl-tests-style benchmark of the collective backends: 2 ranks on one host, 8 B to 64 MiB.

    python benchmarks/bench_collectives.py [--quick] [--backends gloo,shm] [--ops all_reduce,...] [--out DIR]

Each backend runs in ``--world`` spawned ranks (one torch thread each, as a
tensor-parallel worker has). Per op and size every rank times each
iteration; an iteration's time is the slowest rank's (as nccl-tests), and
the table gives its p50 and p99. Sizes follow nccl-tests: ``size`` is the
whole buffer (all_gather's output, reduce_scatter's input), fp32, and

    algbw = size / time
    busbw = algbw * 2(n-1)/n   all_reduce
            algbw * (n-1)/n    all_gather, reduce_scatter
            algbw              broadcast

``memcpy`` is the same run's single-thread ``Tensor.copy_`` of ``size``
bytes (size / time): the roofline the shm backend's busbw is compared with.

Writes ``bench_collectives.json`` and ``bench_collectives.md`` to ``--out``
(default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sagellm.core import registry
from sagellm.core.config import Section

HERE = Path(__file__).resolve().parent
OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")
MIB = 1 << 20


def bus_factor(op: str, n: int) -> float:
    return {"all_reduce": 2 * (n - 1) / n, "all_gather": (n - 1) / n, "reduce_scatter": (n - 1) / n}.get(op, 1.0)


def sizes(quick: bool) -> list[int]:
    if quick:
        return [8, 4096, 64 << 10, 1 * MIB, 16 * MIB]
    out, size = [], 8
    while size <= 64 * MIB:  # every power of two, as nccl-tests' -f 2: 4 KiB and 64 KiB are the targets' sizes
        out.append(size)
        size *= 2
    return out


def iterations(size: int, quick: bool) -> int:
    budget = 64 * MIB if quick else 512 * MIB  # bytes per point: small sizes get many samples, large ones few
    return max(5, min(300 if quick else 1000, budget // max(size, 1)))


def free_init_method() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def rank_main(
    backend: str, rank: int, world: int, init: str, ops: list[str], quick: bool, options: dict[str, Any], results: Any
) -> None:
    torch.set_num_threads(1)
    options = {**options, "rank": rank, "world_size": world, "init_method": init}
    section = Section(implementation=backend, options=options)
    comm = registry.create_comm_backend(section)
    timings: dict[str, dict[int, list[float]]] = {}
    try:
        warm = torch.zeros(1024)
        for _ in range(2000):  # page faults, first futex waits, the scheduler settling: before any size is timed
            comm.all_reduce(warm)
        for op in ops:
            timings[op] = {}
            for size in sizes(quick):
                timings[op][size] = time_op(comm, op, size, world, quick)
    finally:
        comm.close()
    results.put((rank, timings))


def time_op(comm: Any, op: str, size: int, world: int, quick: bool) -> list[float]:
    elements = max(size // 4, world)
    per_rank = max(elements // world, 1)
    tensor = torch.zeros(per_rank if op == "all_gather" else elements, dtype=torch.float32)
    if op == "reduce_scatter":
        tensor = tensor[: per_rank * world]
    call = {
        "all_reduce": lambda: comm.all_reduce(tensor),
        "all_gather": lambda: comm.all_gather(tensor),
        "reduce_scatter": lambda: comm.reduce_scatter(tensor),
        "broadcast": lambda: comm.broadcast(tensor, 0),
    }[op]
    # the same count on every rank (a time limit would desynchronise them); enough to absorb the peers'
    # start-up (rank 0 tearing down the rendezvous store, first touches of the shared pages)
    for _ in range(3 + min(iterations(size, quick), 200)):
        call()
    comm.barrier()
    samples = []
    for _ in range(iterations(size, quick)):
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1e3)
    return samples


def run_backend(
    backend: str, world: int, ops: list[str], quick: bool, options: dict[str, Any]
) -> dict[str, dict[int, list[float]]]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    init = free_init_method()
    procs = [
        ctx.Process(target=rank_main, args=(backend, r, world, init, ops, quick, options, results))
        for r in range(world)
    ]
    for proc in procs:
        proc.start()
    per_rank = dict(results.get(timeout=1800) for _ in procs)
    for proc in procs:
        proc.join(30)
    # an iteration takes as long as its slowest rank
    return {
        op: {
            size: [max(per_rank[r][op][size][i] for r in range(world)) for i in range(len(per_rank[0][op][size]))]
            for size in per_rank[0][op]
        }
        for op in ops
    }


def memcpy_us(size: int, quick: bool) -> float:
    torch.set_num_threads(1)
    src = torch.ones(max(size // 4, 1), dtype=torch.float32)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    samples = []
    for _ in range(iterations(size, quick)):
        start = time.perf_counter_ns()
        dst.copy_(src)
        samples.append((time.perf_counter_ns() - start) / 1e3)
    return statistics.median(samples)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(backend: str, op: str, size: int, samples: list[float], world: int, copy_us: float) -> dict[str, Any]:
    p50 = statistics.median(samples)
    algbw = size / p50 / 1e3  # bytes/us -> GB/s
    busbw = algbw * bus_factor(op, world)
    memcpy_gbs = size / copy_us / 1e3
    return {
        "backend": backend,
        "op": op,
        "bytes": size,
        "iters": len(samples),
        "p50_us": round(p50, 2),
        "p99_us": round(percentile(samples, 0.99), 2),
        "algbw_gbs": round(algbw, 3),
        "busbw_gbs": round(busbw, 3),
        "memcpy_gbs": round(memcpy_gbs, 3),
        "busbw_vs_memcpy": round(busbw / memcpy_gbs, 3),
    }


def human(size: int) -> str:
    for unit, scale in (("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size // scale} {unit}"
    return f"{size} B"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Collective backends, nccl-tests style",
        "",
        f"`{meta['command']}` on {meta['cpu']} ({meta['cores']} cores), torch {meta['torch']}, "
        f"{meta['world']} ranks, fp32, one torch thread per rank. Time = the slowest rank per iteration.",
        "",
        "| op | backend | size | p50 us | p99 us | algbw GB/s | busbw GB/s | memcpy GB/s | busbw / memcpy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['op']} | {r['backend']} | {human(r['bytes'])} | {r['p50_us']} | {r['p99_us']} | "
            f"{r['algbw_gbs']} | {r['busbw_gbs']} | {r['memcpy_gbs']} | {r['busbw_vs_memcpy']} |"
        )
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few sizes and iterations (seconds), for CI")
    parser.add_argument("--backends", default="gloo,shm")
    parser.add_argument("--ops", default=",".join(OPS))
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--shm-options", type=json.loads, default={}, help="e.g. '{\"slot_bytes\": 1048576}'")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    ops = [op for op in args.ops.split(",") if op]
    unknown = sorted(set(ops) - set(OPS))
    if unknown:
        parser.error(f"unknown ops {unknown}; known: {', '.join(OPS)}")
    copy = {size: memcpy_us(size, args.quick) for size in sizes(args.quick)}
    rows = []
    for backend in args.backends.split(","):
        options = args.shm_options if backend == "shm" else {}
        timed = run_backend(backend, args.world, ops, args.quick, options)
        rows += [summarize(backend, op, s, timed[op][s], args.world, copy[s]) for op in ops for s in timed[op]]
    rows.sort(key=lambda r: (OPS.index(r["op"]), r["bytes"], r["backend"]))
    meta = {
        "command": "python benchmarks/bench_collectives.py " + " ".join(sys.argv[1:]),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "world": args.world,
        "shm_options": args.shm_options,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_collectives.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    table = markdown(rows, meta)
    (args.out / "bench_collectives.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
