"""The ``self`` speculative decoder: the target model drafts for itself with some of its layers skipped.

Training-free and without extra weights (Draft & Verify, Zhang et al.
2024; SWIFT, Xia et al. 2024): the draft is the target running a subset of
its layers, chosen by :func:`choose_layers` on the engine's bundled text
unless the ``layers`` option names them. The engine lends the model
(core's ``DraftModelSource``) and keeps the draft's KV.
"""

from __future__ import annotations

import logging
from typing import Any

from sagellm.core.config import Section
from sagellm.core.errors import ConfigError
from sagellm.core.protocols import DraftModelSource
from sagellm.speculative_decoding.layer_calibration import LayerChoice, choose_layers, parse_layers
from sagellm.speculative_decoding.model_decoder import ModelDraftDecoder

log = logging.getLogger(__name__)
DEFAULT_NUM_TOKENS = 4


class SelfSpeculativeDecoder(ModelDraftDecoder):
    """Drafts from ``layers`` of the target itself; ``choice`` says how they were chosen (None: given)."""

    def __init__(self, source: DraftModelSource, layers: tuple[int, ...], choice: LayerChoice | None = None) -> None:
        super().__init__("self", source.layer_subset(layers))
        self.layers = layers
        self.choice = choice

    @classmethod
    def from_config(
        cls, section: Section, draft_models: DraftModelSource | None = None, **_: Any
    ) -> SelfSpeculativeDecoder:
        if draft_models is None:
            raise ConfigError("self speculation needs an engine that lends its model (core's DraftModelSource)")
        unknown = sorted(set(section.options) - {"layers"})
        if unknown:
            raise ConfigError(f"self: unknown option(s) {', '.join(unknown)} (known: layers)")
        if "layers" in section.options:
            return cls(draft_models, parse_layers(section.options["layers"], draft_models.num_layers))
        max_tokens = int(getattr(section, "num_speculative_tokens", DEFAULT_NUM_TOKENS))
        choice = choose_layers(draft_models.num_layers, draft_models.agreement, max_tokens)
        log.warning(
            "self speculation: keeping %d of %d layers (agreement %.0f %% on calibration text, predicted %.2fx at K=%d)%s",
            len(choice.layers),
            draft_models.num_layers,
            100 * choice.agreement,
            choice.predicted_speedup,
            choice.num_tokens,
            ""
            if choice.predicted_speedup > 1
            else "; no subset predicts a speed-up, so speculation will mostly stay off",
        )
        return cls(draft_models, choice.layers, choice)
