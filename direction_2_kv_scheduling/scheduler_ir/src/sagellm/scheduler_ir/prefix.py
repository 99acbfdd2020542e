"""Prefix-aware admission: within a bounded window, put cached and shared prefixes first.

A waiting request whose prompt prefix is already in the KV cache costs
fewer prefill tokens and fewer new blocks, and requests sharing one prefix
reuse the same cached blocks when they run close together (before eviction
takes them). So, inside each window of ``window`` consecutive requests of
the policy's order, requests are regrouped::

    policy order:  a(0)  b(32,g1)  c(0)  d(16,g1) | e ...      (cached tokens, prefix group)
    window = 4:    b(32,g1)  d(16,g1)  a(0)  c(0) | e ...

Groups go by their longest cached prefix, members of a group stay together
(longest first), and ties keep the policy's order. The window is the
fairness bound: a request moves at most ``window - 1`` places and never
crosses into another window, so the policy's guarantees (FIFO order between
windows, aging, deadlines) hold up to that shift. Windows are ranked
lazily: admission stops at the first misfit, so only the windows it reaches
are probed.

The prefix length comes from a :class:`PrefixProbe`. The default reads
``SequenceView.num_cached_tokens`` (the engine fills it through
``PrefixIndex.peek``); :class:`PeekPrefixProbe` asks a ``PrefixIndex``
itself and also names the shared prefix, so requests can be grouped. The
probe only ranks: admission still starts at the view's ``num_cached_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol, runtime_checkable

from sagellm.core.protocols import PrefixIndex
from sagellm.core.types import SequenceView

_ALONE = object()  # group key of a request with no known shared prefix (paired with its position)


@dataclass(frozen=True, slots=True)
class PrefixMatch:
    """How much of a request's prompt is cached, and which shared prefix it is (None: unknown)."""

    num_cached_tokens: int
    group: Hashable | None = None


@runtime_checkable
class PrefixProbe(Protocol):
    """Gives the cached prefix of a waiting request (without taking cache references)."""

    def match(self, view: SequenceView) -> PrefixMatch: ...


class ViewPrefixProbe:
    """The default probe: the engine's ``num_cached_tokens``, no grouping."""

    def match(self, view: SequenceView) -> PrefixMatch:
        return PrefixMatch(view.num_cached_tokens)


class PeekPrefixProbe:
    """Asks a ``PrefixIndex`` (``peek``, no references taken) and groups by the first cached block.

    ``prompt_of(request_id)`` returns the request's tokens and namespace
    (None: unknown, then the view's own ``num_cached_tokens`` is used).
    Requests whose cached prefixes start with the same block share at least
    that block, so they share a subtree of the cache: that block is the group.
    """

    def __init__(self, index: PrefixIndex, prompt_of: Callable[[str], tuple[Sequence[int], str] | None]) -> None:
        self.index = index
        self.prompt_of = prompt_of

    def match(self, view: SequenceView) -> PrefixMatch:
        prompt = self.prompt_of(view.request_id)
        if prompt is None:
            return PrefixMatch(view.num_cached_tokens)
        tokens, namespace = prompt
        num_cached = self.index.peek(tokens, namespace)
        block_size = self.index.block_size
        group = (namespace, tuple(tokens[:block_size])) if num_cached >= block_size else None
        return PrefixMatch(num_cached, group)


def rank_by_prefix(ordered: Iterable[SequenceView], probe: PrefixProbe, window: int) -> Iterator[SequenceView]:
    """``ordered`` regrouped window by window (lazy); ``window <= 1`` keeps the order."""
    if window <= 1:
        yield from ordered
        return
    views = iter(ordered)
    while batch := list(islice(views, window)):
        yield from _rank_window(batch, probe)


def _rank_window(views: list[SequenceView], probe: PrefixProbe) -> list[SequenceView]:
    matches = [probe.match(v) for v in views]
    groups: list[Hashable] = [m.group if m.group is not None else (_ALONE, i) for i, m in enumerate(matches)]
    longest: dict[Hashable, int] = {}
    first: dict[Hashable, int] = {}
    for i, (group, m) in enumerate(zip(groups, matches)):
        longest[group] = max(longest.get(group, 0), m.num_cached_tokens)
        first.setdefault(group, i)

    def rank(i: int) -> tuple[int, int, int, int]:
        group = groups[i]
        return (-longest[group], first[group], -matches[i].num_cached_tokens, i)

    return [views[i] for i in sorted(range(len(views)), key=rank)]
