"""The grammar engine behind structured output: llguidance, compiled against sageLLM's own vocabulary.

Why llguidance (numbers from ``engines/benchmarks/bench_grammar_mask.py``
on this repository's 2-core CPU, SmolLM2's 49,152-token vocabulary, see
engines/README.md): its per-token mask cost is in the same range as
xgrammar's and far below a decode step, a schema compiles in about a
millisecond where xgrammar and outlines-core precompute per-vocabulary
tables first (tens of milliseconds to seconds, on the request's path, for
every new schema), it handles recursive JSON (``json_object``), which the
regex-only outlines-core cannot, and it is one 3 MB wheel with no
dependencies, where xgrammar requires torch, transformers and triton.

The rest of the engine sees two things: :func:`check_grammar` (is this
spec valid? cheap, no tokenizer: the server calls it before queueing a
request, so a bad schema is a 400) and :class:`GrammarBackend.matcher`
(a fresh per-request :class:`GrammarMatcher`). JSON is generated compact
(no free whitespace): a grammar that allows any whitespace lets a small
model emit newlines until ``max_tokens``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sagellm.core.errors import ConfigError, InvalidRequestError
from sagellm.engines.runtime.grammar.matcher import GrammarMatcher
from sagellm.engines.runtime.grammar.spec import GrammarSpec
from sagellm.engines.runtime.grammar.vocab import GrammarVocab, grammar_vocab
from sagellm.engines.tokenizer import Tokenizer

EXTRA = "sagellm-engines[structured]"
JSON_OPTIONS = {"whitespace_flexible": False}  # compact: "," and ":" without spaces; a schema's x-guidance overrides
TEMPLATE_CACHE_SIZE = 64


class StructuredOutputUnavailableError(InvalidRequestError):
    """The grammar engine is not installed: structured output is refused rather than silently ignored."""

    def __init__(self) -> None:
        super().__init__(f"structured output needs the grammar engine: pip install '{EXTRA}' (installs llguidance)")


class GrammarBackend(Protocol):
    name: str

    def matcher(self, spec: GrammarSpec) -> GrammarMatcher:
        """A matcher at the start of ``spec``'s grammar; InvalidRequestError if the grammar is invalid."""
        ...


def _llguidance() -> Any:
    try:
        import llguidance
    except ImportError:
        raise StructuredOutputUnavailableError() from None
    return llguidance


def grammar_text(spec: GrammarSpec) -> str:
    """llguidance's grammar for ``spec`` (not yet checked)."""
    matcher = _llguidance().LLMatcher
    if spec.kind == "json_schema":
        try:
            return str(matcher.grammar_from_json_schema(spec.source, defaults=JSON_OPTIONS))
        except ValueError as exc:
            raise InvalidRequestError(f"invalid JSON schema: {exc}") from None
    if spec.kind == "json_object":
        return str(matcher.grammar_from_json_schema({"type": "object"}, defaults=JSON_OPTIONS))
    if spec.kind == "regex":
        return str(matcher.grammar_from_regex(spec.source))
    options: list[str] = json.loads(spec.source)
    # Lark string literals take JSON's escapes, so json.dumps quotes each option exactly.
    return str(matcher.grammar_from_lark("start: " + " | ".join(json.dumps(o) for o in options)))


def check_grammar(spec: GrammarSpec) -> None:
    """InvalidRequestError naming what is wrong with ``spec`` (or that the grammar engine is missing)."""
    message = _llguidance().LLMatcher.validate_grammar(grammar_text(spec))
    if message:
        raise InvalidRequestError(f"invalid {spec.kind.replace('_', ' ')}: {message.strip()}")


@dataclass(frozen=True, slots=True)
class _Encoder:
    """What llguidance's TokenizerWrapper reads: the vocabulary as bytes and a way to encode text."""

    tokenizer: Tokenizer
    tokens: Sequence[bytes]
    special_token_ids: Sequence[int]
    eos_token_id: int
    bos_token_id: int | None

    def __call__(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)


class LLGuidanceBackend:
    """llguidance over one tokenizer; compiled grammars are kept per spec and copied for each request."""

    name = "llguidance"

    def __init__(self, tokenizer: Tokenizer, vocab: GrammarVocab | None = None) -> None:
        llguidance = _llguidance()
        vocab = vocab or grammar_vocab(tokenizer)
        if not vocab.eos_token_ids:
            raise ConfigError("structured output needs an end-of-sequence token; the tokenizer names none")
        encoder = _Encoder(
            tokenizer, vocab.token_bytes, sorted(vocab.special_ids), vocab.eos_token_ids[0], vocab.bos_token_id
        )
        wrapper = llguidance.TokenizerWrapper(encoder)
        self._tokenizer = llguidance.LLTokenizer(wrapper, n_vocab=vocab.size, eos_token=list(vocab.eos_token_ids))
        self._vocab = vocab
        self._templates: OrderedDict[GrammarSpec, Any] = OrderedDict()

    def matcher(self, spec: GrammarSpec) -> GrammarMatcher:
        return GrammarMatcher(self._template(spec).deep_copy(), self._vocab.size, self._vocab.eos_token_ids)

    def _template(self, spec: GrammarSpec) -> Any:
        """The compiled grammar at its start; compiling costs ~ms, a deep copy ~µs."""
        template = self._templates.get(spec)
        if template is not None:
            self._templates.move_to_end(spec)
            return template
        template = _llguidance().LLMatcher(self._tokenizer, grammar_text(spec), log_level=0)
        if template.is_error():
            raise InvalidRequestError(f"invalid {spec.kind.replace('_', ' ')}: {template.get_error()}")
        self._templates[spec] = template
        if len(self._templates) > TEMPLATE_CACHE_SIZE:
            self._templates.popitem(last=False)
        return template
