"""Decision time and hook cost of every eviction policy at 100K tracked blocks.

Steady state of a full pool, reached by untimed decisions first (until the
hooks have touched every block ~3 times: a heap policy's cost grows as its
entries age, and a fresh pool's first thousands of decisions flatter it
two- to three-fold): a fraction of the tracked blocks is in use
(``is_evictable`` rejects them; a random set that slowly churns), every
decision is followed by what the cache does next: it removes the
victims (``on_remove``), reuses those block ids for new cached blocks
(``on_insert``) and records a few prefix hits (``on_access``). A simulated
clock advances 1 ms per decision (hooks between two decisions share an
instant); ``block_meta`` gives every block a prefix depth (GDSF reads it).

* decision: one ``select_victims`` call, timed alone (µs, p50 / p99 / mean),
* hooks per decision: those hooks, timed together (µs per decision, mean) —
  a policy may do work in its hooks that spares its decisions, and this
  column shows what that costs,
* on_access: single calls timed alone on a freshly filled policy (p50 / p99),
  and ``on_insert`` + ``on_remove`` of a block timed in batches (µs per pair),
* peer: the naive policy that sorts all evictable candidates by last access
  time on every decision, measured in the same run.

    python benchmarks/bench_eviction.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

from sagellm.core.protocols import EvictionPolicy
from sagellm.core.types import BlockId, EvictionContext, KVBlockMeta
from sagellm.eviction_policy import POLICIES as PACKAGE_POLICIES
from sagellm.eviction_policy import LRUEvictionPolicy

HITS_PER_DECISION = 8
CHURN_PER_DECISION = 4  # in-use blocks that are released, and others that become in use
WARMUP_TOUCHES_PER_BLOCK = 3  # untimed decisions first, until the hooks touched each block ~3 times
WARMUP_BUDGET_S = 20.0  # ... or for this long, whichever comes first (slow peers)


class NaiveSortPolicy:
    """Keeps each block's last access time; a decision sorts every evictable block by it."""

    def __init__(self) -> None:
        self._last: dict[BlockId, float] = {}
        self._clock = 0

    @property
    def name(self) -> str:
        return "naive-sort"

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        self._clock += 1
        self._last[block_id] = self._clock

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        if block_id in self._last:
            self._clock += 1
            self._last[block_id] = self._clock

    def on_remove(self, block_id: BlockId) -> None:
        self._last.pop(block_id, None)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        candidates = [block for block in self._last if context.is_evictable(block)]
        candidates.sort(key=self._last.__getitem__)
        return candidates[: context.num_blocks]

    def __len__(self) -> int:
        return len(self._last)


POLICIES: dict[str, Callable[[], EvictionPolicy]] = {
    **PACKAGE_POLICIES,
    "lru (no promotion)": lambda: LRUEvictionPolicy(promote_in_use=False),
    "naive sort": NaiveSortPolicy,
}
TICK_S = 0.001  # simulated time between two decisions
META = [KVBlockMeta(block_id=0, prefix_depth=depth) for depth in range(64)]


