"""Benchmark tier migration bandwidth of PagedKVPool per direction, as a ratio of a plain tensor copy.

    python benchmarks/bench_migration.py [--quick] [--out DIR]

Directions: device->host, host->device, host->disk, disk->host and
device<->disk, on a SmolLM2-135M-like bfloat16 layout, through the public
API (``move_blocks(...).result()``: reserve, worker hand-off, copies,
settle). Peer, measured in the same run and alternating with the pool round
by round: ONE plain ``Tensor.copy_`` of the same number of bytes between
contiguous tensors on the same media (RAM -> RAM, RAM -> mmap file, ...).
Ratio = pool GB/s (end to end) / plain-copy GB/s. On a CPU-only machine
"device" and "host" are both RAM; with CUDA the device tier is on the GPU
and the host tier pinned, and the peer copies between the same media.

Writes ``bench_migration.json`` and ``bench_migration.md`` to ``--out`` (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sagellm.core.types import KVLayout, Tier
from sagellm.core.types.kv import MigrationRate
from sagellm.kv_pool import PagedKVPool, PoolOptions

HERE = Path(__file__).resolve().parent
SMOLLM2 = {"num_layers": 30, "num_kv_heads": 3, "head_dim": 64, "block_size": 16}
DIRECTIONS = [
    (Tier.DEVICE, Tier.HOST),
    (Tier.HOST, Tier.DEVICE),
    (Tier.HOST, Tier.DISK),
    (Tier.DISK, Tier.HOST),
    (Tier.DEVICE, Tier.DISK),
    (Tier.DISK, Tier.DEVICE),
]


def peer_buffers(
    nbytes: int, src_tier: Tier, dst_tier: Tier, directory: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous source and destination of ``nbytes`` on the same media as the two tiers."""
    numel = nbytes // 2  # bfloat16

    def buffer(tier: Tier, name: str) -> torch.Tensor:
        if tier is Tier.DISK:
            path = os.path.join(directory, f"peer-{name}.bin")
            return torch.from_file(path, shared=True, size=numel, dtype=torch.bfloat16)
        if tier is Tier.DEVICE:
            return torch.empty(numel, dtype=torch.bfloat16, device=device)
        return torch.empty(numel, dtype=torch.bfloat16, pin_memory=device.type == "cuda")

    src, dst = buffer(src_tier, "src"), buffer(dst_tier, "dst")
    src.normal_()
    return src, dst


def plain_copy_seconds(dst: torch.Tensor, src: torch.Tensor) -> float:
    start = time.perf_counter()
    dst.copy_(src, non_blocking=True)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_migration(quick: bool, device: str) -> dict[str, Any]:
    num_blocks = 32 if quick else 256
    rounds = 3 if quick else 9
    layout = KVLayout(**SMOLLM2, num_blocks=num_blocks, dtype="bfloat16", device=device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-kv-migration-") as directory:
        options = PoolOptions(host_blocks=num_blocks, disk_blocks=num_blocks, disk_dir=directory, migration_workers=1)
        with PagedKVPool(layout, options) as pool:
            for src_tier, dst_tier in DIRECTIONS:
                timing = time_direction(pool, src_tier, dst_tier, directory, rounds)
                rows.append(
                    {
                        "direction": f"{src_tier.value}->{dst_tier.value}",
                        "blocks": num_blocks,
                        "mb": round(num_blocks * layout.bytes_per_block / 1e6, 1),
                        "pool_gb_per_s": round(timing["pool"], 2),
                        "pool_copy_only_gb_per_s": round(timing["copies"], 2),
                        "plain_copy_gb_per_s": round(timing["plain"], 2),
                        "ratio_pool_over_plain": round(timing["pool"] / timing["plain"], 3),
                    }
                )
            tier_stats = [_rate_row(rate) for rate in pool.tier_stats().migrations]
    return {"rows": rows, "tier_stats_migrations": tier_stats}


def time_direction(pool: PagedKVPool, src_tier: Tier, dst_tier: Tier, directory: str, rounds: int) -> dict[str, float]:
    """Median GB/s of: ``move_blocks(...).result()`` end to end, its copies alone, and the plain-copy peer.

    Pool and peer alternate round by round, so load on a shared host hits
    both alike; round 0 warms up (page faults, file blocks, worker start).
    """
    ids = pool.allocate(pool.layout.num_blocks, src_tier)
    for block in ids:
        pool.block_data(block, src_tier).normal_()
    nbytes = len(ids) * pool.layout.bytes_per_block
    device = torch.device(pool.layout.device)
    peer_src, peer_dst = peer_buffers(nbytes, src_tier, dst_tier, directory, device)
    samples: dict[str, list[float]] = {"pool": [], "copies": [], "plain": []}
    for round_ in range(rounds + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = pool.move_blocks(ids, src_tier, dst_tier).result()
        elapsed = time.perf_counter() - start
        ids = pool.move_blocks(result.dst_block_ids, dst_tier, src_tier).result().dst_block_ids
        plain = plain_copy_seconds(peer_dst, peer_src)
        if round_:
            samples["pool"].append(nbytes / elapsed / 1e9)
            samples["copies"].append(nbytes / sum(t.seconds for t in result.timings) / 1e9)
            samples["plain"].append(nbytes / plain / 1e9)
    pool.free(ids, src_tier)
    return {name: statistics.median(values) for name, values in samples.items()}


def _rate_row(rate: MigrationRate) -> dict[str, Any]:
    return {
        "direction": f"{rate.src_tier.value}->{rate.dst_tier.value}",
        "blocks": rate.num_blocks,
        "bytes": rate.num_bytes,
        "gb_per_s": round(rate.gb_per_s, 2),
    }


def to_markdown(results: dict[str, Any]) -> str:
    rows = results["migration"]["rows"]
    return (
        "\n".join(
            [
                f"# kv_pool migration benchmark ({'quick' if results['quick'] else 'full'})",
                "",
                f"`{results['machine']}`",
                "",
                f"SmolLM2-135M-like bfloat16 blocks, {rows[0]['blocks']} blocks = {rows[0]['mb']} MB per migration, "
                "median of the rounds; peer = one plain `Tensor.copy_` of the same bytes on the same media.",
                "",
                "| direction | pool GB/s (end to end) | pool GB/s (copies only) | plain copy GB/s | pool / plain |",
                "|---|---:|---:|---:|---:|",
                *(
                    f"| {row['direction']} | {row['pool_gb_per_s']} | {row['pool_copy_only_gb_per_s']} "
                    f"| {row['plain_copy_gb_per_s']} | {row['ratio_pool_over_plain']} |"
                    for row in rows
                ),
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run in a few seconds (CI)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="device tier")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    # Same thread count for pool and peer; on a loaded 2-core host extra OpenMP threads add noise, not speed.
    torch.set_num_threads(1)
    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    results: dict[str, Any] = {
        "quick": args.quick,
        "device": args.device,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs{gpu}, "
        f"{torch.get_num_threads()} torch thread(s), python {platform.python_version()}, torch {torch.__version__}",
        "migration": bench_migration(args.quick, args.device),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_migration.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = to_markdown(results)
    (args.out / "bench_migration.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
