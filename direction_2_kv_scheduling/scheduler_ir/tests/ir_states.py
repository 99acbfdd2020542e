"""Random scheduler snapshots for the property tests (stdlib ``random`` with fixed seeds)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from sagellm.core.types import SchedulerState, SequenceView


@dataclass(frozen=True, slots=True)
class Case:
    state: SchedulerState
    max_num_seqs: int
    budget: int
    chunked: bool


def random_running(rng: random.Random, rid: str, block_size: int) -> SequenceView:
    prompt = rng.randint(1, 40)
    tokens = prompt + rng.choice([0, 0, rng.randint(1, 20)])
    shape = rng.random()
    if shape < 0.6:
        computed = tokens - 1  # decode (or the last prompt token)
    elif shape < 0.9:
        computed = rng.randint(0, tokens - 1)  # chunked prefill in progress
    else:
        computed = tokens  # nothing to compute this step
    return SequenceView(
        rid,
        num_tokens=tokens,
        num_computed_tokens=computed,
        num_blocks_held=math.ceil(computed / block_size),
        arrival_time=float(rng.randint(0, 8)),  # small range: ties happen
        num_prompt_tokens=prompt,
        max_tokens=64,
    )


def random_waiting(rng: random.Random, rid: str, block_size: int) -> SequenceView:
    prompt = rng.randint(1, 60)
    tokens = prompt + rng.choice([0, 0, 0, rng.randint(1, 10)])  # >prompt: a preempted sequence back in line
    shape = rng.random()
    if shape < 0.5:
        cached = 0
    elif shape < 0.85:
        cached = block_size * rng.randint(0, (tokens - 1) // block_size)  # block-aligned hit
    else:
        cached = rng.randint(0, tokens - 1)  # unaligned hit
    return SequenceView(
        rid,
        num_tokens=tokens,
        num_computed_tokens=0,
        num_blocks_held=0,
        arrival_time=float(rng.randint(0, 12)),
        num_cached_tokens=cached,
        num_prompt_tokens=prompt,
        max_tokens=16,
    )


def random_case(seed: int, block_size: int = 4) -> Case:
    rng = random.Random(seed)
    running = tuple(random_running(rng, f"r{i}", block_size) for i in range(rng.randint(0, 12)))
    waiting = tuple(random_waiting(rng, f"w{i}", block_size) for i in range(rng.randint(0, 12)))
    state = SchedulerState(running, waiting, num_free_blocks=rng.randint(0, 40), block_size=block_size)
    return Case(state, max_num_seqs=rng.randint(1, 12), budget=rng.randint(1, 96), chunked=rng.random() < 0.7)


def with_policy_fields(case: Case, seed: int) -> Case:
    """The same case with priorities, a clock and decode timestamps (a second rng: FIFO's cases stay as they were).

    Arrivals span 0..12 s and ``now`` lies 12..17 s, so SLO slack spans all
    three tiers for targets of a few seconds.
    """
    rng = random.Random(1_000_003 * seed + 7)
    now = 12.0 + rng.uniform(0.0, 5.0)

    def decorate(view: SequenceView) -> SequenceView:
        has_output = view.num_tokens > view.num_prompt_tokens
        last = now - rng.uniform(0.0, 0.4) if has_output and rng.random() < 0.7 else None
        return replace(view, priority=rng.randint(0, 3), last_token_time=last)

    state = case.state
    state = replace(
        state,
        running=tuple(decorate(v) for v in state.running),
        waiting=tuple(decorate(v) for v in state.waiting),
        now=now,
    )
    return replace(case, state=state)
