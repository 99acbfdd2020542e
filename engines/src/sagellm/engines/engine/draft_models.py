"""The draft models an engine lends its speculative decoder (core's ``DraftModelSource``).

The decoder package chooses (which layers, which file); the engine runs:
it owns the weights, the device and the KV memory, so a decoder never
imports the engine. Every draft model opened is remembered, so the
builder can time its passes for speculation's budget.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence

import torch

from sagellm.core.errors import ConfigError
from sagellm.engines.engine.quantize import calibration_token_ids
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.runtime.draft_runner import BLOCK_SIZE, PagedDraftModel
from sagellm.engines.runtime.perplexity import window_logits
from sagellm.engines.tokenizer import Tokenizer

AGREEMENT_TOKENS = 512  # of the bundled calibration text: ~0.1 s per layer subset on 2 cores
AGREEMENT_CHUNK = 512
# per target: its full argmax on the calibration text, and each layer subset's agreement (engines built again
# around a loaded model, as tests and benchmarks do, calibrate once)
_full_argmax: weakref.WeakKeyDictionary[LlamaForCausalLM, torch.Tensor] = weakref.WeakKeyDictionary()
_subset_agreement: weakref.WeakKeyDictionary[LlamaForCausalLM, dict[tuple[int, ...], float]] = (
    weakref.WeakKeyDictionary()
)


class EngineDraftModels:
    """Draft models over the engine's device: the target's own layers, or another file with its tokenizer.

    ``max_tokens``: the KV a draft model stores, in tokens (the engine
    passes its own pool's capacity, so drafting never runs out first).
    """

    def __init__(
        self,
        target: LlamaForCausalLM,
        tokenizer: Tokenizer,
        max_tokens: int,
        load_model: Callable[[str], tuple[LlamaForCausalLM, Tokenizer]],
    ) -> None:
        self.target = target
        self.tokenizer = tokenizer
        self.load_model = load_model
        self.num_blocks = max(2, -(-max_tokens // BLOCK_SIZE))
        self.opened: list[PagedDraftModel] = []

    @property
    def num_layers(self) -> int:
        return self.target.config.num_layers

    def layer_subset(self, layers: Sequence[int]) -> PagedDraftModel:
        chosen = self._checked_layers(layers)
        return self._open(PagedDraftModel(f"layers {_ranges(chosen)}", self.target, self.num_blocks, chosen))

    def load(self, path: str) -> PagedDraftModel:
        model, tokenizer = self.load_model(path)
        vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
        if vocab != self.tokenizer.backend.get_vocab(with_added_tokens=True):
            raise ConfigError(
                f"draft model {path} has a different tokenizer from the target's "
                f"({len(vocab)} vs {self.tokenizer.vocab_size} tokens, or different ids); "
                "a draft must share the target's vocabulary token for token"
            )
        return self._open(PagedDraftModel(str(path), model, self.num_blocks))

    def agreement(self, draft: Sequence[int] | PagedDraftModel) -> float:
        """Share of calibration positions where a draft (a layer subset, or an opened draft model) predicts
        the full model's argmax: an estimate of how often a draft is kept."""
        if isinstance(draft, PagedDraftModel):
            if draft.model is not self.target or draft.layers is None:
                return self._agreement(draft.model, draft.layers)
            draft = draft.layers  # a subset of the target: calibration has usually scored it already
        layers = self._checked_layers(draft)
        known = _subset_agreement.setdefault(self.target, {})
        key = tuple(layers)
        if key not in known:
            known[key] = self._agreement(self.target, layers)
        return known[key]

    def _agreement(self, model: LlamaForCausalLM, layers: list[int] | None) -> float:
        predicted = window_logits(model, self._calibration_ids, AGREEMENT_CHUNK, layers).argmax(dim=-1)
        return float((predicted == self._full_argmax()).float().mean())

    def _full_argmax(self) -> torch.Tensor:
        cached = _full_argmax.get(self.target)
        if cached is None:
            cached = _full_argmax[self.target] = window_logits(
                self.target, self._calibration_ids, AGREEMENT_CHUNK
            ).argmax(dim=-1)
        return cached

    @functools.cached_property
    def _calibration_ids(self) -> list[int]:
        return calibration_token_ids(self.tokenizer, AGREEMENT_TOKENS)

    def _checked_layers(self, layers: Sequence[int]) -> list[int]:
        chosen = sorted(set(int(layer) for layer in layers))
        if not chosen or chosen[0] < 0 or chosen[-1] >= self.num_layers:
            raise ConfigError(
                f"draft layers must be a non-empty subset of 0..{self.num_layers - 1}, got {list(layers)}"
            )
        return chosen

    def _open(self, model: PagedDraftModel) -> PagedDraftModel:
        self.opened.append(model)
        return model


def _ranges(layers: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 6]`` as ``0-2,5-6``: a draft's name stays short in logs."""
    spans: list[list[int]] = []
    for layer in layers:
        if spans and layer == spans[-1][1] + 1:
            spans[-1][1] = layer
        else:
            spans.append([layer, layer])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
