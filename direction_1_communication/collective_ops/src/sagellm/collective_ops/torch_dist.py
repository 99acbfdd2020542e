"""gloo and nccl through torch.distributed, as standalone process groups (no global default group).

Each backend object owns its TCPStore and its ProcessGroup, so an engine
can hold several groups (or a gloo group next to an shm one) without
``init_process_group``'s process-wide state. Failures of the underlying
library (a peer that died, a timeout) become CollectiveError.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from sagellm.collective_ops.rendezvous import CollectiveError, open_store
from sagellm.collective_ops.validation import (
    check_group,
    check_has_rows,
    check_other_peer,
    check_peer,
    op_code,
    scatter_rows,
)
from sagellm.core.errors import NotSupportedError

_c10d: Any = dist  # the store classes are not in torch.distributed's typed exports
_REDUCE_OPS: dict[str, Any] = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}


class TorchDistBackend:
    """The shared body of GlooBackend and NcclBackend: argument checks, error mapping, the c10d calls."""

    backend_name = ""

    def __init__(self, rank: int, world_size: int, init_method: str, timeout_s: float) -> None:
        check_group(rank, world_size)
        self._rank, self._world_size = rank, world_size
        self._device = self._pick_device(rank)
        self._store: Any = open_store(rank, world_size, init_method, timeout_s)
        timeout = datetime.timedelta(seconds=timeout_s)
        try:
            self._pg: Any = self._make_group(self._store, rank, world_size, timeout)
        except Exception as exc:
            raise CollectiveError(
                f"{self.backend_name}: rank {rank} could not create its process group: {exc}"
            ) from exc

    # ----------------------------------------------------------------- what subclasses choose
    def _pick_device(self, rank: int) -> torch.device:
        raise NotImplementedError

    def _make_group(self, store: Any, rank: int, world_size: int, timeout: datetime.timedelta) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------------------------ protocol
    @property
    def name(self) -> str:
        return self.backend_name

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    def all_reduce(self, tensor: Any, op: str = "sum") -> Any:
        op_code(op)
        opts = dist.AllreduceOptions()
        opts.reduceOp = _REDUCE_OPS[op]
        with self._on_device(tensor) as work:
            self._run("all_reduce", lambda: self._pg.allreduce([work], opts))
        return tensor

    def all_gather(self, tensor: Any) -> Any:
        check_has_rows(tuple(tensor.shape), "all_gather")
        src = self._to_device(tensor).contiguous()
        out = torch.empty((self._world_size * src.shape[0], *src.shape[1:]), dtype=src.dtype, device=src.device)
        chunks = list(out.chunk(self._world_size)) if src.shape[0] else [out] * self._world_size
        self._run("all_gather", lambda: self._pg.allgather([chunks], [src]))
        return out.to(tensor.device)

    def reduce_scatter(self, tensor: Any, op: str = "sum") -> Any:
        op_code(op)
        rows = scatter_rows(tuple(tensor.shape), self._world_size)
        # gloo has no reduce_scatter on every torch version: all_reduce a copy and keep this rank's rows
        # (the same sums in the same order, so bit-identical to a native reduce_scatter of gloo's)
        full = self._to_device(tensor).clone().contiguous()
        opts = dist.AllreduceOptions()
        opts.reduceOp = _REDUCE_OPS[op]
        self._run("reduce_scatter", lambda: self._pg.allreduce([full], opts))
        return full[self._rank * rows : (self._rank + 1) * rows].clone().to(tensor.device)

    def broadcast(self, tensor: Any, src: int = 0) -> Any:
        check_peer(src, self._world_size, "broadcast src")
        opts = dist.BroadcastOptions()
        opts.rootRank, opts.rootTensor = src, 0
        with self._on_device(tensor) as work:
            self._run("broadcast", lambda: self._pg.broadcast([work], opts))
        return tensor

    def send(self, tensor: Any, dst: int) -> None:
        check_other_peer(dst, self._rank, self._world_size, "send dst")
        work = self._to_device(tensor).contiguous()
        self._run("send", lambda: self._pg.send([work], dst, 0))

    def recv(self, tensor: Any, src: int) -> Any:
        check_other_peer(src, self._rank, self._world_size, "recv src")
        with self._on_device(tensor) as work:
            self._run("recv", lambda: self._pg.recv([work], src, 0))
        return tensor

    def barrier(self) -> None:
        self._run("barrier", lambda: self._pg.barrier())

    def close(self) -> None:
        pg, self._pg = getattr(self, "_pg", None), None
        if pg is not None:
            shutdown = getattr(pg, "shutdown", None)
            if callable(shutdown):
                with contextlib.suppress(Exception):  # closing after a failure: nothing left to release
                    shutdown()
        self._store = None

    # ------------------------------------------------------------------------------ helpers
    def _run(self, what: str, start: Callable[[], Any]) -> None:
        if self._pg is None:
            raise CollectiveError(f"{self.backend_name}: {what} on a closed backend")
        try:
            start().wait()
        except Exception as exc:  # DistBackendError, RuntimeError: a peer died, timed out or the group broke
            raise CollectiveError(f"{self.backend_name}: {what} failed on rank {self._rank}: {exc}") from exc

    def _to_device(self, tensor: Any) -> Any:
        return tensor if tensor.device == self._device else tensor.to(self._device)

    def _on_device(self, tensor: Any) -> _Staged:
        return _Staged(tensor, self._device)


class _Staged:
    """An in-place op on a tensor the library cannot take as is: work on a staged copy, copy back after."""

    def __init__(self, tensor: torch.Tensor, device: torch.device) -> None:
        self._tensor = tensor
        direct = tensor.device == device and tensor.is_contiguous()
        self._work = tensor if direct else tensor.to(device).contiguous()

    def __enter__(self) -> torch.Tensor:
        return self._work

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and self._work is not self._tensor:
            self._tensor.copy_(self._work)


class GlooBackend(TorchDistBackend):
    """CPU collectives over TCP (gloo): the portable reference every other backend is compared with."""

    backend_name = "gloo"

    def __init__(
        self, rank: int, world_size: int, init_method: str = "tcp://127.0.0.1:29500", timeout_s: float = 30.0
    ) -> None:
        super().__init__(rank, world_size, init_method, timeout_s)

    def _pick_device(self, rank: int) -> torch.device:
        if not dist.is_available() or not dist.is_gloo_available():
            raise NotSupportedError(
                "gloo backend: this torch build has no gloo (torch.distributed.is_gloo_available())"
            )
        return torch.device("cpu")

    def _make_group(self, store: Any, rank: int, world_size: int, timeout: datetime.timedelta) -> Any:
        return dist.ProcessGroupGloo(_c10d.PrefixStore("gloo", store), rank, world_size, timeout)


class NcclBackend(TorchDistBackend):
    """GPU collectives (NCCL): rank r uses ``cuda:(r % device_count)``; CPU tensors are staged there and back."""

    backend_name = "nccl"

    def __init__(
        self, rank: int, world_size: int, init_method: str = "tcp://127.0.0.1:29500", timeout_s: float = 30.0
    ) -> None:
        super().__init__(rank, world_size, init_method, timeout_s)

    def _pick_device(self, rank: int) -> torch.device:
        if not torch.cuda.is_available():
            raise NotSupportedError("nccl backend: no CUDA device is visible (torch.cuda.is_available() is False)")
        if not dist.is_nccl_available():
            raise NotSupportedError(
                "nccl backend: this torch build has no NCCL (torch.distributed.is_nccl_available())"
            )
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device

    def _make_group(self, store: Any, rank: int, world_size: int, timeout: datetime.timedelta) -> Any:
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        return dist.ProcessGroupNCCL(_c10d.PrefixStore("nccl", store), rank, world_size, options)
