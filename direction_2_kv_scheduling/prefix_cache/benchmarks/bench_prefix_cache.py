"""Lookup / insert latency and memory of the hash-chain and radix indexes vs a naive prefix dict.

Workload (block size 16, seeded): chat conversations that share a few system
prompts. Every turn of every conversation is inserted, as the engine does when
a request finishes, until the index caches the target number of unique
tokens. Timed calls then replay realistic admissions:

* 60 % follow-up turns: a cached conversation plus a new user message,
* 30 % new conversations on a cached system prompt,
* 10 % new system prompts (a miss),

and inserts of a finished turn (new blocks are released and removed again,
untimed, so the cache size stays put). Every index runs the same workload in
the same process: ``hash_chain``, ``radix`` and, as the peer, a dict keyed by
the full token-prefix tuple of every block.

    python benchmarks/bench_prefix_cache.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sagellm.core.types import PrefixHit
from sagellm.prefix_cache import HashChainPrefixIndex, RadixPrefixIndex

BLOCK_SIZE = 16
SYSTEM_TOKENS = 512
VOCAB = 32_000
ROUNDS = 3  # each call is timed this often and its fastest run kept: filters preemption on shared hosts


class NaivePrefixDict:
    """The obvious design: one dict entry per block, keyed by the whole prefix up to it.

    Correct and collision-free, but each key copies and hashes the full prefix,
    so a lookup costs O(prompt_len^2 / block_size) and memory grows the same way.
    """

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._blocks: dict[tuple[int, ...], int] = {}
        self._refs: dict[int, int] = {}
        self._keys: dict[int, tuple[int, ...]] = {}

    def lookup(self, tokens: Sequence[int], namespace: str = "") -> PrefixHit:
        matched: list[int] = []
        for end in range(self.block_size, len(tokens) + 1, self.block_size):
            block_id = self._blocks.get(tuple(tokens[:end]))
            if block_id is None:
                break
            matched.append(block_id)
            self._refs[block_id] += 1
        return PrefixHit(len(matched) * self.block_size, tuple(matched))

    def insert(self, tokens: Sequence[int], block_ids: Sequence[int], namespace: str = "") -> list[int]:
        adopted: list[int] = []
        for i, end in enumerate(range(self.block_size, len(tokens) + 1, self.block_size)):
            key = tuple(tokens[:end])
            if key not in self._blocks:
                self._blocks[key] = block_ids[i]
                self._refs[block_ids[i]] = 1
                self._keys[block_ids[i]] = key
                adopted.append(block_ids[i])
        return adopted

    def release(self, block_ids: Sequence[int]) -> None:
        for block_id in block_ids:
            self._refs[block_id] -= 1

    def remove(self, block_ids: Sequence[int]) -> None:
        for block_id in block_ids:
            del self._blocks[self._keys.pop(block_id)]
            del self._refs[block_id]

    def __len__(self) -> int:
        return len(self._blocks)


Index = HashChainPrefixIndex | RadixPrefixIndex | NaivePrefixDict
INDEXES: dict[str, type[Index]] = {
    "hash_chain": HashChainPrefixIndex,
    "radix": RadixPrefixIndex,
    "naive_dict": NaivePrefixDict,
}


@dataclass(slots=True)
class Workload:
    """Conversations to fill the cache with, and the calls to time afterwards."""

    fill: list[list[int]] = field(default_factory=list)
    lookups: list[list[int]] = field(default_factory=list)
    inserts: list[list[int]] = field(default_factory=list)


def _text(rng: random.Random, low: int, high: int) -> list[int]:
    return [rng.randrange(VOCAB) for _ in range(rng.randint(low, high))]


def make_workload(target_tokens: int, num_calls: int, seed: int = 0) -> Workload:
    """Conversations sharing system prompts until ``target_tokens`` unique full-block tokens exist."""
    rng = random.Random(seed)
    num_systems = max(2, target_tokens // 50_000)
    systems = [_text(rng, SYSTEM_TOKENS, SYSTEM_TOKENS) for _ in range(num_systems)]
    work = Workload()
    conversations: list[list[int]] = []
    unique = sum(len(s) for s in systems)
    while unique < target_tokens:
        conversation = list(rng.choice(systems))
        for _ in range(rng.randint(1, 6)):  # turns: user message, then the assistant's reply
            conversation += _text(rng, 32, 256) + _text(rng, 32, 256)
            work.fill.append(list(conversation))
        conversations.append(conversation)
        unique += len(conversation) // BLOCK_SIZE * BLOCK_SIZE - SYSTEM_TOKENS  # only full blocks are cached
    for _ in range(num_calls):
        work.lookups.append(_admission(rng, systems, conversations))
        work.inserts.append(_admission(rng, systems, conversations) + _text(rng, 32, 256))
    return work


def _admission(rng: random.Random, systems: list[list[int]], conversations: list[list[int]]) -> list[int]:
    draw = rng.random()
    if draw < 0.6:
        return rng.choice(conversations) + _text(rng, 32, 256)
    if draw < 0.9:
        return rng.choice(systems) + _text(rng, 32, 256)
    return _text(rng, SYSTEM_TOKENS, SYSTEM_TOKENS) + _text(rng, 32, 256)


class BlockIds:
    """Hands out fresh block ids, one per full block of a sequence."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, tokens: Sequence[int]) -> list[int]:
        count = len(tokens) // BLOCK_SIZE
        self.next += count
        return list(range(self.next - count, self.next))


