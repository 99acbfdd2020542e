"""AsyncEngine: one thread owns the LLMEngine; asyncio handlers reach it through commands.

::

    event loop (handlers)                        engine thread
    ─────────────────────                        ─────────────
    await submit() ── add command ──► queue ──► run queued commands
    handle.abort() ── abort command ─┘          step() while requests remain
    handle.queue ◄── call_soon_threadsafe ───── route each StepOutput to its handle
                                                idle: block on an Event (no spinning; check_health each second)

``LLMEngine`` is not thread-safe, so nothing but the engine thread touches it
(not even to read a gauge). A command waits at most one step to run, which
keeps the event loop free: a step takes milliseconds to seconds, and a lock
held across it would stall every connection. Continuous batching comes for
free: every request submitted joins the engine's one running batch.

Which thread owns it matters on CPU. torch's OpenMP runtime (libgomp) gives
every thread that runs a parallel region its own team of workers; once two
teams exist (the one that loaded the model, the one that steps it) there are
more OpenMP threads than cores on a small machine, and libgomp stops spinning
between regions: each of the hundreds of regions in a decode step then pays a
futex wake-up, which halved batch-1 speed (8 ms TPOT offline, 17 ms served on
2 cores). So ``sagellm serve`` runs the engine on the thread that built it
(``host()``, the main thread) and HTTP on another; ``start()`` alone spawns an
engine thread, for callers (tests) that serve an engine beside other work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from sagellm.core.errors import EngineDeadError, ServerOverloadedError
from sagellm.core.types import SamplingParams, StepOutput
from sagellm.engines.engine.llm_engine import LLMEngine
from sagellm.engines.engine.reasoning_options import ReasoningOptions
from sagellm.engines.server.errors import EngineFailureError, ServiceUnavailableError
from sagellm.engines.server.request_handle import Item, RequestHandle
from sagellm.engines.server.served_engine import ServedEngine
from sagellm.engines.server.server_metrics import ServerMetrics

logger = logging.getLogger(__name__)

HEALTH_CHECK_S = 1.0  # an idle engine loop checks this often that the engine's other processes live
T = TypeVar("T")
_Command = tuple[Callable[[], Any], "concurrent.futures.Future[Any] | None"]


@dataclass(slots=True)
class _Route:
    """Where one engine request's outputs go, and its timings for the latency histograms."""

    handle: RequestHandle
    index: int
    arrival: float
    num_prompt_tokens: int
    num_output_tokens: int = 0
    first_token: float | None = None


