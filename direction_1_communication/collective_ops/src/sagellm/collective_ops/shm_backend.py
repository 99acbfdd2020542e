"""CommBackend over POSIX shared memory between the ranks of one host (the tensor-parallel fast path).

Setup goes through the TCPStore at ``init_method``::

    rank 0: create segment /dev/shm/sagellm-coll-<pid>-<random>, write its header, publish the name
    rank k: read the name, map the segment, check the header
    all   : publish "mapped/<rank>", wait for every rank's -> rank 0 unlinks the name -> shm barrier

After that no socket is touched: a collective is one call into the C++
kernel (``csrc/shm_comm.cpp``), which stages data in per-rank slots,
synchronises through futex words in the segment (spin, then sleep) and
reduces with AVX-512 where the CPU has it. See that file for the layout.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import torch

from sagellm.collective_ops.native import load_shm_kernel
from sagellm.collective_ops.rendezvous import CollectiveError, open_store, wait_keys
from sagellm.collective_ops.shm_segment import SharedSegment
from sagellm.collective_ops.validation import (
    check_group,
    check_has_rows,
    check_other_peer,
    check_peer,
    op_code,
    scatter_rows,
)
from sagellm.core.errors import ConfigError, NotSupportedError

REDUCIBLE = (torch.float32, torch.bfloat16, torch.float16)
_PAGE = 4096


class ShmBackend:
    """Collectives for ranks on one host through one shared-memory segment.

    Options (config section ``collective_ops``): ``slot_bytes`` (chunk a
    rank stages per step; the segment is about ``2 * (world_size + 1) *
    slot_bytes``), ``small_bytes`` (all_reduces up to this size take the
    one-sync path where every rank reduces everything; larger ones split
    the reduction across ranks), ``mail_bytes`` (send/recv chunk), ``spin_us``
    (how long a wait spins before it sleeps on the futex), ``isa``
    (``"portable"`` forces the non-AVX-512 kernel).
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        init_method: str = "tcp://127.0.0.1:29500",
        timeout_s: float = 30.0,
        slot_bytes: int = 256 << 10,
        small_bytes: int = 32 << 10,
        mail_bytes: int = 1 << 20,
        spin_us: float = 200.0,
        isa: str | None = None,
    ) -> None:
        check_group(rank, world_size)
        for option, value in (("slot_bytes", slot_bytes), ("mail_bytes", mail_bytes)):
            if not isinstance(value, int) or value < _PAGE or value % _PAGE:
                raise ConfigError(f"shm backend: {option} must be a positive multiple of {_PAGE}, got {value!r}")
        if spin_us < 0 or small_bytes < 0:
            raise ConfigError("shm backend: spin_us and small_bytes must not be negative")
        kernel = load_shm_kernel(isa)  # before the rendezvous: a missing compiler fails fast on every rank
        self._rank, self._world_size, self._small_bytes = rank, world_size, small_bytes
        self._segment: SharedSegment | None = None
        self._comm: Any = None
        self._store: Any = None
        nbytes = kernel.ShmComm.segment_bytes(world_size, slot_bytes, mail_bytes)
        store = open_store(rank, world_size, init_method, timeout_s)
        try:
            self._join(kernel, store, nbytes, (slot_bytes, mail_bytes, int(spin_us * 1e3), int(timeout_s * 1e9)))
            wait_keys(store, [f"mapped/{r}" for r in range(world_size)], timeout_s, "every rank to map the segment")
            if rank == 0 and self._segment is not None:
                self._segment.unlink()  # all mapped: nothing leaks even if a rank crashes from here on
            pass
            self.barrier()  # nobody leaves (and closes the store) while a peer may still be in store.wait
        except BaseException:
            self.close()
            raise

    def _join(self, kernel: Any, store: Any, nbytes: int, sizes: tuple[int, int, int, int]) -> None:
        if self._rank == 0:
            name = f"sagellm-coll-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            self._segment = SharedSegment(name, nbytes, create=True)
            self._comm = kernel.ShmComm(self._segment.tensor, 0, self._world_size, *sizes, True)
            store.set("segment", name)
        else:
            wait_keys(store, ["segment"], sizes[3] / 1e9, "rank 0 to create the segment")
            name = store.get("segment").decode()
            self._segment = SharedSegment(name, nbytes, create=False)
            self._comm = kernel.ShmComm(self._segment.tensor, self._rank, self._world_size, *sizes, False)
        store.set(f"mapped/{self._rank}", "1")

    # ------------------------------------------------------------------------------ protocol
    @property
    def name(self) -> str:
        return "shm"

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    def all_reduce(self, tensor: Any, op: str = "sum") -> Any:
        code = op_code(op)
        self._check_reducible(tensor)
        if tensor.is_contiguous():
            self._call("all_reduce", tensor, code, self._small_bytes)
        else:
            work = tensor.contiguous()
            self._call("all_reduce", work, code, self._small_bytes)
            tensor.copy_(work)
        return tensor

    def all_gather(self, tensor: Any) -> Any:
        check_has_rows(tuple(tensor.shape), "all_gather")
        src = self._cpu(tensor).contiguous()
        out: torch.Tensor = self._call("all_gather", src)  # outputs of 1 MiB and more come from the kernel's pool
        return out

    def reduce_scatter(self, tensor: Any, op: str = "sum") -> Any:
        code = op_code(op)
        scatter_rows(tuple(tensor.shape), self._world_size)
        self._check_reducible(tensor)
        out: torch.Tensor = self._call("reduce_scatter", tensor.contiguous(), code)
        return out

    def broadcast(self, tensor: Any, src: int = 0) -> Any:
        check_peer(src, self._world_size, "broadcast src")
        work = self._cpu(tensor) if tensor.is_contiguous() else tensor.contiguous()
        self._call("broadcast", work, src)
        if work is not tensor:
            tensor.copy_(work)
        return tensor

    def send(self, tensor: Any, dst: int) -> None:
        check_other_peer(dst, self._rank, self._world_size, "send dst")
        self._call("send", self._cpu(tensor).contiguous(), dst)

    def recv(self, tensor: Any, src: int) -> Any:
        check_other_peer(src, self._rank, self._world_size, "recv src")
        work = self._cpu(tensor) if tensor.is_contiguous() else tensor.contiguous()
        self._call("recv", work, src)
        if work is not tensor:
            tensor.copy_(work)
        return tensor

    def barrier(self) -> None:
        self._call("barrier")

    def close(self) -> None:
        self._comm = None
        self._store = None
        segment, self._segment = self._segment, None
        if segment is not None:
            if self._rank == 0:
                segment.unlink()
            segment.close()

    # ------------------------------------------------------------------------------ helpers
    def _call(self, what: str, *args: Any) -> Any:
        comm = self._comm
        if comm is None:
            raise CollectiveError(f"shm backend: {what} on a closed backend")
        try:
            return getattr(comm, what)(*args)
        except RuntimeError as exc:  # a peer died, timed out or aborted; the kernel says which
            raise CollectiveError(str(exc)) from exc

    def _check_reducible(self, tensor: Any) -> None:
        self._cpu(tensor)
        if tensor.dtype not in REDUCIBLE:
            raise NotSupportedError(f"shm backend reduces float32, bfloat16 and float16, not {tensor.dtype}")

    @staticmethod
    def _cpu(tensor: Any) -> torch.Tensor:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
            where = getattr(tensor, "device", type(tensor).__name__)
            raise ConfigError(f"shm backend works on CPU tensors, got one on {where}")
        return tensor
