"""The n-gram decoder passes core's SpeculativeDecoder suite, built directly and through the registry."""

from __future__ import annotations

from sagellm.core.config import SpeculativeDecodingSection
from sagellm.core.protocols import SpeculativeDecoder
from sagellm.core.registry import create_speculative_decoder
from sagellm.core.testing import SpeculativeDecoderConformance
from sagellm.speculative_decoding import NgramDecoder


class TestNgramConformance(SpeculativeDecoderConformance):
    def make_decoder(self) -> SpeculativeDecoder:
        return NgramDecoder()


class TestNgramFromRegistry(SpeculativeDecoderConformance):
    def make_decoder(self) -> SpeculativeDecoder:
        return create_speculative_decoder(SpeculativeDecodingSection(implementation="ngram"))