class AsyncEngine:
    def __init__(self, engine: ServedEngine, metrics: ServerMetrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self.draining = False  # set at shutdown: new submissions get 503
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._routes: dict[str, _Route] = {}  # engine thread only
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self._broken = False
        self.fatal_error: EngineDeadError | None = None  # the engine can never step again (a rank or worker died)
        self.on_fatal: Callable[[], None] | None = None  # the server's way to shut itself down then
        self._hosted = False  # host() runs the loop on its caller's thread
        self._may_run = threading.Event()  # host(): the event loop is up (or will never be)
        self._running = False
        self._finished = threading.Event()

    # ------------------------------------------------------------ event loop side
    def start(self) -> None:
        """Call from the event loop that will consume the outputs; the engine runs from now on."""
        self._loop = asyncio.get_running_loop()
        self._running = True  # healthy from now: commands queue until the loop takes them
        if self._hosted:
            self._may_run.set()
            return
        self._thread = threading.Thread(target=self._run, name="sagellm-engine", daemon=True)
        self._thread.start()

    def will_host(self) -> None:
        """Promise that ``host()`` will run the loop: ``start()`` then spawns no thread. Call before serving."""
        self._hosted = True
        self._thread = threading.current_thread()

    def host(self) -> None:
        """Run the engine loop on this thread (the one that loaded the model) until ``stop()`` or ``release()``."""
        self._may_run.wait()
        if not self._stopped:
            self._run()

    def release(self) -> None:
        """From any thread, when serving has ended (or never began): make ``host()`` return."""
        if self._loop is None:
            self._stopped = True  # serving never began: nothing to drain
        else:
            self._post(self._mark_stopped)
        self._may_run.set()

    @property
    def is_healthy(self) -> bool:
        return self._running and not self._broken and not self.draining

    async def submit(
        self,
        prompts: Sequence[list[int]],
        params: Sequence[SamplingParams],
        request_ids: Sequence[str],
        reasoning: ReasoningOptions | None = None,
    ) -> RequestHandle:
        """Queue the requests of one API call together; raises (429, 400, 503) before anything streams.

        ``reasoning`` (a ``cot`` request, every choice alike) needs an LLMEngine with an accelerator.
        """
        if self.draining:
            raise ServiceUnavailableError("the server is shutting down")
        handle = RequestHandle(request_ids, [len(p) for p in prompts], self._abort_later)
        try:
            await self._call(partial(self._add, handle, list(prompts), list(params), reasoning))
        except asyncio.CancelledError:
            handle.abort()  # queued behind the add, so it frees whatever the add created
            raise
        return handle

    def abort_all(self) -> None:
        """End every in-flight request now, each with finish_reason "abort" (the shutdown grace ran out)."""
        self._post(self._abort_all_now)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Abort what is left and end the engine thread."""
        self.draining = True
        self._post(self._abort_all_now)
        self._post(self._mark_stopped)
        if self._thread is not None:
            await asyncio.to_thread(self._finished.wait, timeout_s)

    def _abort_later(self, request_ids: list[str]) -> None:
        self._post(partial(self._abort, request_ids))

    def _call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._post(fn, future)
        return asyncio.wrap_future(future)

    def _post(self, fn: Callable[[], Any], future: concurrent.futures.Future[Any] | None = None) -> None:
        if self._stopped or self._broken or self._thread is None:
            if future is not None:
                future.set_exception(ServiceUnavailableError("the engine loop is not running"))
            return
        self._commands.put((fn, future))
        self._wake.set()
        if self._stopped or self._broken:  # the thread ended between the check and the put
            self._fail_pending_commands()

    # --------------------------------------------------------------- engine thread
    def _run(self) -> None:
        try:
            while not self._stopped:
                self._wake.clear()  # before draining: a command posted after this sets it again
                self._run_commands()
                if self._stopped or self._broken:
                    break
                if self.engine.has_unfinished():
                    self._step()
                self.metrics.refresh_engine_gauges(self.engine.load())
                if not self.engine.has_unfinished() and not self._wake.wait(HEALTH_CHECK_S):
                    self._check_health()
        finally:
            self._running = False
            self._fail_pending_commands()
            self._finished.set()

    def _run_commands(self) -> None:
        while not self._stopped:  # commands after the stop are failed by _fail_pending_commands
            try:
                fn, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if future is not None and not future.set_running_or_notify_cancel():
                continue  # its caller was cancelled before it ran
            try:
                result = fn()
            except Exception as exc:
                if future is None:
                    logger.exception("engine command failed")
                else:
                    future.set_exception(exc)
            else:
                if future is not None:
                    future.set_result(result)

    def _fail_pending_commands(self) -> None:
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if future is not None and future.set_running_or_notify_cancel():
                future.set_exception(ServiceUnavailableError("the engine loop has stopped"))

    def _add(
        self,
        handle: RequestHandle,
        prompts: list[list[int]],
        params: list[SamplingParams],
        reasoning: ReasoningOptions | None = None,
    ) -> None:
        engine = self.engine
        if len(prompts) > 1 and engine.num_waiting + len(prompts) > engine.max_waiting:
            # All of a request's choices or none: a partial add would be rolled back anyway.
            raise ServerOverloadedError(f"the waiting queue is full ({engine.max_waiting} requests); retry later")
        now = time.monotonic()
        added: list[str] = []
        try:
            for index, (prompt, sampling, request_id) in enumerate(zip(prompts, params, handle.request_ids)):
                if reasoning is None:
                    engine.add_request(prompt, sampling, request_id)
                else:
                    assert isinstance(engine, LLMEngine)  # the route checked (cot_request.reasoning_options)
                    engine.add_request(prompt, sampling, request_id, reasoning=reasoning)
                added.append(request_id)
                self._routes[request_id] = _Route(handle, index, now, len(prompt))
        except BaseException:
            for request_id in added:
                engine.abort_request(request_id)
                self._routes.pop(request_id, None)
            raise
        self.metrics.prompt_tokens.inc(sum(len(p) for p in prompts))

    def _abort(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            self._routes.pop(request_id, None)
            self.engine.abort_request(request_id)

    def _abort_all_now(self) -> None:
        deliveries: list[tuple[RequestHandle, Item]] = []
        for request_id, route in self._routes.items():
            self.engine.abort_request(request_id)
            final = StepOutput(
                request_id=request_id,
                new_token_ids=(),
                finish_reason="abort",
                num_prompt_tokens=route.num_prompt_tokens,
                num_output_tokens=route.num_output_tokens,
            )
            deliveries.append((route.handle, (route.index, final)))
        self._routes.clear()
        self._deliver(deliveries)

    def _mark_stopped(self) -> None:
        self._stopped = True

    def _step(self) -> None:
        try:
            outputs = self.engine.step()
        except EngineDeadError as exc:
            self._die(exc)
            return
        except Exception as exc:  # fail this batch's requests, keep serving the next ones
            logger.exception("engine step failed")
            self._fail_all(EngineFailureError(f"the engine failed while generating: {exc}"))
            return
        now = time.monotonic()
        deliveries: list[tuple[RequestHandle, Item]] = []
        for output in outputs:
            route = self._routes.get(output.request_id)
            if route is None:
                continue
            route.first_token = route.first_token or now
            route.num_output_tokens = output.num_output_tokens
            if output.finished:
                del self._routes[output.request_id]
                self.metrics.record_finish(route.arrival, route.first_token, output.num_output_tokens)
            deliveries.append((route.handle, (route.index, output)))
        self.metrics.record_step(len(outputs))
        self._deliver(deliveries)

    def _check_health(self) -> None:
        """While idle: a dead worker or rank is reported now, not when the next request arrives."""
        try:
            self.engine.check_health()
        except EngineDeadError as exc:
            self._die(exc)

    def _die(self, exc: EngineDeadError) -> None:
        """No step can succeed any more: fail everything and have the server shut down."""
        logger.error("engine stopped: %s", exc)
        self.fatal_error = exc
        self._fail_all(EngineFailureError(f"the engine stopped: {exc}"))
        self._broken = True
        self._wake.set()  # the loop must not sleep: it ends, so host() returns and the process can exit
        if self.on_fatal is not None:
            self.on_fatal()

    def _fail_all(self, error: BaseException) -> None:
        handles = {id(route.handle): route.handle for route in self._routes.values()}
        for request_id in list(self._routes):
            try:
                self.engine.abort_request(request_id)
            except Exception:
                logger.exception("abort after a failed step failed too")
        self._routes.clear()
        self._deliver([(handle, error) for handle in handles.values()])
        if self.engine.has_unfinished():  # its state is no longer trustworthy: stop rather than spin
            logger.error("engine still has requests after failing all of them; the server stops serving")
            self._broken = True

    def _deliver(self, deliveries: list[tuple[RequestHandle, Item]]) -> None:
        if not deliveries or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is listening any more
            self._loop.call_soon_threadsafe(_put_all, deliveries)


def _put_all(deliveries: list[tuple[RequestHandle, Item]]) -> None:
    for handle, item in deliveries:
        handle.queue.put_nowait(item)
