"""Conformance suite for :class:`sagellm.core.protocols.CommBackend`.

A collective is only testable with every rank of a group running at once,
so the suite is two layers:

- :func:`run_checks` runs named checks on ONE rank; every rank of a group
  calls it at the same time with the same names (collectives must be
  issued in the same order everywhere);
- :func:`run_group` starts ``world_size`` processes ("spawn", a free TCP
  port in ``init_method``), runs :func:`run_checks` in each, and fails
  (never hangs) when a check fails, a rank dies or the group overruns.

Core never sees a tensor: the implementer passes a :class:`TensorOps` that
makes 1-D tensors from Python floats and reads them back. The inputs are
rank-dependent small integers (exact in every float dtype), chosen so that
a wrong rank order, a missing rank, a non-in-place ``all_reduce`` or a
wrong chunk in ``reduce_scatter`` changes the result. Usage::

    from sagellm.core.testing import CommBackendConformance

    def build_gloo(rank: int, world_size: int, init_method: str) -> CommBackend:
        return GlooBackend(rank, world_size, init_method, timeout_s=20.0)

    class TestGloo(CommBackendConformance):
        world_sizes = (2,)
        peer_timeout_s = 5.0
        build_backend = staticmethod(build_gloo)
        build_ops = staticmethod(TorchTensorOps)

The callables must be picklable (module-level functions, or staticmethods
of a module-level class) because the ranks are spawned processes.
"""

from __future__ import annotations

import multiprocessing
import queue
import socket
import struct
import time
import traceback
import unittest
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sagellm.core.errors import ConfigError, SageLLMError
from sagellm.core.protocols.communication import REDUCE_OPS, CommBackend
from sagellm.core.testing.raises import raises


class TensorOps(Protocol):
    """The few tensor operations the checks need, supplied by the backend's tests.

    dtype names are ``"float32"`` and ``"bfloat16"``; tensors live wherever
    the backend wants them (CPU for gloo/shm, the accelerator for nccl/hccl).
    """

    def make(self, values: Sequence[float], dtype: str) -> Any:
        """A new 1-D tensor holding ``values`` in ``dtype``."""
        ...

    def values(self, tensor: Any) -> list[float]:
        """Every element of ``tensor`` (any shape, row-major) as Python floats."""
        ...

    def rows(self, tensor: Any, n_rows: int) -> Any:
        """``tensor`` reshaped to ``n_rows`` x -1 (for the dim-0 collectives)."""
        ...

    def shape(self, tensor: Any) -> tuple[int, ...]: ...

    def dtype(self, tensor: Any) -> str:
        """The dtype name, as passed to :meth:`make`."""
        ...


BackendFactory = Callable[[int, int, str], CommBackend]
OpsFactory = Callable[[], TensorOps]
Check = Callable[[CommBackend, TensorOps], None]

LARGE_ELEMENTS = (1 << 19) + 3  # 2 MiB of fp32 plus an odd tail: exercises chunking and vector tails
ODD_ELEMENTS = 37  # not a multiple of any vector width


# ----------------------------------------------------------------------- helpers


