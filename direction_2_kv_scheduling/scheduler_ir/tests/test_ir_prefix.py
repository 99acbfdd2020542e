"""Prefix-aware admission: cached and shared prefixes first, within a bounded window."""

from __future__ import annotations

from collections.abc import Sequence

from views import BS, ids, wait

from sagellm.core.types import BlockId, PrefixHit, SchedulerState, SequenceView
from sagellm.scheduler_ir import (
    FIFOIRBuilder,
    PeekPrefixProbe,
    PrefixMatch,
    PriorityIRBuilder,
    ViewPrefixProbe,
    rank_by_prefix,
)


class TableProbe:
    """Cached length and group from a table; counts how many views it was asked about."""

    def __init__(self, table: dict[str, tuple[int, str | None]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def match(self, view: SequenceView) -> PrefixMatch:
        self.asked.append(view.request_id)
        cached, group = self.table.get(view.request_id, (0, None))
        return PrefixMatch(cached, group)


def views(*names: str) -> list[SequenceView]:
    return [wait(n, arrival=float(i)) for i, n in enumerate(names)]


def test_within_a_window_longer_cached_prefixes_go_first_and_groups_stay_together() -> None:
    probe = TableProbe({"b": (32, "g1"), "d": (16, "g1"), "e": (24, None)})
    ranked = rank_by_prefix(views("a", "b", "c", "d", "e", "f"), probe, window=4)
    # window 1: g1 (longest 32: b then d), then a, c; window 2 keeps its own ranking
    assert ids(ranked) == ["b", "d", "a", "c", "e", "f"]


def test_a_group_ranks_by_its_longest_member() -> None:
    probe = TableProbe({"a": (20, None), "b": (8, "g"), "c": (40, "g")})
    assert ids(rank_by_prefix(views("a", "b", "c"), probe, window=3)) == ["c", "b", "a"]


def test_nothing_crosses_a_window_boundary() -> None:
    probe = TableProbe({"z": (1000, None)})
    ranked = ids(rank_by_prefix(views("a", "b", "c", "z"), probe, window=3))
    assert ranked == ["a", "b", "c", "z"]  # the hit is 4th: it may not jump into the first window


def test_window_of_zero_or_one_keeps_the_policy_order() -> None:
    probe = TableProbe({"b": (32, None)})
    assert ids(rank_by_prefix(views("a", "b"), probe, window=0)) == ["a", "b"]
    assert ids(rank_by_prefix(views("a", "b"), probe, window=1)) == ["a", "b"]
    assert probe.asked == []


def test_ranking_is_lazy_window_by_window() -> None:
    probe = TableProbe({})
    ranked = rank_by_prefix(views(*"abcdefghij"), probe, window=4)
    assert next(ranked).request_id == "a"
    assert probe.asked == ["a", "b", "c", "d"]


def test_default_probe_reads_the_views_cached_tokens() -> None:
    assert ViewPrefixProbe().match(wait("w", 40, cached=32)) == PrefixMatch(32)


def test_builder_admits_cached_prefixes_first_within_the_window() -> None:
    waits = (wait("cold", 40, arrival=0.0), wait("warm", 40, arrival=1.0, cached=36), wait("far", 40, 2.0, 36))
    state = SchedulerState((), waits, num_free_blocks=100, block_size=BS)
    plan = FIFOIRBuilder(max_num_seqs=2, prefix_window=2).build(state)
    assert plan.admitted == ("warm", "cold")  # "far" is in the next window
    assert [(c.request_id, c.start) for c in plan.chunks] == [("warm", 36), ("cold", 0)]
    assert FIFOIRBuilder(max_num_seqs=2).build(state).admitted == ("cold", "warm")  # window 0: plain FIFO


def test_prefix_ranking_applies_after_the_policys_own_order() -> None:
    waits = (wait("p5", 8, priority=5), wait("p0", 8, priority=0), wait("p1-hit", 8, priority=1, cached=4))
    state = SchedulerState((), waits, num_free_blocks=100, block_size=BS)
    plan = PriorityIRBuilder(max_num_seqs=3, aging_rate=0.0, prefix_window=2).build(state)
    assert plan.admitted == ("p1-hit", "p0", "p5")  # window [p0, p1-hit] regrouped; p5 stays last


class DictPrefixIndex:
    """The part of a PrefixIndex the peek probe uses: block-aligned prefixes it has seen."""

    def __init__(self, cached: list[tuple[int, ...]], block_size: int = BS) -> None:
        self.cached = cached
        self._block_size = block_size

    @property
    def block_size(self) -> int:
        return self._block_size

    def peek(self, tokens: Sequence[int], namespace: str = "") -> int:
        best = 0
        for prefix in self.cached:
            n = 0
            while n + self._block_size <= min(len(prefix), len(tokens) - 1):
                if tuple(tokens[n : n + self._block_size]) != prefix[n : n + self._block_size]:
                    break
                n += self._block_size
            best = max(best, n)
        return best

    def lookup(self, tokens: Sequence[int], namespace: str = "") -> PrefixHit:
        raise AssertionError("lookup takes references; the probe must only peek")

    def insert(self, tokens: Sequence[int], block_ids: Sequence[BlockId], namespace: str = "") -> list[BlockId]:
        return []

    def release(self, block_ids: Sequence[BlockId]) -> None: ...

    def is_evictable(self, block_id: BlockId) -> bool:
        return False

    def remove(self, block_ids: Sequence[BlockId]) -> None: ...

    def __contains__(self, block_id: object) -> bool:
        return False

    def __len__(self) -> int:
        return len(self.cached)


def test_peek_probe_measures_the_hit_and_groups_by_the_first_cached_block() -> None:
    system = (1, 2, 3, 4, 5, 6, 7, 8)
    index = DictPrefixIndex([system])
    prompts = {
        "a": ((1, 2, 3, 4, 5, 6, 7, 8, 9), ""),  # full 8-token hit
        "b": ((1, 2, 3, 4, 0, 0, 0, 0, 0), ""),  # first block only
        "c": ((9, 9, 9, 9, 9), ""),  # miss
        "d": ((1, 2, 3, 4, 5, 6, 7, 8, 9), "other-model"),  # same tokens, other namespace: other group
    }
    probe = PeekPrefixProbe(index, prompts.get)  # type: ignore[arg-type]
    a, b, c, d = (probe.match(wait(r)) for r in "abcd")
    assert (a.num_cached_tokens, b.num_cached_tokens, c.num_cached_tokens) == (8, 4, 0)
    assert a.group == b.group and a.group is not None and c.group is None and d.group != a.group
    assert probe.match(wait("unknown", cached=4)) == PrefixMatch(4)  # no prompt: the view's own figure
    ranked = rank_by_prefix([wait("c"), wait("b"), wait("x"), wait("a")], probe, window=4)
    assert ids(ranked) == ["a", "b", "c", "x"]
