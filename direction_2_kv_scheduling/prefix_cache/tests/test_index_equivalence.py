"""The radix tree and the hash chain are interchangeable: same hits, same adopted blocks, same errors.

A seeded random workload drives both with identical calls (inserts that
share, extend and diverge from cached prompts, lookups, releases, removal of
any evictable block including inner ones, misuse) and compares every answer.
"""

from __future__ import annotations

import random

import pytest

from sagellm.core.errors import KVBlockError
from sagellm.core.protocols import PrefixIndex
from sagellm.prefix_cache import HashChainPrefixIndex, RadixPrefixIndex

BS = 4


class Twins:
    """Both indexes plus the references the workload holds on them."""

    def __init__(self) -> None:
        self.indexes: list[PrefixIndex] = [HashChainPrefixIndex(block_size=BS), RadixPrefixIndex(block_size=BS)]
        self.held: list[int] = []
        self.prompts: list[list[int]] = []
        self.next_id = 0

    def both(self, call: str, *args: object) -> object:
        answers = []
        for index in self.indexes:
            try:
                answers.append(getattr(index, call)(*args))
            except KVBlockError as exc:
                answers.append(type(exc))
        assert answers[0] == answers[1], f"{call}{args}: hash chain {answers[0]} != radix {answers[1]}"
        return answers[0]

    def prompt(self, rng: random.Random) -> list[int]:
        stem = rng.choice([*self.prompts, []])
        stem = stem[: rng.randrange(len(stem) + 1)]
        return stem + [rng.randrange(3) for _ in range(rng.randrange(16))]

    def step(self, rng: random.Random) -> None:
        draw = rng.random()
        if draw < 0.35:
            tokens = self.prompt(rng)
            ids = list(range(self.next_id, self.next_id + len(tokens) // BS))
            if ids and rng.random() < 0.05:
                ids[-1] = rng.randrange(self.next_id)  # maybe an id cached elsewhere: both must refuse
            self.next_id += len(ids)
            adopted = self.both("insert", tokens, ids)
            if isinstance(adopted, list):
                self.held += adopted
                self.prompts.append(tokens)
        elif draw < 0.65:
            hit = self.both("lookup", self.prompt(rng))
            self.held += list(hit.block_ids)  # type: ignore[attr-defined]
        elif draw < 0.85 and self.held:
            rng.shuffle(self.held)
            count = rng.randrange(1, len(self.held) + 1)
            self.both("release", self.held[:count])
            del self.held[:count]
        else:
            cached = [b for b in range(self.next_id) if b in self.indexes[0]]
            evictable = [b for b in cached if self.indexes[0].is_evictable(b)]
            victims = rng.sample(evictable, min(len(evictable), rng.randrange(1, 4)))
            if rng.random() < 0.1 and len(evictable) < len(cached):
                victims.append(next(b for b in cached if not self.indexes[0].is_evictable(b)))  # refused
            self.both("remove", victims)

    def check(self) -> None:
        assert len(self.indexes[0]) == len(self.indexes[1])
        for block_id in range(self.next_id):
            self.both("__contains__", block_id)
            self.both("is_evictable", block_id)


@pytest.mark.parametrize("seed", range(8))
def test_random_workloads_give_identical_answers(seed: int) -> None:
    rng = random.Random(seed)
    twins = Twins()
    for step in range(400):
        twins.step(rng)
        if step % 50 == 0:
            twins.check()
    twins.check()
    for prompt in twins.prompts:
        twins.both("peek", prompt)