def _f32(x: float) -> float:
    """``x`` rounded to the nearest fp32, as a Python float."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def _expect(check: str, rank: int, ok: bool, detail: str) -> None:
    if not ok:
        raise AssertionError(f"check '{check}' failed on rank {rank}: {detail}")


def _same(check: str, rank: int, got: list[float], want: list[float]) -> None:
    if got == want:
        return
    if len(got) != len(want):
        _expect(check, rank, False, f"{len(got)} elements, expected {len(want)}")
    first = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
    _expect(check, rank, False, f"element {first} is {got[first]!r}, expected {want[first]!r}")


def _rank_values(rank: int, n: int, scale: int = 1) -> list[float]:
    """Distinct per rank and per element, so a swapped or missing rank shows."""
    return [float(scale * (rank + 1) * 100 + i) for i in range(n)]


def _mixed(rank: int, n: int) -> list[float]:
    """Small signed integers whose max/min owner changes from element to element."""
    return [float(((rank * 7 + i * 3) % 11) - 5) for i in range(n)]


def _reduce(columns: list[list[float]], op: str) -> list[float]:
    by_column = list(zip(*columns))
    if op == "sum":
        return [float(sum(column)) for column in by_column]
    return [float(max(column) if op == "max" else min(column)) for column in by_column]


# ------------------------------------------------------------------------ checks


def _check_protocol(backend: CommBackend, ops: TensorOps) -> None:
    rank, world = backend.rank, backend.world_size
    _expect("protocol", rank, isinstance(backend, CommBackend), f"{type(backend).__name__} is not a CommBackend")
    _expect("protocol", rank, isinstance(backend.name, str) and bool(backend.name), "name must be a non-empty str")
    _expect("protocol", rank, world >= 1 and 0 <= rank < world, f"rank {rank} / world_size {world}")


def _check_all_reduce_ops(backend: CommBackend, ops: TensorOps) -> None:
    rank, world = backend.rank, backend.world_size
    for op in REDUCE_OPS:
        tensor = ops.make(_mixed(rank, ODD_ELEMENTS), "float32")
        out = backend.all_reduce(tensor, op=op)
        _expect(f"all_reduce_{op}", rank, out is tensor, "all_reduce must return the tensor it was given")
        want = _reduce([_mixed(r, ODD_ELEMENTS) for r in range(world)], op)
        _same(f"all_reduce_{op} (in place)", rank, ops.values(tensor), want)


def _check_all_reduce_identical(backend: CommBackend, ops: TensorOps) -> None:
    """fp32 sums that round: every rank must get the same bits, and with 2 ranks the exact fp32 a+b."""
    rank, world = backend.rank, backend.world_size
    inputs = [
        [_f32((r + 1) * 0.1 + i * 1e-3 + (1e7 if (i + r) % 3 == 0 else 0.0)) for i in range(257)] for r in range(world)
    ]
    tensor = backend.all_reduce(ops.make(inputs[rank], "float32"))
    got = ops.values(tensor)
    gathered = ops.values(backend.all_gather(ops.make(got, "float32")))
    for other in range(world):
        _same(f"all_reduce_identical (rank {other} vs {rank})", rank, gathered[other * 257 : (other + 1) * 257], got)
    if world <= 2:
        _same("all_reduce_identical (fp32 a+b)", rank, got, [_f32(sum(column)) for column in zip(*inputs)])
    else:
        exact = [sum(column) for column in zip(*inputs)]
        bad = [i for i, (g, e) in enumerate(zip(got, exact)) if abs(g - e) > 1e-6 * abs(e) + 1e-6]
        _expect("all_reduce_identical", rank, not bad, f"elements {bad[:5]} far from the exact sum")


def _check_all_reduce_bf16(backend: CommBackend, ops: TensorOps) -> None:
    rank, world = backend.rank, backend.world_size
    inputs = [[float((r + 1) * (i % 5)) for i in range(ODD_ELEMENTS)] for r in range(world)]
    tensor = ops.make(inputs[rank], "bfloat16")
    out = backend.all_reduce(tensor)
    _expect("all_reduce_bf16", rank, out is tensor and ops.dtype(out) == "bfloat16", "must stay the same bf16 tensor")
    _same("all_reduce_bf16", rank, ops.values(out), _reduce(inputs, "sum"))


def _check_all_reduce_large(backend: CommBackend, ops: TensorOps) -> None:
    rank, world = backend.rank, backend.world_size
    tensor = ops.make([float(i % 13 + rank) for i in range(LARGE_ELEMENTS)], "float32")
    backend.all_reduce(tensor)
    base = world * (world - 1) // 2
    _same("all_reduce_large", rank, ops.values(tensor), [float((i % 13) * world + base) for i in range(LARGE_ELEMENTS)])


def _check_all_gather(backend: CommBackend, ops: TensorOps) -> None:
    rank, world = backend.rank, backend.world_size
    tensor = ops.rows(ops.make(_rank_values(rank, 6), "float32"), 2)
    out = backend.all_gather(tensor)
    _expect("all_gather", rank, out is not tensor, "all_gather must return a new tensor")
    _expect("all_gather", rank, ops.shape(out) == (2 * world, 3), f"shape {ops.shape(out)}, expected {(2 * world, 3)}")
    _same("all_gather", rank, ops.values(out), [v for r in range(world) for v in _rank_values(r, 6)])
    _same("all_gather (input untouched)", rank, ops.values(tensor), _rank_values(rank, 6))
    half = ops.make([float(rank)] * 3, "bfloat16")
    _same(
        "all_gather_bf16",
        rank,
        ops.values(backend.all_gather(half)),
        [float(r) for r in range(world) for _ in range(3)],
    )


def _check_reduce_scatter(backend: CommBackend, ops: TensorOps) -> None:
    rank, world = backend.rank, backend.world_size
    cols = 3
    inputs = [_rank_values(r, 2 * world * cols, scale=10) for r in range(world)]
    for op in ("sum", "max"):
        tensor = ops.rows(ops.make(inputs[rank], "float32"), 2 * world)
        out = backend.reduce_scatter(tensor, op=op)
        _expect(f"reduce_scatter_{op}", rank, out is not tensor, "reduce_scatter must return a new tensor")
        _expect(f"reduce_scatter_{op}", rank, ops.shape(out) == (2, cols), f"shape {ops.shape(out)}, expected (2, 3)")
        want = _reduce(inputs, op)[rank * 2 * cols : (rank + 1) * 2 * cols]
        _same(f"reduce_scatter_{op}", rank, ops.values(out), want)
        _same(f"reduce_scatter_{op} (input untouched)", rank, ops.values(tensor), inputs[rank])


def _check_reduce_scatter_large(backend: CommBackend, ops: TensorOps) -> None:
    rank, world = backend.rank, backend.world_size
    rows, cols = 4 * world, 40_003
    tensor = ops.rows(ops.make([float(i % 7 + rank) for i in range(rows * cols)], "float32"), rows)
    out = backend.reduce_scatter(tensor)
    start, base = rank * 4 * cols, world * (world - 1) // 2
    want = [float((i % 7) * world + base) for i in range(start, start + 4 * cols)]
    _same("reduce_scatter_large", rank, ops.values(out), want)


def _check_broadcast(backend: CommBackend, ops: TensorOps) -> None:
    rank, world = backend.rank, backend.world_size
    for src in range(world):
        tensor = ops.make(_rank_values(rank, ODD_ELEMENTS), "float32")
        out = backend.broadcast(tensor, src=src)
        _expect("broadcast", rank, out is tensor, "broadcast must return the tensor it was given")
        _same(f"broadcast (src {src})", rank, ops.values(tensor), _rank_values(src, ODD_ELEMENTS))


def _check_send_recv(backend: CommBackend, ops: TensorOps) -> None:
    """A ring: even ranks send first, odd ranks receive first, so blocking sends cannot deadlock."""
    rank, world = backend.rank, backend.world_size
    if world == 1:
        return
    nxt, prev = (rank + 1) % world, (rank - 1) % world
    buffer = ops.make([0.0] * ODD_ELEMENTS, "float32")
    if rank % 2 == 0:
        backend.send(ops.make(_rank_values(rank, ODD_ELEMENTS), "float32"), nxt)
        got = backend.recv(buffer, prev)
    else:
        got = backend.recv(buffer, prev)
        backend.send(ops.make(_rank_values(rank, ODD_ELEMENTS), "float32"), nxt)
    _expect("send_recv", rank, got is buffer, "recv must return the tensor it was given")
    _same(f"send_recv (from {prev})", rank, ops.values(buffer), _rank_values(prev, ODD_ELEMENTS))


def _check_barrier(backend: CommBackend, ops: TensorOps) -> None:
    """The last rank arrives 0.3 s late; nobody may leave the barrier before it arrives."""
    rank, world = backend.rank, backend.world_size
    backend.barrier()
    if world == 1:
        return
    start = time.monotonic()
    if rank == world - 1:
        time.sleep(0.3)
    backend.barrier()
    waited = time.monotonic() - start
    _expect("barrier", rank, waited >= 0.25, f"left the barrier after {waited:.3f} s, before the late rank arrived")


def _check_bad_input(backend: CommBackend, ops: TensorOps) -> None:
    """Every rank rejects the same bad calls locally, then the group must still work."""
    rank, world = backend.rank, backend.world_size
    tensor = ops.make([1.0, 2.0], "float32")
    calls: tuple[Callable[[], Any], ...] = (
        lambda: backend.all_reduce(tensor, op="prod"),
        lambda: backend.reduce_scatter(ops.rows(ops.make([1.0] * 4, "float32"), 2), op="avg"),
        lambda: backend.broadcast(tensor, src=world),
        lambda: backend.broadcast(tensor, src=-1),
    )
    for call in calls:
        try:
            with raises(ConfigError):
                call()
        except AssertionError as exc:
            _expect("bad_input", rank, False, f"{exc} (unknown op or rank out of range)")
    if world > 1:
        odd = ops.rows(ops.make([1.0] * (2 * world + 1) * 2, "float32"), 2 * world + 1)
        try:
            with raises(ConfigError):
                backend.reduce_scatter(odd)
        except AssertionError as exc:
            _expect("bad_input", rank, False, f"{exc} (reduce_scatter of {2 * world + 1} rows over {world} ranks)")
        try:
            with raises(ConfigError):
                backend.send(tensor, dst=world)
        except AssertionError as exc:
            _expect("bad_input", rank, False, f"{exc} (send to rank {world})")
    backend.all_reduce(tensor)
    _same("bad_input (group still works)", rank, ops.values(tensor), [float(world), 2.0 * world])


_CHECKS: dict[str, Check] = {
    "protocol": _check_protocol,
    "all_reduce_ops": _check_all_reduce_ops,
    "all_reduce_identical": _check_all_reduce_identical,
    "all_reduce_bf16": _check_all_reduce_bf16,
    "all_reduce_large": _check_all_reduce_large,
    "all_gather": _check_all_gather,
    "reduce_scatter": _check_reduce_scatter,
    "reduce_scatter_large": _check_reduce_scatter_large,
    "broadcast": _check_broadcast,
    "send_recv": _check_send_recv,
    "barrier": _check_barrier,
    "bad_input": _check_bad_input,
}
CHECKS: tuple[str, ...] = tuple(_CHECKS)
"""Every check name, in the order :func:`run_checks` runs them by default."""


def run_checks(backend: CommBackend, ops: TensorOps, names: Sequence[str] | None = None) -> None:
    """Run the named checks (default: all) on this rank; AssertionError names the check and rank."""
    chosen = CHECKS if names is None else tuple(names)
    unknown = [name for name in chosen if name not in _CHECKS]
    if unknown:
        raise ConfigError(f"unknown CommBackend checks {unknown} (known: {', '.join(CHECKS)})")
    for name in chosen:
        _CHECKS[name](backend, ops)


# ------------------------------------------------------------------ the group


def free_init_method() -> str:
    """A ``tcp://127.0.0.1:<port>`` rendezvous on a port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