def fill(index: Index, work: Workload, ids: BlockIds) -> float:
    """Insert every turn; returns bytes allocated per cached block."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for tokens in work.fill:
        index.release(index.insert(tokens, ids.take(tokens)))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / max(1, len(index))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def time_lookups(index: Index, calls: list[list[int]]) -> tuple[list[float], list[PrefixHit]]:
    """Per-call fastest of ``ROUNDS`` timings (references are given back between rounds)."""
    best = [float("inf")] * len(calls)
    hits: list[PrefixHit] = []
    for _ in range(ROUNDS):
        hits = []
        gc.collect()
        for i, tokens in enumerate(calls):
            start = time.perf_counter_ns()
            hit = index.lookup(tokens)
            best[i] = min(best[i], (time.perf_counter_ns() - start) / 1000)
            hits.append(hit)
        for hit in hits:
            index.release(list(hit.block_ids))
    return best, hits


def time_inserts(index: Index, calls: list[list[int]], ids: BlockIds) -> list[float]:
    """Per-call fastest of ``ROUNDS``; each insert is undone, untimed, so the size stays put."""
    best = []
    gc.collect()
    for tokens in calls:
        samples = []
        for _ in range(ROUNDS):
            block_ids = ids.take(tokens)
            start = time.perf_counter_ns()
            adopted = index.insert(tokens, block_ids)
            samples.append((time.perf_counter_ns() - start) / 1000)
            index.release(adopted)
            index.remove(adopted)
        best.append(min(samples))
    return best


def measure(index: Index, work: Workload) -> dict[str, float]:
    ids = BlockIds()
    bytes_per_block = fill(index, work, ids)
    lookup_us, hits = time_lookups(index, work.lookups)
    insert_us = time_inserts(index, work.inserts, ids)
    hit_tokens = sum(hit.num_matched_tokens for hit in hits)
    return {
        "cached_blocks": len(index),
        "lookup_p50_us": percentile(lookup_us, 50),
        "lookup_p99_us": percentile(lookup_us, 99),
        "insert_p50_us": percentile(insert_us, 50),
        "insert_p99_us": percentile(insert_us, 99),
        "bytes_per_block": bytes_per_block,
        "hit_rate": hit_tokens / sum(len(t) for t in work.lookups),
    }


def run(sizes: list[int], num_calls: int) -> list[dict[str, float | str]]:
    rows: list[dict[str, float | str]] = []
    for size in sizes:
        work = make_workload(size, num_calls)
        mean_query = sum(len(t) for t in work.lookups) / len(work.lookups)
        for name, cls in INDEXES.items():
            result = measure(cls(BLOCK_SIZE), work)
            row: dict[str, float | str] = {"index": name, "target_tokens": size}
            row["cached_tokens"] = result["cached_blocks"] * BLOCK_SIZE
            row["mean_query_tokens"] = mean_query
            row["min_query_tokens"] = min(len(t) for t in work.lookups)
            row["max_query_tokens"] = max(len(t) for t in work.lookups)
            row.update(result)
            rows.append(row)
        print(f"  {size:>9,} tokens done", flush=True)
    return rows


def markdown(rows: list[dict[str, float | str]]) -> str:
    head = (
        "| cached tokens | index | query tok mean (range) | hit rate | lookup p50 / p99 µs "
        "| insert p50 / p99 µs | bytes/block |\n"
        "|---:|:---|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {r['cached_tokens']:,.0f} | {r['index']} "
        f"| {r['mean_query_tokens']:,.0f} ({r['min_query_tokens']:,.0f}–{r['max_query_tokens']:,.0f}) "
        f"| {r['hit_rate']:.0%} "
        f"| {r['lookup_p50_us']:.0f} / {r['lookup_p99_us']:.0f} "
        f"| {r['insert_p50_us']:.0f} / {r['insert_p99_us']:.0f} "
        f"| {r['bytes_per_block']:,.0f} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="10K and 100K cached tokens, 200 calls (CI smoke, skips 1M)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    sizes, num_calls = ([10_000, 100_000], 200) if args.quick else ([10_000, 100_000, 1_000_000], 2_000)
    rows = run(sizes, num_calls)
    table = markdown(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "quick": args.quick}
    (args.out / "bench_prefix_cache.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / "bench_prefix_cache.md").write_text(table)
    print(table)
    largest = max(float(r["target_tokens"]) for r in rows)
    for r in rows:
        if r["target_tokens"] == largest and r["index"] != "naive_dict":
            print(
                f"{r['index']}: lookup p99 at {r['cached_tokens']:,.0f} cached tokens: {r['lookup_p99_us']:.0f} µs (target < 1000 µs)"
            )


if __name__ == "__main__":
    main()
