"""Time a collective through sageLLM's backend on N spawned ranks, as nccl-tests times its own.

Per size: ``warmup`` untimed calls, then ``repeats`` batches; a batch is a
barrier and ``iters`` back-to-back calls between two device
synchronisations, its time the mean per call on the slowest rank (a
collective finishes when its last rank does). The median batch is reported,
which keeps one batch disturbed by a busy machine out of the figure. Sizes follow nccl-tests' convention (all_gather: the
gathered output; reduce_scatter: the input), so the result compares with
the vendor tool's rows directly.

``plugin_path``/``preload`` let CI put fake vendor plugins in front of the
real ones; ``key="gloo"`` times plain ``torch.distributed`` gloo, the
baseline a CPU run compares against.
"""

from __future__ import annotations

import importlib
import multiprocessing
import queue
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

from sagellm.core.errors import ConfigError
from sagellm.domestic_interconnect.errors import InterconnectError, InterconnectTimeoutError

MEASURED_OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast")


@dataclass(frozen=True, slots=True)
class MeasureRequest:
    """What to time: which backend (registry key or ``"gloo"``), which op, which sizes."""

    key: str
    op: str = "all_reduce"
    sizes: tuple[int, ...] = (1 << 20,)
    iters: int = 20
    warmup: int = 5
    repeats: int = 3
    dtype: str = "float32"
    timeout_s: float = 60.0
    options: dict[str, Any] = field(default_factory=dict)
    plugin_path: str | None = None
    preload: str | None = None


def measure_times_us(request: MeasureRequest, nranks: int, init_method: str) -> dict[int, float]:
    """Mean microseconds per call for each size (slowest rank); InterconnectError if a rank fails."""
    if request.op not in MEASURED_OPS:
        raise ConfigError(f"cannot time '{request.op}' (known: {', '.join(MEASURED_OPS)})")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_rank_main, args=(rank, nranks, init_method, request, results), daemon=True)
        for rank in range(nranks)
    ]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + request.timeout_s * (2 + len(request.sizes))
    reports: dict[int, Any] = {}
    try:
        while len(reports) < nranks:
            try:
                rank, payload = results.get(timeout=0.5)
                reports[rank] = payload
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise InterconnectTimeoutError(f"timing '{request.key}' did not finish in time") from None
                dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in reports]
                if dead:
                    raise InterconnectError(f"timing '{request.key}': rank(s) {dead} died") from None
    finally:
        for proc in procs:
            proc.join(5.0)
            if proc.is_alive():
                proc.kill()
    errors = [payload for payload in reports.values() if isinstance(payload, str)]
    if errors:
        raise InterconnectError(f"timing '{request.key}' failed:\n" + "\n".join(errors))
    return dict(reports[0])


def _rank_main(rank: int, nranks: int, init_method: str, request: MeasureRequest, results: Any) -> None:
    try:
        if request.plugin_path and request.plugin_path not in sys.path:
            sys.path.insert(0, request.plugin_path)
        if request.preload:
            importlib.import_module(request.preload)
        comm = _build(request, rank, nranks, init_method)
        try:
            times = {size: _time_one(comm, request, size, nranks) for size in request.sizes}
        finally:
            comm.close()
        results.put((rank, times))
    except BaseException:
        results.put((rank, f"rank {rank}:\n{traceback.format_exc()}"))


def _build(request: MeasureRequest, rank: int, nranks: int, init_method: str) -> Any:
    if request.key == "gloo":
        return _PlainGloo(rank, nranks, init_method, request.timeout_s)
    from sagellm.domestic_interconnect.vendor_backends import BACKEND_CLASSES, auto_backend
    from sagellm.domestic_interconnect.vendors import ALIASES

    if request.key == "auto":
        return auto_backend(rank, nranks, init_method, request.timeout_s, **request.options)
    cls = BACKEND_CLASSES[ALIASES.get(request.key, request.key)]
    return cls(rank, nranks, init_method, request.timeout_s, **request.options)


def _time_one(comm: Any, request: MeasureRequest, size: int, nranks: int) -> float:
    dtype = getattr(torch, request.dtype)
    element = torch.empty((), dtype=dtype).element_size()
    per_rank = size // nranks if request.op in ("all_gather",) else size
    count = max(nranks, per_rank // element)
    count -= count % nranks  # reduce_scatter splits dim 0 evenly
    tensor = torch.ones(count, dtype=dtype, device=comm.device)
    call = _call(comm, request.op, tensor)
    for _ in range(request.warmup):
        call()
    batches = sorted(_batch_us(comm, call, request.iters) for _ in range(max(1, request.repeats)))
    return batches[len(batches) // 2]


def _batch_us(comm: Any, call: Any, iters: int) -> float:
    """Mean microseconds per call over one batch, on the slowest rank."""
    _sync(comm.device)
    comm.barrier()
    start = time.perf_counter()
    for _ in range(iters):
        call()
    _sync(comm.device)
    mean_us = (time.perf_counter() - start) / iters * 1e6
    slowest = torch.tensor([mean_us], dtype=torch.float64, device=comm.device)
    comm.all_reduce(slowest, op="max")
    return float(slowest.item())


def _call(comm: Any, op: str, tensor: torch.Tensor) -> Any:
    if op == "all_reduce":
        return lambda: comm.all_reduce(tensor)
    if op == "all_gather":
        return lambda: comm.all_gather(tensor)
    if op == "reduce_scatter":
        return lambda: comm.reduce_scatter(tensor)
    return lambda: comm.broadcast(tensor, 0)


def _sync(device: torch.device) -> None:
    module = getattr(torch, device.type, None)
    synchronize = getattr(module, "synchronize", None)
    if device.type != "cpu" and synchronize is not None:
        synchronize()


class _PlainGloo:
    """torch.distributed gloo with no sageLLM layer: the baseline of the CPU benchmark."""

    def __init__(self, rank: int, nranks: int, init_method: str, timeout_s: float) -> None:
        import datetime as dt

        import torch.distributed as dist

        self._dist = dist
        self.device = torch.device("cpu")
        dist.init_process_group(
            "gloo", init_method=init_method, rank=rank, world_size=nranks, timeout=dt.timedelta(seconds=timeout_s)
        )
        self._n = nranks

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        red = self._dist.ReduceOp.MAX if op == "max" else self._dist.ReduceOp.SUM
        self._dist.all_reduce(tensor, op=red)
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.new_empty((self._n * tensor.shape[0], *tensor.shape[1:]))
        self._dist.all_gather_into_tensor(out, tensor)
        return out

    def reduce_scatter(self, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.new_empty((tensor.shape[0] // self._n, *tensor.shape[1:]))
        self._dist.reduce_scatter_tensor(out, tensor)
        return out

    def broadcast(self, tensor: torch.Tensor, src: int) -> torch.Tensor:
        self._dist.broadcast(tensor, src=src)
        return tensor

    def barrier(self) -> None:
        self._dist.barrier()

    def close(self) -> None:
        self._dist.destroy_process_group()
