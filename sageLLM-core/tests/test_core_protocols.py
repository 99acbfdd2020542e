"""Protocols: runtime isinstance accepts structural implementations and rejects incomplete ones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from sagellm.core import protocols
from sagellm.core.protocols import (
    CommBackend,
    CompletionHandle,
    CoTAccelerator,
    EvictionPolicy,
    FusedKernel,
    InterconnectBackend,
    IRBuilder,
    KVTransferChannel,
    LifetimePredictor,
    OverlapManager,
    PrefixIndex,
    Quantizer,
    Sparsifier,
    SpeculativeDecoder,
    TopologyDetector,
)
from sagellm.core.registry import GROUPS
from sagellm.core.types import DraftSequence, ExecutionPlan, KVBlockMeta, SchedulerState, TopologyInfo


class Handle:
    def done(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> None:
        return None


class Detector:
    def detect(self) -> TopologyInfo:
        return TopologyInfo()


class Builder:
    name = "fifo"

    def build(self, state: SchedulerState) -> ExecutionPlan:
        return ExecutionPlan()


class Predictor:
    def predict(self, block_meta: KVBlockMeta, now: float = 0.0) -> float:
        return float("inf")

    def observe(self, block_meta: KVBlockMeta, reused_after: float | None) -> None:
        return None


class Channel:
    def transfer(self, blocks: Sequence[int], target_node: str) -> Handle:
        return Handle()


class Done:
    def __init__(self, value: Any) -> None:
        self.value = value

    def done(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> Any:
        return self.value


class Overlap:
    def schedule(self, compute: Callable[[], Any], comm: Callable[[], Any]) -> tuple[Any, Any]:
        return compute(), comm()

    def start(self, comm: Callable[[], Any]) -> Done:
        return Done(comm())

    def close(self) -> None:
        return None


class Comm:
    name = "single"
    rank = 0
    world_size = 1

    def all_reduce(self, tensor: Any, op: str = "sum") -> Any:
        return tensor

    def all_gather(self, tensor: Any) -> Any:
        return [tensor]

    def reduce_scatter(self, tensor: Any, op: str = "sum") -> Any:
        return tensor

    def broadcast(self, tensor: Any, src: int = 0) -> Any:
        return tensor

    def send(self, tensor: Any, dst: int) -> None:
        return None

    def recv(self, tensor: Any, src: int) -> Any:
        return tensor

    def barrier(self) -> None:
        return None

    def close(self) -> None:
        return None


class VendorComm(Comm):
    vendor = "ascend"
    device_type = "npu"


class IdentityQuantizer:
    bits = 8

    def quantize(self, weight: Any) -> Any:
        return weight

    def dequantize(self, qweight: Any) -> Any:
        return qweight


class NoSparsity:
    pattern = "unstructured"
    sparsity = 0.0

    def calibration_observer(self) -> Any:
        return None

    def layer_sparsities(self, blocks: Any) -> list[float]:
        return [0.0] * len(blocks)

    def sparsify(self, weight: Any, calibration: Any = None, sparsity: float | None = None) -> Any:
        return weight

    def linear(self, x: Any, sweight: Any, bias: Any = None) -> Any:
        return x

    def densify(self, sweight: Any) -> Any:
        return sweight


class Speculator:
    name = "none"

    def propose(self, sequences: Sequence[DraftSequence], num_tokens: int) -> list[list[int]]:
        return [[] for _ in sequences]

    def verify(self, draft_token_ids: Sequence[int], target_token_ids: Sequence[int]) -> int:
        return 0

    def accept(self, request_id: str, token_ids: Sequence[int]) -> None:
        pass

    def release(self, request_id: str) -> None:
        pass


class Kernel:
    name = "noop"
    ops = ("noop",)

    def serves(self, op: str, *tensors: Any) -> bool:
        return op in self.ops

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        return None


class CoT:
    name = "none"
    probe_suffix = "Answer:"
    max_probe_tokens = 8
    esc_window = 4

    def budget_prompt(self, prompt: str, budget: int) -> str:
        return prompt

    def should_probe(self, progress: Any) -> bool:
        return False

    def extract_answer(self, text: str) -> str | None:
        return None

    def observe_probe(self, probe: Any) -> bool:
        return False

    def consistent(self, answers: Any) -> str | None:
        return None

    def vote(self, answers: Any) -> str | None:
        return None

    def release(self, request_id: str) -> None:
        return None


# PrefixIndex, KVPool and EvictionPolicy have full reference implementations in test_core_conformance.py.
STRUCTURAL: list[tuple[type, type]] = [
    (CompletionHandle, Handle),
    (TopologyDetector, Detector),
    (IRBuilder, Builder),
    (LifetimePredictor, Predictor),
    (KVTransferChannel, Channel),
    (OverlapManager, Overlap),
    (CommBackend, Comm),
    (InterconnectBackend, VendorComm),
    (Quantizer, IdentityQuantizer),
    (Sparsifier, NoSparsity),
    (SpeculativeDecoder, Speculator),
    (FusedKernel, Kernel),
    (CoTAccelerator, CoT),
]


@pytest.mark.parametrize(("protocol", "impl"), STRUCTURAL, ids=lambda p: p.__name__)
def test_structural_implementation_is_accepted(protocol: type, impl: type) -> None:
    """No inheritance needed: having the members is enough."""
    assert protocol not in impl.__mro__
    assert isinstance(impl(), protocol)


def _without(impl: type, member: str) -> type:
    """A copy of ``impl`` whose ``member`` is missing (attribute set to None counts as absent too)."""
    namespace = {k: v for k, v in vars(impl).items() if k not in ("__dict__", "__weakref__", member)}
    for base in impl.__mro__[1:-1]:
        for key, value in vars(base).items():
            if key != member and not key.startswith("__"):
                namespace.setdefault(key, value)
    return type(f"{impl.__name__}Without_{member}", (), namespace)


def _members(protocol: type) -> list[str]:
    """Public members the protocol declares (methods and properties)."""
    return sorted(m for m in vars(protocol) if not m.startswith("_"))


@pytest.mark.parametrize(("protocol", "impl"), STRUCTURAL, ids=lambda p: p.__name__)
def test_incomplete_implementation_is_rejected(protocol: type, impl: type) -> None:
    members = _members(protocol)
    assert members, protocol
    for member in members:
        incomplete = _without(impl, member)
        assert not isinstance(incomplete(), protocol), f"{protocol.__name__} accepted an object without {member}"


def test_unrelated_objects_are_rejected() -> None:
    for protocol, _ in STRUCTURAL:
        assert not isinstance(object(), protocol)
    assert not isinstance(Detector(), IRBuilder)
    assert not isinstance(Builder(), PrefixIndex)
    assert not isinstance(Handle(), EvictionPolicy)


def test_every_protocol_is_runtime_checkable_and_exported() -> None:
    for name in protocols.__all__:
        protocol = getattr(protocols, name)
        assert getattr(protocol, "_is_runtime_protocol", False), name
    assert {g.protocol for g in GROUPS.values()} <= {getattr(protocols, n) for n in protocols.__all__}
    assert len(GROUPS) == len({g.protocol for g in GROUPS.values()}), "one group per protocol"
