"""The w8a8 quantizer passes core's LinearQuantizer conformance suite and is found through the registry."""

from __future__ import annotations

from typing import Any

import torch

from sagellm.core import registry
from sagellm.core.config import load_config
from sagellm.core.testing import LinearQuantizerConformance
from sagellm.quantization import SmoothQuantW8A8


class TestW8A8Conformance(LinearQuantizerConformance):
    def make_quantizer(self) -> SmoothQuantW8A8:
        return SmoothQuantW8A8()

    def make_weight(self, rows: int, cols: int, seed: int) -> Any:
        generator = torch.Generator().manual_seed(seed)
        magnitudes = torch.logspace(-3, 1, rows)[:, None]
        return torch.randn(rows, cols, generator=generator) * magnitudes

    def to_rows(self, tensor: Any) -> list[list[float]]:
        return tensor.float().tolist()


def test_registry_builds_w8a8_with_options() -> None:
    config = load_config(quantization={"implementation": "w8a8", "options": {"alpha": 0.7}})
    quantizer = registry.create_quantizer(config)
    assert isinstance(quantizer, SmoothQuantW8A8) and quantizer.alpha == 0.7