def _rank_main(
    rank: int,
    world_size: int,
    init_method: str,
    build_backend: BackendFactory,
    build_ops: OpsFactory,
    names: Sequence[str] | None,
    results: Any,
) -> None:
    """One spawned rank: build, check, close; report ("ok"|"fail", rank, message)."""
    try:
        backend = build_backend(rank, world_size, init_method)
        try:
            run_checks(backend, build_ops(), names)
        finally:
            backend.close()
            backend.close()  # closing twice must be harmless
        results.put(("ok", rank, ""))
    except AssertionError as exc:
        results.put(("fail", rank, str(exc)))
    except BaseException:
        results.put(("fail", rank, f"rank {rank} raised:\n{traceback.format_exc()}"))


def _stop(processes: list[Any]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5.0)
        if process.is_alive():
            process.kill()
            process.join(5.0)


def run_group(
    build_backend: BackendFactory,
    build_ops: OpsFactory,
    world_size: int,
    names: Sequence[str] | None = None,
    timeout_s: float = 120.0,
) -> None:
    """Run :func:`run_checks` on ``world_size`` spawned ranks; AssertionError lists every failing rank."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    init_method = free_init_method()
    processes = [
        ctx.Process(
            target=_rank_main,
            args=(rank, world_size, init_method, build_backend, build_ops, names, results),
            name=f"comm-rank-{rank}",
        )
        for rank in range(world_size)
    ]
    for process in processes:
        process.start()
    reports: dict[int, tuple[str, str]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(reports) < world_size:
            try:
                status, rank, message = results.get(timeout=0.2)
                reports[rank] = (status, message)
                continue
            except queue.Empty:
                pass
            dead = [r for r, p in enumerate(processes) if r not in reports and p.exitcode is not None]
            if dead:
                time.sleep(0.5)  # a dying rank may still have a report in flight
                while True:
                    try:
                        status, rank, message = results.get_nowait()
                        reports[rank] = (status, message)
                    except queue.Empty:
                        break
                for r in dead:
                    reports.setdefault(
                        r, ("fail", f"rank {r} died (exit code {processes[r].exitcode}) without a report")
                    )
            if time.monotonic() > deadline:
                for r in range(world_size):
                    reports.setdefault(r, ("fail", f"rank {r} did not finish within {timeout_s:.0f} s"))
    finally:
        _stop(processes)
    failures = [message for _, (status, message) in sorted(reports.items()) if status != "ok"]
    if failures:
        raise AssertionError(f"{len(failures)} of {world_size} ranks failed:\n" + "\n".join(failures))


def _lonely_main(build_backend: BackendFactory, build_ops: OpsFactory, init_method: str, results: Any) -> None:
    """Rank 0 of a group of 2 whose rank 1 never comes: must raise a SageLLMError, not hang."""
    start = time.monotonic()
    try:
        backend = build_backend(0, 2, init_method)
        try:
            backend.all_reduce(build_ops().make([1.0], "float32"))
        finally:
            backend.close()
        results.put(("returned", "", time.monotonic() - start))
    except SageLLMError as exc:
        results.put(("sagellm_error", f"{type(exc).__name__}: {exc}", time.monotonic() - start))
    except BaseException as exc:
        results.put(("other", f"{type(exc).__name__}: {exc}", time.monotonic() - start))


def run_missing_peer(build_backend: BackendFactory, build_ops: OpsFactory, peer_timeout_s: float) -> None:
    """A rank whose peer never joins raises a SageLLMError within about ``peer_timeout_s``."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=_lonely_main, args=(build_backend, build_ops, free_init_method(), results))
    process.start()
    limit = 2.0 * peer_timeout_s + 10.0  # the backend's own timeout, plus a loaded machine
    try:
        status, message, elapsed = results.get(timeout=limit + 30.0)  # + spawning and importing torch
    except queue.Empty:
        raise AssertionError(f"a rank whose peer never joined hung for over {limit + 30.0:.0f} s") from None
    finally:
        _stop([process])
    assert status == "sagellm_error", f"a missing peer must raise a SageLLMError, got {status} {message}"
    assert elapsed <= limit, f"a missing peer was reported after {elapsed:.1f} s (timeout {peer_timeout_s} s)"


