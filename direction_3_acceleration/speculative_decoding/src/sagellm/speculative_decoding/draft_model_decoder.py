"""The ``draft`` speculative decoder: a smaller model with the target's tokenizer drafts greedily.

Any model file the engine can load works (a smaller model of the family,
or the same model quantized harder: a 4-bit GGUF drafting for bf16
weights). The engine loads it (core's ``DraftModelSource``) and refuses a
file whose vocabulary differs from the target's.
"""

from __future__ import annotations

from typing import Any

from sagellm.core.config import Section
from sagellm.core.errors import ConfigError
from sagellm.core.protocols import DraftModelSource
from sagellm.speculative_decoding.model_decoder import ModelDraftDecoder


class DraftModelDecoder(ModelDraftDecoder):
    def __init__(self, source: DraftModelSource, model: str) -> None:
        super().__init__("draft", source.load(model))
        self.model_path = model

    @classmethod
    def from_config(cls, section: Section, draft_models: DraftModelSource | None = None, **_: Any) -> DraftModelDecoder:
        if draft_models is None:
            raise ConfigError("draft-model speculation needs an engine that loads models (core's DraftModelSource)")
        unknown = sorted(set(section.options) - {"model"})
        if unknown:
            raise ConfigError(f"draft: unknown option(s) {', '.join(unknown)} (known: model)")
        model = section.options.get("model")
        if not isinstance(model, str) or not model:
            raise ConfigError(
                "draft: give the draft model's path, e.g. --speculative draft --speculative-option model=draft.gguf "
                'or --speculative-config \'{"method": "draft_model", "model": "draft.gguf"}\''
            )
        return cls(draft_models, model)
