"""Seams for direction-3 accelerations (weights, decoding, kernels, reasoning)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from sagellm.core.types.speculation import DraftSequence


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
    """Guesses the next tokens of running sequences; the engine checks the guesses in one target pass.

    Each step the engine asks ``propose`` for up to ``num_tokens`` drafts per
    speculating sequence (all of a step's sequences at once, so a draft model
    runs one batch), runs the target model over each sequence's last token
    plus its drafts, keeps the leading drafts the target agrees with
    (``verify``; at temperature > 0 the engine's rejection sampler decides)
    and one token of the target's own, and reports what the sequence grew by
    through ``accept``. ``release`` ends a request. A proposer may return
    fewer drafts, or none, for any sequence: it is then decoded normally.
    """

    @property
    def name(self) -> str: ...

    def propose(self, sequences: Sequence[DraftSequence], num_tokens: int) -> list[list[int]]:
        """Up to ``num_tokens`` draft token ids per sequence, in the order given."""
        ...

    def verify(self, draft_token_ids: Sequence[int], target_token_ids: Sequence[int]) -> int:
        """Number of leading draft tokens equal to the target's greedy choices at their positions."""
        ...

    def accept(self, request_id: str, token_ids: Sequence[int]) -> None:
        """The tokens the sequence grew by this step (accepted drafts, then the target's own)."""
        ...

    def release(self, request_id: str) -> None:
        """The request ended: drop its state (what it taught a shared cache may stay)."""
        ...


@runtime_checkable
class DraftModel(Protocol):
    """A language model the engine runs for a speculative decoder, with its own KV per request.

    ``greedy`` continues each sequence by up to ``num_tokens`` argmax tokens
    (all sequences batched, one pass per token). The model keeps each
    request's KV between calls and runs only what changed since the last
    one: the tokens the target kept are usually its own drafts, already
    computed. A sequence it has no room for gets no drafts. ``release``
    frees a request's KV.
    """

    @property
    def name(self) -> str: ...

    def greedy(self, sequences: Sequence[DraftSequence], num_tokens: int) -> list[list[int]]: ...

    def release(self, request_id: str) -> None: ...


@runtime_checkable
class DraftModelSource(Protocol):
    """What an engine lends a speculative decoder that drafts with a model (the decoder never loads one).

    ``layer_subset`` is the target itself running only ``layers`` (self
    speculation, no extra weights); ``load`` opens another model file with
    the target's tokenizer, refused with a ``ConfigError`` otherwise.
    ``agreement`` scores a layer subset (without opening it) or an opened
    draft model: the share of positions of the engine's bundled
    calibration text where its argmax equals the full model's, an estimate
    of how often a draft is kept.
    """

    @property
    def num_layers(self) -> int: ...

    def layer_subset(self, layers: Sequence[int]) -> DraftModel: ...

    def load(self, path: str) -> DraftModel: ...

    def agreement(self, draft: Sequence[int] | DraftModel) -> float: ...


@runtime_checkable
class FusedKernel(Protocol):
    """A set of fused ops, each a typed method of one of the op groups below.

    A set implements one or more groups (:class:`PagedAttentionKernels`,
    :class:`KVQuantizeKernels`, :class:`DecoderKernels`); ``ops`` lists the
    methods it has, and ``serves(op, *tensors)`` says whether ``op`` runs
    fused for tensors like these (dtype, device, shape, a built extension),
    so an engine routes only what the set really accelerates and keeps its
    own ops elsewhere. Every op must still compute the right answer where
    it does not serve (a reference path), so calling one is always correct.
    """

    @property
    def name(self) -> str: ...

    @property
    def ops(self) -> tuple[str, ...]: ...

    def serves(self, op: str, *tensors: Any) -> bool: ...


@runtime_checkable
class PagedAttentionKernels(FusedKernel, Protocol):
    """Attention that reads K/V from the pool's blocks in place, decode and prefill.

    Blocks are ``[num_blocks, block_size, kv_heads, head_dim]``; an int8
    cache passes its codes with per-block ``key_scales``/``value_scales``
    (``[num_blocks]``), a float cache passes None. ``serves`` is asked with
    ``(query, key_blocks)``.
    """

    def paged_decode_attention(
        self,
        query: Any,
        key_blocks: Any,
        value_blocks: Any,
        block_table: Any,
        context_lens: Any,
        *,
        key_scales: Any = None,
        value_scales: Any = None,
    ) -> Any:
        """One query token per sequence ([S, Hq, D]) over its ``context_lens`` cached tokens; [S, Hq, D]."""
        ...

    def paged_prefill_attention(
        self,
        query: Any,
        key_blocks: Any,
        value_blocks: Any,
        chunk_rows: Any,
        context_lens: Any,
        block_tables: Any,
        *,
        out: Any,
        key_scales: Any = None,
        value_scales: Any = None,
    ) -> Any:
        """Every prefill chunk of a step in one call: causal attention of ``query`` rows into ``out``'s rows."""
        ...


@runtime_checkable
class KVQuantizeKernels(FusedKernel, Protocol):
    """One-pass int8 KV writes; ``serves`` is asked with ``(codes, values)``."""

    def quantize_kv(self, codes: Any, scales: Any, slots: Any, values: Any) -> None:
        """Write ``values`` [P, T, H, D] at ``slots`` [T] into int8 ``codes`` [P, N, bs, H, D], raising
        ``scales`` [P, N] where needed, in place (P stacks caches written at the same slots: K and V)."""
        ...


@runtime_checkable
class DecoderKernels(FusedKernel, Protocol):
    """A decoder layer's elementwise chains in one pass each; ``serves`` is asked with a model tensor."""

    def rms_norm(self, x: Any, weight: Any, eps: float) -> Any:
        """RMSNorm of each row of ``x`` [T, H]."""
        ...

    def silu_mul(self, gate_up: Any) -> Any:
        """``silu(gate) * up`` of a fused [T, 2I] gate/up projection."""
        ...

    def rope_qk(
        self,
        qkv: Any,
        cos_table: Any,
        sin_table: Any,
        positions: Any,
        num_q_heads: int,
        num_kv_heads: int,
        head_dim: int,
    ) -> tuple[Any, Any]:
        """Rotated q [T, Hq, D] and k [T, Hkv, D] from a fused [T, (Hq + 2 Hkv) D] projection."""
        ...


KERNEL_OP_GROUPS: dict[type[Any], tuple[str, ...]] = {  # type[Any]: protocols are abstract
    PagedAttentionKernels: ("paged_decode_attention", "paged_prefill_attention"),
    KVQuantizeKernels: ("quantize_kv",),
    DecoderKernels: ("rms_norm", "silu_mul", "rope_qk"),
}
"""Each op group and the ops (methods) it names: what a set's ``ops`` is made of."""


@runtime_checkable
class CoTAccelerator(Protocol):
    def accelerate_cot(self, prompt: str, **kwargs: Any) -> Any: ...
