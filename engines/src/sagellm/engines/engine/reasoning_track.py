"""The state of one reasoning sequence (a request, or one self-consistency sample) and of its probes.

A probe runs beside its parent, not instead of it: the parent keeps
decoding, so a probe that says "go on" costs the parent no time. What the
parent decodes meanwhile is *held* (not sent): if the probe says "stop",
the request's output must end with the reasoning up to the fork point,
then the probe's suffix and answer, and those held tokens were never
part of it; if it says "go on", they are sent, a few steps late::

    parent   ... step 3 \\n\\n | x x x x           (held while the probe runs)
    probe                    | Final answer: 42  (forked at the boundary, KV shared)
    stop  -> output: ... step 3 \\n\\n Final answer: 42        (held x's dropped)
    go on -> output: ... step 3 \\n\\n x x x x ...             (held x's sent)

A step boundary that comes while a probe runs gets a probe of its own
(several may be in flight, each sharing the parent's KV up to its point),
so the request exits at the first point whose answer the accelerator
finds stable, not at the first one after a probe happened to finish. At
the token budget the parent is *parked* (no longer scheduled) once its
forced probe is forked, and that probe's answer is kept whatever it says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sagellm.core.types import SequenceState, StepOutput
from sagellm.engines.engine.probe_reading import ProbeReading
from sagellm.engines.engine.reasoning_fork import Fork
from sagellm.engines.engine.reasoning_options import ReasoningOptions


@dataclass(frozen=True, slots=True)
class ProbePoint:
    """Where a probe forks: after ``num_tokens`` output tokens, whose text was ``text`` then."""

    num_tokens: int
    text: str
    forced: bool = False  # the budget's: its answer is kept


@dataclass(slots=True)
class ProbeFlight:
    """A probe forked at ``point``; ``reading`` once it has decoded its answer (it is then resolved in order)."""

    fork: Fork
    point: ProbePoint
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    reading: ProbeReading | None = None

    @property
    def request_id(self) -> str:
        return self.fork.seq.request_id


@dataclass(slots=True)
class Track:
    """One reasoning sequence; ``group`` is its self-consistency group's root request id (None: on its own).

    Probe points are asked for in order, forked in order (``waiting`` until
    the parent's KV covers them, then ``flights``) and resolved in order,
    so the accelerator observes them as the reasoning went, however the
    probes' own steps interleave.
    """

    seq: SequenceState
    options: ReasoningOptions
    group: str | None = None
    waiting: list[ProbePoint] = field(default_factory=list)
    flights: list[ProbeFlight] = field(default_factory=list)
    capped: bool = False  # reached the budget: its forced probe is asked for
    held: list[StepOutput] = field(default_factory=list)
    sent: list[StepOutput] = field(default_factory=list)  # a sample's outputs, for its group (never for a request)
    text: str = ""  # every output's text so far, held ones included
    num_chars_sent: int = 0
    num_probes: int = 0
    num_probe_tokens: int = 0

    @property
    def request_id(self) -> str:
        return self.seq.request_id

    @property
    def holding(self) -> bool:
        """Outputs wait while a probe may still end the sequence before them."""
        return bool(self.waiting or self.flights)

    def next_point(self) -> int | None:
        """The earliest probe point not resolved yet: held outputs up to it may go."""
        if self.flights:
            return self.flights[0].point.num_tokens
        return self.waiting[0].num_tokens if self.waiting else None

    def release_held(self) -> list[StepOutput]:
        """Held outputs no unresolved probe can end the sequence before."""
        point = self.next_point()
        count = len(self.held) if point is None else sum(1 for o in self.held if o.num_output_tokens <= point)
        released, self.held = self.held[:count], self.held[count:]
        return released
