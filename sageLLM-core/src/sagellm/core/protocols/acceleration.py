"""Seams for direction-3 accelerations (weights, decoding, kernels, reasoning)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from sagellm.core.types.reasoning import AnswerProbe, ReasoningProgress
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
    """Prunes a linear layer's weight to a sparsity pattern and runs the pruned weight with its own kernel.

    ``pattern`` is ``"unstructured"`` or ``"N:M"`` (at most N nonzeros in
    every M consecutive inputs of a row: 2:4, 4:8); ``sparsity`` is the share
    of zeros it aims at (0.5 for 2:4). Like :class:`LinearQuantizer`, the
    engine runs calibration text through the model with one fresh observer
    per linear (Wanda: input-channel norms; SparseGPT: the inputs' Gram
    matrix) and passes each its ``result``; ``None`` from
    ``calibration_observer`` means the mask needs no calibration (magnitude).

    ``layer_sparsities`` lets a sparsifier spread the sparsity unevenly over
    the decoder's blocks (OWL: fewer zeros where activations have outliers),
    from every block's linears and calibration, before any is pruned; a
    uniform sparsifier returns ``[sparsity] * len(blocks)``. ``sparsify``
    returns the pruned weight in the sparsifier's own form (a packed 2:4
    kernel's operands, say); ``linear`` computes ``x @ W.T + bias`` with it
    and ``densify`` gives it back as a dense tensor, zeros where pruned, so
    the pattern can be checked.
    """

    @property
    def pattern(self) -> str: ...

    @property
    def sparsity(self) -> float: ...

    def calibration_observer(self) -> CalibrationObserver | None: ...

    def layer_sparsities(self, blocks: Sequence[Sequence[tuple[Any, Any]]]) -> list[float]:
        """The target sparsity of each block, from each block's ``(weight, calibration result)`` pairs."""
        ...

    def sparsify(self, weight: Any, calibration: Any = None, sparsity: float | None = None) -> Any:
        """The pruned weight; ``sparsity`` (unstructured patterns only) overrides the configured share."""
        ...

    def linear(self, x: Any, sweight: Any, bias: Any = None) -> Any:
        """``x @ W.T + bias`` for the pruned weight ``sweight``, in ``x``'s dtype."""
        ...

    def densify(self, sweight: Any) -> Any:
        """The pruned weight as a dense [out, in] tensor, exact zeros where pruned."""
        ...


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
    """Decides when a reasoning request has said enough: answer probes, self-consistency and token budgets.

    The engine runs the requests; the accelerator only decides. Early exit
    (DEER, Dynasor): after each step the engine shows it the request's
    ``ReasoningProgress``; where ``should_probe`` says so (a reasoning step
    ended), the engine forks a probe from the request -- its KV shared, only
    ``probe_suffix`` prefilled -- decodes up to ``max_probe_tokens`` greedily
    and reports an ``AnswerProbe``; ``observe_probe`` returning True ends the
    request with that probe's answer. A token budget: ``budget_prompt`` asks
    for brevity in the prompt, and at the hard cap the engine forces an
    answer the same way (a last probe whose answer is kept, whatever its
    confidence). Self-consistency with early stopping (ESC): the engine
    draws samples ``esc_window`` at a time, all sharing the prompt's KV, and
    stops drawing when ``consistent`` finds the latest window agreeing,
    cancelling the siblings still running; when the samples run out first,
    ``vote`` picks the answer.
    """

    @property
    def name(self) -> str: ...

    @property
    def probe_suffix(self) -> str:
        """Text that turns reasoning into an answer ("... Final answer: \\boxed{"), appended to a probe's fork."""
        ...

    @property
    def max_probe_tokens(self) -> int: ...

    @property
    def esc_window(self) -> int: ...

    def budget_prompt(self, prompt: str, budget: int) -> str:
        """The prompt asking the model to reason within ``budget`` tokens."""
        ...

    def should_probe(self, progress: ReasoningProgress) -> bool:
        """Whether to fork a probe now (a reasoning step just ended, and the last probe is far enough back)."""
        ...

    def extract_answer(self, text: str) -> str | None:
        """The answer in a probe's output or a finished completion, normalised so equal answers compare equal."""
        ...

    def observe_probe(self, probe: AnswerProbe) -> bool:
        """Record a probe's reading; True when the request should stop now (its answer is stable and confident)."""
        ...

    def consistent(self, answers: Sequence[str | None]) -> str | None:
        """ESC: the agreed answer when the latest ``esc_window`` answers all agree, else None."""
        ...

    def vote(self, answers: Sequence[str | None]) -> str | None:
        """The group's answer when its samples ran out with no window agreeing: the most frequent answer
        that is not None (ties by the accelerator's own rule), None when no sample answered."""
        ...

    def release(self, request_id: str) -> None:
        """The request ended: drop what was kept about it."""
        ...
