"""Run an app under uvicorn with a bounded, clean shutdown on SIGTERM / Ctrl-C.

::

    SIGTERM ─► stop accepting (uvicorn) + new requests on open connections get 503
           ─► in-flight requests run on for up to ``shutdown_grace_s``
           ─► then each is aborted: streams end with finish_reason "abort", KV freed
           ─► lifespan shutdown stops the engine thread; the process exits 0

    a tensor-parallel rank dies ─► its step fails every request ─► the same shutdown ─► exit 1 with the reason

uvicorn's own ``timeout_graceful_shutdown`` is set a little past the grace
period, as a backstop that cancels any connection still open.
"""

from __future__ import annotations

import math
import signal
import threading
from types import FrameType

import uvicorn
from fastapi import FastAPI

from sagellm.core.errors import ConfigError
from sagellm.engines.server.state import ServerState
from sagellm.engines.server.worker_priority import lower_native_worker_priority, restore_priority

BACKSTOP_S = 5.0


class GracefulServer(uvicorn.Server):
    """A uvicorn.Server that tells the app when shutdown begins (uvicorn only says so after draining)."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.app_state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            self.app_state.begin_shutdown()
        super().handle_exit(sig, frame)


def build_server(app: FastAPI, host: str, port: int, log_level: str = "info") -> GracefulServer:
    state: ServerState = app.state.sagellm
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=math.ceil(state.options.shutdown_grace_s + BACKSTOP_S),
    )
    return GracefulServer(config, state)


def serve(app: FastAPI, host: str, port: int, log_level: str = "info") -> None:
    """Blocks until shut down; returns normally after a graceful SIGTERM or Ctrl-C.

    The engine steps on this thread, the one that loaded the model, and HTTP
    runs on another (see async_engine: a second torch thread halves CPU decode
    speed). Signals reach only the main thread, so it forwards them to uvicorn.
    """
    server = build_server(app, host, port, log_level)
    engine = server.app_state.engine
    engine.will_host()
    lowered = lower_native_worker_priority()  # the engine is warm: its OpenMP workers exist (worker_priority.py)

    def run_http() -> None:
        try:
            server.run()
        finally:
            engine.release()

    engine.on_fatal = lambda: server.handle_exit(signal.SIGTERM, None)
    http = threading.Thread(target=run_http, name="sagellm-http", daemon=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, server.handle_exit)
    http.start()
    try:
        engine.host()
        http.join()
    finally:
        restore_priority(lowered)
    if not server.started:
        raise ConfigError(f"the server could not start on {host}:{port} (see the log above)")
    if engine.fatal_error is not None:
        raise engine.fatal_error
