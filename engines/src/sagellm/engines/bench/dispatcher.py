"""Releases requests to a backend as the load pattern and conversation order allow.

Both backends (a synchronous engine loop and an asyncio HTTP client) ask the
same three questions, so the answers live here, free of any I/O:

* ``due(now)`` -- which requests should be sent now, and since when they
  have been due (latency is measured from that moment, not from the send);
* ``finished(request_id, now)`` -- a request ended: free its user (closed
  loop) and release the conversation turn that follows it;
* ``next_time()`` -- when the next open-loop arrival is, so an idle loop
  can sleep until then.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Sequence

from sagellm.engines.bench.request import BenchRequest


class Dispatcher:
    def __init__(self, requests: Sequence[BenchRequest], concurrency: int | None = None) -> None:
        """``concurrency``: closed loop with that many users; None: open loop on ``arrival_s``."""
        ids = {r.request_id for r in requests}
        if len(ids) != len(requests):
            raise ValueError("request ids must be unique")
        self.concurrency = concurrency
        self._children: dict[str, list[BenchRequest]] = defaultdict(list)
        roots: list[BenchRequest] = []
        for r in requests:
            if r.follows is None:
                roots.append(r)
            elif r.follows not in ids:
                raise ValueError(f"request {r.request_id} follows unknown request {r.follows}")
            else:
                self._children[r.follows].append(r)
        self._queue: deque[BenchRequest] = deque(roots)  # closed loop: in order
        self._timed: list[tuple[float, int, BenchRequest]] = []  # open loop: (due, order, request)
        self._order = 0
        if concurrency is None:
            for r in roots:
                self._push_timed(r.arrival_s, r)
        self._in_flight = 0
        self._unsent = len(requests)

    @property
    def done(self) -> bool:
        return self._unsent == 0 and self._in_flight == 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def due(self, now: float) -> list[tuple[BenchRequest, float]]:
        """Requests to send now, each with the time it became due (<= now)."""
        out: list[tuple[BenchRequest, float]] = []
        if self.concurrency is None:
            while self._timed and self._timed[0][0] <= now:
                when, _, request = heapq.heappop(self._timed)
                out.append((request, when))
        else:
            while self._queue and self._in_flight + len(out) < self.concurrency:
                out.append((self._queue.popleft(), now))
        self._in_flight += len(out)
        self._unsent -= len(out)
        return out

    def finished(self, request_id: str, now: float) -> None:
        """A sent request ended; its follow-up turns become due.

        A failed turn releases its follow-ups too (with an empty answer): a
        chat user retries with the next question rather than leaving.
        """
        self._in_flight -= 1
        children = self._children.pop(request_id, [])
        if self.concurrency is None:
            for child in children:
                self._push_timed(now + child.arrival_s, child)
        else:
            # The same user carries on with the conversation before taking new work.
            self._queue.extendleft(reversed(children))

    def next_time(self) -> float | None:
        """The next open-loop arrival, or None when nothing is scheduled."""
        return self._timed[0][0] if self._timed else None

    def _push_timed(self, when: float, request: BenchRequest) -> None:
        heapq.heappush(self._timed, (when, self._order, request))
        self._order += 1
