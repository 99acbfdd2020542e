"""Structured output: grammars that constrain what a request may generate (see backend.py for the engine)."""

from sagellm.engines.runtime.grammar.backend import (
    EXTRA,
    GrammarBackend,
    LLGuidanceBackend,
    StructuredOutputUnavailableError,
    check_grammar,
)
from sagellm.engines.runtime.grammar.matcher import GrammarMatcher
from sagellm.engines.runtime.grammar.spec import GrammarSpec, GuidedSamplingParams, grammar_of, with_grammar
from sagellm.engines.runtime.grammar.vocab import GrammarVocab, grammar_vocab

__all__ = [
    "EXTRA",
    "GrammarBackend",
    "GrammarMatcher",
    "GrammarSpec",
    "GrammarVocab",
    "GuidedSamplingParams",
    "LLGuidanceBackend",
    "StructuredOutputUnavailableError",
    "check_grammar",
    "grammar_of",
    "grammar_vocab",
    "with_grammar",
]
