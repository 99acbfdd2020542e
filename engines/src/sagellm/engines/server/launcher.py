"""Run an app under uvicorn with a bounded, clean shutdown on SIGTERM / Ctrl-C.

::

    SIGTERM ─► stop accepting (uvicorn) + new requests on open connections get 503
           ─► in-flight requests run on for up to ``shutdown_grace_s``
           ─► then each is aborted: streams end with finish_reason "abort", KV freed
           ─► lifespan shutdown stops the engine thread; the process exits 0

uvicorn's own ``timeout_graceful_shutdown`` is set a little past the grace
period, as a backstop that cancels any connection still open.
"""

from __future__ import annotations

import math
import signal
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI

from sagellm.engines.server.state import ServerState

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
    """Blocks until shut down. Returns normally after a graceful SIGTERM."""
    server = build_server(app, host, port, log_level)
    # uvicorn re-raises the signal it handled once it is done; make that a clean exit, not a kill.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    server.run()


def _exit_cleanly(sig: int, frame: FrameType | None) -> None:
    sys.exit(0)
