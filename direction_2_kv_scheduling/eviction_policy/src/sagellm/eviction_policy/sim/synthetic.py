"""A small multi-turn chat trace with shared system prompts: tests and benchmarks without data files."""

from __future__ import annotations

import random
from itertools import count

from sagellm.eviction_policy.sim.trace import Trace, TraceRequest


def synthetic_trace(
    num_requests: int = 400,
    num_sessions: int = 60,
    num_system_prompts: int = 4,
    one_off_share: float = 0.3,
    seed: int = 0,
) -> Trace:
    """Requests of chat sessions that re-send their growing history, and one-off prompts.

    Every prompt starts with one of a few shared system prompts (2-6
    blocks). A session turn re-sends the session's history and adds 1-4
    new blocks; sessions are picked with Zipf-like popularity, so a few are
    hot and many are cold. A share of requests are one-off prompts whose
    blocks after the system prompt are never seen again — the blocks a
    good policy drops first. Deterministic for a given ``seed``::

        system[s]  | session history ........ | new blocks
        [ 0  1  2 ][ 17 18 19 20 21 22 23 24 ][ 40 41 ]   (hash ids)
    """
    rng = random.Random(seed)
    fresh = count()
    systems = [[next(fresh) for _ in range(rng.randint(2, 6))] for _ in range(num_system_prompts)]
    histories = [list(systems[rng.randrange(num_system_prompts)]) for _ in range(num_sessions)]
    weights = [1.0 / (rank + 1) for rank in range(num_sessions)]
    requests = []
    for i in range(num_requests):
        new_blocks = [next(fresh) for _ in range(rng.randint(1, 4))]
        if rng.random() < one_off_share:
            prompt = systems[rng.randrange(num_system_prompts)] + new_blocks
        else:
            history = histories[rng.choices(range(num_sessions), weights)[0]]
            history.extend(new_blocks)
            prompt = list(history)
        requests.append(TraceRequest(timestamp_s=i * 0.1 + rng.random() * 0.05, hash_ids=tuple(prompt)))
    return Trace(requests=tuple(requests), name=f"synthetic-{seed}")
