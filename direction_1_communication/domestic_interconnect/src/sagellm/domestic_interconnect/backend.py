"""One InterconnectBackend for every vendor: the vendor table row decides names and devices.

Each vendor's torch registers its collective library as a torch.distributed
backend, so the collectives themselves are the same calls everywhere; what
differs is the plugin to import, the backend name and the device string,
all of which come from :data:`sagellm.domestic_interconnect.vendors.VENDORS`.
A subclass per vendor only names its table row (``SPEC``), which keeps the
registry entries plain classes the engine builds like any CommBackend::

    HcclBackend(rank, world_size, init_method="tcp://host:29500", timeout_s=30.0)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.distributed as dist

from sagellm.core.errors import ConfigError
from sagellm.domestic_interconnect.probe import require
from sagellm.domestic_interconnect.torch_group import (
    bind_device,
    check_group_args,
    destroy_default_group,
    init_default_group,
    reduce_op,
    translated,
)
from sagellm.domestic_interconnect.vendors import VendorSpec

DEFAULT_INIT_METHOD = "tcp://127.0.0.1:29500"
OPTIONS = ("local_rank", "device", "backend")


class TorchInterconnectBackend:
    """Collectives over a vendor's torch.distributed backend (see the class docstring of CommBackend).

    Options (from the ``domestic_interconnect`` config section):

    - ``local_rank``: device index on this host (default: ``rank``);
    - ``device``: a torch device string overriding ``"<device_type>:<local_rank>"``
      (CI runs the fake vendor backends on ``"cpu"``);
    - ``backend``: a torch.distributed backend name overriding the table's
      (CI only: a CPU build of torch cannot fake the built-in ``"nccl"``).

    A plugin that is not installed is a NotSupportedError naming it and what
    to install; a tensor on another device is a ConfigError, not a vendor crash.
    """

    SPEC: ClassVar[VendorSpec]

    def __init__(
        self,
        rank: int,
        world_size: int,
        init_method: str = DEFAULT_INIT_METHOD,
        timeout_s: float = 30.0,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for interconnect backend '{self.SPEC.key}' "
                f"(known: {', '.join(OPTIONS)})"
            )
        check_group_args(rank, world_size, init_method, timeout_s)
        self._backend_name: str = options.get("backend") or self.SPEC.backend
        require(self.SPEC, self._backend_name)
        local_rank = options.get("local_rank", rank)
        self._device = _resolve_device(self.SPEC, local_rank, options.get("device"))
        bind_device(self._device)
        self._rank = rank
        self._world_size = world_size
        self._group: Any = init_default_group(self._backend_name, rank, world_size, init_method, timeout_s)
        self._closed = False

    # ---------------------------------------------------------------- identity

    @property
    def name(self) -> str:
        return self.SPEC.key

    @property
    def vendor(self) -> str:
        return self.SPEC.vendor

    @property
    def device_type(self) -> str:
        return self.SPEC.device_type

    @property
    def device(self) -> torch.device:
        """Where this rank's tensors must live (``npu:0``, ``mlu:3``, ``cuda:1``...)."""
        return self._device

    @property
    def backend_name(self) -> str:
        """The torch.distributed backend in use (``hccl``, ``cncl``, ``nccl``)."""
        return self._backend_name

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on this backend's device (a copy when it was elsewhere)."""
        return tensor.to(self._device)

    # ---------------------------------------------------------------- collectives

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        torch_op = reduce_op(op)
        self._check(tensor, "all_reduce")
        with translated("all_reduce", self._rank):
            dist.all_reduce(tensor, op=torch_op, group=self._group)
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        self._check(tensor, "all_gather", needs_dim0=True)
        out = tensor.new_empty((self._world_size * tensor.shape[0], *tensor.shape[1:]))
        with translated("all_gather", self._rank):
            dist.all_gather_into_tensor(out, tensor, group=self._group)
        return out

    def reduce_scatter(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        torch_op = reduce_op(op)
        self._check(tensor, "reduce_scatter", needs_dim0=True)
        rows = tensor.shape[0]
        if rows % self._world_size:
            raise ConfigError(f"reduce_scatter: dim 0 ({rows}) is not divisible by world_size ({self._world_size})")
        out = tensor.new_empty((rows // self._world_size, *tensor.shape[1:]))
        with translated("reduce_scatter", self._rank):
            dist.reduce_scatter_tensor(out, tensor, op=torch_op, group=self._group)
        return out

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        self._check_peer(src, "broadcast src", allow_self=True)
        self._check(tensor, "broadcast")
        with translated("broadcast", self._rank):
            dist.broadcast(tensor, src=src, group=self._group)
        return tensor

    def send(self, tensor: torch.Tensor, dst: int) -> None:
        self._check_peer(dst, "send dst")
        self._check(tensor, "send")
        with translated(f"send to {dst}", self._rank):
            dist.send(tensor, dst=dst, group=self._group)

    def recv(self, tensor: torch.Tensor, src: int) -> torch.Tensor:
        self._check_peer(src, "recv src")
        self._check(tensor, "recv")
        with translated(f"recv from {src}", self._rank):
            dist.recv(tensor, src=src, group=self._group)
        return tensor

    def barrier(self) -> None:
        self._check_open("barrier")
        with translated("barrier", self._rank):
            dist.barrier(group=self._group)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        destroy_default_group()

    # ---------------------------------------------------------------- checks

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise ConfigError(f"{what} on a closed '{self.name}' backend")

    def _check(self, tensor: Any, what: str, needs_dim0: bool = False) -> None:
        self._check_open(what)
        if not isinstance(tensor, torch.Tensor):
            raise ConfigError(f"{what}: expected a torch.Tensor, got {type(tensor).__name__}")
        if tensor.device.type != self._device.type:
            raise ConfigError(
                f"{what}: tensor is on '{tensor.device}', backend '{self.name}' needs '{self._device}' "
                "(use backend.to_device)"
            )
        if not tensor.is_contiguous():
            raise ConfigError(f"{what}: tensor must be contiguous")
        if needs_dim0 and tensor.dim() == 0:
            raise ConfigError(f"{what}: a 0-d tensor has no dim 0 to gather or scatter along")

    def _check_peer(self, peer: int, what: str, allow_self: bool = False) -> None:
        if not isinstance(peer, int) or not 0 <= peer < self._world_size:
            raise ConfigError(f"{what} must be a rank in [0, {self._world_size}), got {peer!r}")
        if peer == self._rank and not allow_self:
            raise ConfigError(f"{what} is this rank ({peer}); point-to-point needs another rank")


def device_string(spec: VendorSpec, local_rank: int) -> str:
    """The device a vendor's torch expects for ``local_rank``: ``npu:1``, ``mlu:1``, ``cuda:1``."""
    return f"{spec.device_type}:{local_rank}"


def _resolve_device(spec: VendorSpec, local_rank: Any, override: Any) -> torch.device:
    if not isinstance(local_rank, int) or local_rank < 0:
        raise ConfigError(f"local_rank must be a non-negative int, got {local_rank!r}")
    wanted = device_string(spec, local_rank) if override is None else override
    try:
        return torch.device(wanted)
    except (RuntimeError, TypeError) as exc:  # "npu" before torch_npu renamed PrivateUse1, a typo...
        raise ConfigError(f"device {wanted!r} is not a torch device here: {exc}") from exc
