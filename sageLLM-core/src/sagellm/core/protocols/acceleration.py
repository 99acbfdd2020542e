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
class CalibrationObserver(Protocol):
    """Watches one linear layer's inputs while calibration text runs through the model."""

    def observe(self, x: Any) -> None:
        """Take one batch of inputs ([..., in_features]), in the model's tensor type."""
        ...

    @property
    def result(self) -> Any:
        """What ``quantize(weight, calibration=...)`` takes; None if nothing was observed."""
        ...


@runtime_checkable
class LinearQuantizer(Quantizer, Protocol):
    """A quantizer whose weights an engine can run: its own matmul kernel, and the calibration it needs.

    The engine swaps each linear layer's weight for ``quantize(weight, ...)``
    and calls ``linear(x, qweight, bias)`` in its place. When
    ``calibration_observer()`` returns an observer (SmoothQuant: per-channel
    activation ranges), the engine first runs calibration text through the
    dense model with one fresh observer per linear and passes each its
    ``result``; None means ``quantize`` needs no calibration.
    """

    def calibration_observer(self) -> CalibrationObserver | None: ...

    def quantize(self, weight: Any, calibration: Any = None) -> Any: ...

    def linear(self, x: Any, qweight: Any, bias: Any = None) -> Any:
        """``x @ W.T + bias`` for the weight ``qweight`` came from, in ``x``'s dtype."""
        ...


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
    """A set of fused ops, each called by name through ``apply(op, *args)``.

    ``ops`` lists the names it has; ``serves(op, *tensors)`` says whether
    ``op`` runs fused for tensors like these (dtype, device, shape, a built
    extension), so an engine routes only what the set really accelerates
    and keeps its own ops elsewhere.
    """

    @property
    def name(self) -> str: ...

    @property
    def ops(self) -> tuple[str, ...]: ...

    def serves(self, op: str, *tensors: Any) -> bool: ...

    def apply(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class CoTAccelerator(Protocol):
    def accelerate_cot(self, prompt: str, **kwargs: Any) -> Any: ...
