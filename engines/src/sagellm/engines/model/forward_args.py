"""One forward pass's inputs, as rank 0 hands them to the other tensor-parallel ranks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sagellm.engines.model.attention_metadata import AttentionMetadata


@dataclass(slots=True)
class ForwardArgs:
    """Everything ``LlamaForCausalLM.forward`` takes but the KV caches, which every rank holds itself."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    meta: AttentionMetadata
    logits_idx: torch.Tensor
    layers: Sequence[int] | None = None
