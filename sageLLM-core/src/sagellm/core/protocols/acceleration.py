"""Seams for direction-3 accelerations (weights, decoding, kernels, reasoning)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Quantizer(Protocol):
    """Turns a weight into a compact form and back (tensors are opaque here)."""

    @property
    def bits(self) -> int: ...

    def quantize(self, weight: Any) -> Any: ...

    def dequantize(self, qweight: Any) -> Any: ...


@runtime_checkable
class Sparsifier(Protocol):
    def sparsify(self, weight: Any) -> Any: ...


@runtime_checkable
class SpeculativeDecoder(Protocol):
    """Draft tokens cheaply, then verify them with one target-model pass."""

    def propose(self, token_ids: Sequence[int], num_tokens: int) -> list[int]: ...

    def verify(self, draft_token_ids: Sequence[int], target_token_ids: Sequence[int]) -> int:
        """Number of leading draft tokens the target model accepts."""
        ...


@runtime_checkable
class FusedKernel(Protocol):
    @property
    def name(self) -> str: ...

    def apply(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class CoTAccelerator(Protocol):
    def accelerate_cot(self, prompt: str, **kwargs: Any) -> Any: ...