# ------------------------------------------------------------------ the suite


class CommBackendConformance:
    """Inherit in a ``Test...`` class; set ``build_backend``/``build_ops`` and ``world_sizes``.

    ``build_backend(rank, world_size, init_method) -> CommBackend`` and
    ``build_ops() -> TensorOps`` must be picklable (staticmethods of a
    module-level class or module-level functions). ``peer_timeout_s``: the
    timeout ``build_backend`` gives the backend; set it to test that a peer
    which never joins is a SageLLMError, not a hang (None skips that test).
    """

    world_sizes: tuple[int, ...] = (2,)
    group_timeout_s: float = 180.0
    peer_timeout_s: float | None = None

    def build_backend(self, rank: int, world_size: int, init_method: str) -> CommBackend:
        raise NotImplementedError

    def build_ops(self) -> TensorOps:
        raise NotImplementedError

    def _run(self, names: Sequence[str]) -> None:
        for world_size in self.world_sizes:
            run_group(self.build_backend, self.build_ops, world_size, names, self.group_timeout_s)

    def test_protocol_and_all_reduce(self) -> None:
        self._run(("protocol", "all_reduce_ops", "all_reduce_identical", "all_reduce_bf16", "all_reduce_large"))

    def test_all_gather_and_reduce_scatter(self) -> None:
        self._run(("all_gather", "reduce_scatter", "reduce_scatter_large"))

    def test_broadcast_send_recv_barrier(self) -> None:
        self._run(("broadcast", "send_recv", "barrier"))

    def test_bad_input_is_a_config_error(self) -> None:
        self._run(("bad_input",))

    def test_missing_peer_is_an_error_not_a_hang(self) -> None:
        if self.peer_timeout_s is None:
            raise unittest.SkipTest("set peer_timeout_s (the timeout build_backend gives) to run this test")
        run_missing_peer(self.build_backend, self.build_ops, self.peer_timeout_s)
