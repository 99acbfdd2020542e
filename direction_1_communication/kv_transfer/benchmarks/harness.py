"""What the KV channel benchmarks share (not a benchmark itself: nox runs only ``bench_*.py``).

The KV layout of SmolLM2-135M with scattered block ids, rounds that
alternate between contenders, receivers in spawned processes, and the
command line and results files, so that ``bench_kv_transfer.py`` (shm
against plain copies) and ``bench_kv_channels.py`` (shm against tcp)
measure the same thing the same way and their numbers compare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
LAYERS, HEADS, DIM, BLOCK = 30, 3, 64, 16
DTYPE = torch.bfloat16
POOL_BLOCKS = 600


def make_kv(num_blocks: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    shape = (num_blocks, BLOCK, HEADS, DIM)
    return [(torch.randn(shape).to(DTYPE), torch.randn(shape).to(DTYPE)) for _ in range(LAYERS)]


def scattered_ids(n: int, num_blocks: int, offset: int = 0) -> list[int]:
    """n distinct ids spread over the pool (stride 7), as a real block table is."""
    return [(offset + 7 * i) % num_blocks for i in range(n)]


def timed_rounds(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, the functions alternating round by round.

    Alternating keeps a burst of load from another process from landing on
    one contender only; each is warmed up first (page faults, first mapping).
    """
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


# ---------------------------------------------------------------- one transfer, timed by the sender
def round_trip(src: Any, dst: Any, n: int) -> Callable[[], None]:
    """One transfer of ``n`` blocks end to end in one process: transfer -> receive -> accept -> handle done."""
    ids = scattered_ids(n, POOL_BLOCKS)
    dst_ids = scattered_ids(n, POOL_BLOCKS, offset=3)

    def once() -> None:
        handle = src.transfer(ids, dst.node)
        incoming = dst.receive(timeout=30)
        assert incoming is not None
        incoming.accept(dst_ids)
        handle.wait(30)

    return once


def send_and_wait(src: Any, target: str, ids: list[int]) -> Callable[[], None]:
    """One transfer to a receiver in another process, until its handle completes."""

    def once() -> None:
        src.transfer(ids, target).wait(30)

    return once


# ---------------------------------------------------------------- receivers in spawned processes
def serve(ch: Any, ready: Any, stop: Any) -> None:
    """Child side: say our node on ``ready``, then accept every transfer as it arrives until ``stop``."""
    ready.put(ch.node)
    while stop.empty():
        incoming = ch.receive(timeout=0.1)
        if incoming is not None:
            incoming.accept(scattered_ids(incoming.num_blocks, POOL_BLOCKS, offset=3))


@contextlib.contextmanager
def spawned_receivers(target: Callable[..., None], args_per_child: list[tuple[Any, ...]]) -> Iterator[list[str]]:
    """One spawned ``target(*args, ready, stop)`` per args, started in turn; yields the node each one said.

    On the way out every child is told to stop, given 30 s, then killed.
    """
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Queue()
    children = [ctx.Process(target=target, args=(*args, ready, stop), daemon=True) for args in args_per_child]
    try:
        nodes = []
        for child in children:
            child.start()
            nodes.append(ready.get(timeout=120))
        yield nodes
    finally:
        for _ in children:
            stop.put(True)
        for child in children:
            if child.pid is None:
                continue  # never started (an earlier one failed to come up)
            child.join(30)
            if child.is_alive():
                child.kill()


# ---------------------------------------------------------------- command line and results
def parse_args(doc: str | None, argv: list[str] | None) -> argparse.Namespace:
    """``--quick``, ``--out`` and ``--threads``, with torch set to that many threads."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (a few seconds)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output directory")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: as each worker of the PD engine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args


def sizes_and_repeats(quick: bool) -> tuple[list[int], int]:
    """Transfer sizes in blocks, and timed rounds per size."""
    return ([1, 16, 64], 5) if quick else ([1, 4, 16, 64, 256], 30)


def run_record(name: str, quick: bool, repeats: int, bytes_per_block: int) -> dict[str, Any]:
    """The head of a results file: what ran, on what layout, and how loaded the machine was."""
    return {
        "benchmark": name,
        "quick": quick,
        "repeats": repeats,
        "layout": {"layers": LAYERS, "kv_heads": HEADS, "head_dim": DIM, "block_size": BLOCK, "dtype": "bfloat16"},
        "bytes_per_block": bytes_per_block,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "machine": platform.machine(),
    }


def write_results(out: Path, stem: str, result: dict[str, Any], table: str) -> None:
    """``<stem>.json`` and ``<stem>.md`` in ``out``; the table is printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table)
    print(table)