def block_meta(block_id: BlockId) -> KVBlockMeta:
    """Metadata as a pool would give it: here only the depth matters (block ``b`` sits at depth ``b % 64``)."""
    return META[block_id % 64]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def warmup_decisions(num_tracked: int) -> int:
    return -(-WARMUP_TOUCHES_PER_BLOCK * num_tracked // (HITS_PER_DECISION + CHURN_PER_DECISION))


def decisions(
    policy: EvictionPolicy,
    num_tracked: int,
    in_use_share: float,
    num_victims: int,
    num_decisions: int,
    warmup: int = 0,
) -> tuple[list[float], list[float]]:
    """µs per ``select_victims``, and µs of the hooks that follow each, in the steady state of the module docstring.

    ``warmup`` untimed decisions (at most ``WARMUP_BUDGET_S`` of them) come first.
    """
    rng = random.Random(0)
    fill(policy, num_tracked)
    pinned = InUse(rng.sample(range(num_tracked), int(in_use_share * num_tracked)))
    held = pinned.blocks  # mutated in place by churn(); the callback is one set probe, as cheap as a real one gets
    samples: list[float] = []
    hooks: list[float] = []
    warm_until = time.perf_counter() + WARMUP_BUDGET_S
    step = 0
    while len(samples) < num_decisions:
        step += 1
        warming = step <= warmup and time.perf_counter() < warm_until
        if not warming and not samples:
            gc.collect()
        now = 1.0 + step * TICK_S
        context = EvictionContext(num_victims, now, lambda b: b not in held, block_meta)
        start = time.perf_counter_ns()
        victims = policy.select_victims(context)
        decided = time.perf_counter_ns()
        hits = rng.sample(range(num_tracked), HITS_PER_DECISION)
        taken = pinned.churn(rng, num_tracked)  # blocks that become in use through a prefix hit
        started = time.perf_counter_ns()
        for block in victims:
            policy.on_remove(block)
            policy.on_insert(block, now)
        for block in hits:
            policy.on_access(block, now)
        for block in taken:
            policy.on_access(block, now)
        if not warming:
            samples.append((decided - start) / 1000)
            hooks.append((time.perf_counter_ns() - started) / 1000)
    return samples, hooks


def fill(policy: EvictionPolicy, num_tracked: int) -> None:
    """Insert every block, 16 per instant (a prompt's worth), as a cache filling up would."""
    for block in range(num_tracked):
        policy.on_insert(block, 0.5 + (block // 16) * 1e-6)


class InUse:
    """Blocks held by running sequences: a set for the test, a list to pick from in O(1)."""

    def __init__(self, blocks: list[BlockId]) -> None:
        self.order = blocks
        self.blocks = set(blocks)

    def churn(self, rng: random.Random, num_tracked: int) -> list[BlockId]:
        """Release ``CHURN_PER_DECISION`` held blocks and take as many others; returns the new ones."""
        taken: list[BlockId] = []
        for _ in range(CHURN_PER_DECISION if self.order else 0):
            new = rng.randrange(num_tracked)
            if new in self.blocks:
                continue
            slot = rng.randrange(len(self.order))
            self.blocks.discard(self.order[slot])
            self.order[slot] = new
            self.blocks.add(new)
            taken.append(new)
        return taken


def hook_cost(make: Callable[[], EvictionPolicy], num_tracked: int, repeats: int = 3) -> dict[str, float]:
    """``on_access`` µs per call (p50 / p99 of single timed calls) and per ``on_insert`` + ``on_remove`` pair.

    The pair cost is the fastest of ``repeats`` batches over every block, divided.
    """
    order = list(range(num_tracked))
    random.Random(1).shuffle(order)
    single: list[float] = []
    churn = float("inf")
    for repeat in range(repeats):
        policy = make()
        fill(policy, num_tracked)
        gc.collect()
        now = 2.0 + repeat
        for i, block in enumerate(order):
            start = time.perf_counter_ns()
            policy.on_access(block, now + i * 1e-6)
            single.append((time.perf_counter_ns() - start) / 1000)
        start = time.perf_counter_ns()
        for i, block in enumerate(order):
            policy.on_remove(block)
            policy.on_insert(block, now + 0.5 + i * 1e-6)
        churn = min(churn, (time.perf_counter_ns() - start) / 1000 / num_tracked)
    return {
        "on_access_p50_us": percentile(single, 50),
        "on_access_p99_us": percentile(single, 99),
        "insert_remove_us": churn,
    }


def run(num_tracked: int, shares: list[float], num_decisions: int, names: list[str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name in [*names, "naive sort"] if "naive sort" not in names else names:
        make = POLICIES[name]
        hooks = hook_cost(make, num_tracked)
        naive = name == "naive sort"
        budget = max(5, num_decisions // 100) if naive else num_decisions  # a naive decision costs ~100x more
        for share in shares:
            for num_victims in (1, 32):
                warmup = 0 if naive else warmup_decisions(num_tracked)  # sorting everything has no state to age
                samples, hooks_after = decisions(make(), num_tracked, share, num_victims, budget, warmup)
                rows.append(
                    {
                        "policy": name,
                        "tracked_blocks": num_tracked,
                        "in_use_share": share,
                        "num_victims": num_victims,
                        "decisions": budget,
                        "warmup_decisions": warmup,
                        "p50_us": percentile(samples, 50),
                        "p99_us": percentile(samples, 99),
                        "mean_us": sum(samples) / len(samples),
                        "hooks_per_decision_us": sum(hooks_after) / len(hooks_after),
                        **hooks,
                    }
                )
        print(f"  {name} done", flush=True)
    _add_ratios(rows)
    return rows


def _add_ratios(rows: list[dict[str, object]]) -> None:
    """Naive mean decision time divided by each row's, for the same share and victim count."""
    naive = {(r["in_use_share"], r["num_victims"]): r["mean_us"] for r in rows if r["policy"] == "naive sort"}
    for row in rows:
        peer = naive[(row["in_use_share"], row["num_victims"])]
        row["naive_over_this"] = float(peer) / float(row["mean_us"])  # type: ignore[arg-type]


def markdown(rows: list[dict[str, object]]) -> str:
    head = (
        "| policy | tracked | in use | victims | decision p50 / p99 / mean µs | naive ÷ this "
        "| hooks per decision µs | on_access p50 / p99 µs | insert+remove µs |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {r['policy']} | {r['tracked_blocks']:,} | {r['in_use_share']:.0%} | {r['num_victims']} "
        f"| {r['p50_us']:.1f} / {r['p99_us']:.1f} / {r['mean_us']:.1f} | {r['naive_over_this']:,.0f}× "
        f"| {r['hooks_per_decision_us']:.1f} "
        f"| {r['on_access_p50_us']:.2f} / {r['on_access_p99_us']:.2f} | {r['insert_remove_us']:.2f} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10K blocks, few decisions (CI smoke)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma list (the naive peer always runs)")
    args = parser.parse_args()
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        parser.error(f"unknown policy {unknown[0]!r}; available: {', '.join(POLICIES)}")
    num_tracked, num_decisions = (10_000, 200) if args.quick else (100_000, 5_000)
    rows = run(num_tracked, [0.0, 0.1, 0.5], num_decisions, names)
    table = markdown(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "quick": args.quick}
    (args.out / "bench_eviction.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / "bench_eviction.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
