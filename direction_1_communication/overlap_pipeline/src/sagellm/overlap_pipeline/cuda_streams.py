"""Runs communication on a CUDA side stream, ordered against the caller's stream by events.

A worker thread alone overlaps only the host side: kernels it enqueues go
to the current stream, which is the default stream the compute kernels
also use, so the GPU would still run them one after the other. A side
stream lets the copies or NCCL kernels run beside the compute kernels;
two events keep the order a serial program has:

    caller stream:  ..compute(i).. [ready] ......compute(i+1)...... [wait done] use(result)
    side stream:                    wait ready -> comm(i) -> [done]

The comm callable sees the tensors the caller produced before ``start``
(``ready``) and the caller sees the comm's output only after ``done``.
Tensors allocated on one stream and freed on the other need
``tensor.record_stream`` by the caller (the caching allocator's rule).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from sagellm.core.errors import ConfigError, NotSupportedError

CUDA_STREAM_MODES = ("auto", "on", "off")


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device (torch is imported only here)."""
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class CudaSideStream:
    """One side stream per manager; comm callables run in it on the worker thread."""

    def __init__(self, device: Any = None) -> None:
        self._torch = importlib.import_module("torch")
        self._stream = self._torch.cuda.Stream(device=device)

    @classmethod
    def for_mode(cls, mode: str | bool) -> CudaSideStream | None:
        """The side stream ``mode`` asks for: "auto" uses CUDA when present, "on" requires it, "off" never."""
        if isinstance(mode, bool):
            mode = "on" if mode else "off"
        if mode not in CUDA_STREAM_MODES:
            raise ConfigError(f"overlap_pipeline cuda_streams must be one of {CUDA_STREAM_MODES}, got {mode!r}")
        if mode == "off":
            return None
        if cuda_available():
            return cls()
        if mode == "on":
            raise NotSupportedError("overlap_pipeline cuda_streams='on' needs torch with a CUDA device; none found")
        return None

    def wrap(self, comm: Callable[[], Any]) -> tuple[Callable[[], Any], Callable[[], None]]:
        """``(run, join)``: ``run`` executes ``comm`` in the side stream; ``join`` orders the caller after it.

        Call ``wrap`` on the caller's thread (it records the ``ready`` event
        on the caller's current stream), ``run`` on the worker, ``join``
        on the caller's thread before it uses the result.
        """
        torch = self._torch
        ready = torch.cuda.Event()
        ready.record()
        finished = torch.cuda.Event()
        stream = self._stream

        def run() -> Any:
            with torch.cuda.stream(stream):
                stream.wait_event(ready)
                result = comm()
                finished.record(stream)
            return result

        def join() -> None:
            torch.cuda.current_stream().wait_event(finished)

        return run, join
