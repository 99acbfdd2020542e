"""What a request's output must match: a grammar spec, carried on the request's sampling parameters.

The spec is text (a JSON schema, a regex, a list of choices), not a
compiled grammar: it is a value that pickles, hashes (compiled grammars are
cached by it) and says nothing about which grammar engine compiles it.

It travels on :class:`GuidedSamplingParams`, a ``SamplingParams`` with one
more field, so a constrained request passes through every layer that
carries sampling parameters (the server's ``n`` copies, the engine thread's
queue) unchanged, and core's ``SamplingParams`` stays grammar-free. Only
``LLMEngine`` acts on it; engines that rebuild sampling parameters from
their fields (prefill/decode disaggregation) must refuse it, which the
server does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from sagellm.core.errors import InvalidRequestError
from sagellm.core.types import SamplingParams

GrammarKind = Literal["json_schema", "json_object", "regex", "choice"]
KINDS: tuple[GrammarKind, ...] = ("json_schema", "json_object", "regex", "choice")


@dataclass(frozen=True, slots=True)
class GrammarSpec:
    """``source``: the schema as JSON text (json_schema), the pattern (regex), a JSON list of strings (choice),
    empty (json_object: any JSON object)."""

    kind: GrammarKind
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidRequestError(f"grammar kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.source, str):
            raise InvalidRequestError(f"grammar source must be a string, got {type(self.source).__name__}")

    @classmethod
    def json_schema(cls, schema: Mapping[str, Any] | bool) -> GrammarSpec:
        """Property order is kept (not sorted): the output lists the properties in the schema's order."""
        return cls("json_schema", json.dumps(schema, separators=(",", ":"), ensure_ascii=False))

    @classmethod
    def json_object(cls) -> GrammarSpec:
        return cls("json_object")

    @classmethod
    def regex(cls, pattern: str) -> GrammarSpec:
        return cls("regex", pattern)

    @classmethod
    def choice(cls, options: Sequence[str]) -> GrammarSpec:
        if not options or not all(isinstance(option, str) for option in options):
            raise InvalidRequestError("a choice grammar needs a non-empty list of strings")
        return cls("choice", json.dumps(list(options), ensure_ascii=False))


@dataclass(frozen=True, slots=True)
class GuidedSamplingParams(SamplingParams):
    """Sampling parameters whose output must match ``grammar`` (None: unconstrained, as plain SamplingParams)."""

    grammar: GrammarSpec | None = None

    def __post_init__(self) -> None:
        SamplingParams.__post_init__(self)
        if self.grammar is not None and not isinstance(self.grammar, GrammarSpec):
            raise InvalidRequestError(f"grammar must be a GrammarSpec, got {type(self.grammar).__name__}")


def with_grammar(params: SamplingParams, grammar: GrammarSpec) -> GuidedSamplingParams:
    """``params`` whose output must also match ``grammar``."""
    values = {f.name: getattr(params, f.name) for f in fields(SamplingParams)}
    return GuidedSamplingParams(**values, grammar=grammar)


def grammar_of(params: SamplingParams) -> GrammarSpec | None:
    """The grammar a request's output must match, if any."""
    return params.grammar if isinstance(params, GuidedSamplingParams) else None
