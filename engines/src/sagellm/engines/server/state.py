"""ServerState: what every route needs, hung on ``app.state`` and fetched per request.

One object instead of module globals, so several apps (tests start one per
module) can live in one process without sharing an engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from fastapi import Request

from sagellm.engines.server.async_engine import AsyncEngine
from sagellm.engines.server.errors import ModelNotFoundError
from sagellm.engines.server.options import ServerOptions
from sagellm.engines.server.served_engine import ServedEngine
from sagellm.engines.server.server_metrics import ServerMetrics
from sagellm.engines.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


@dataclass
class ServerState:
    engine: AsyncEngine
    tokenizer: Tokenizer
    served_model_name: str
    max_model_len: int
    options: ServerOptions
    metrics: ServerMetrics
    created: int = field(default_factory=lambda: int(time.time()))
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def build(cls, engine: ServedEngine, options: ServerOptions) -> ServerState:
        served_model_name = options.served_model_name or engine.model_name
        metrics = ServerMetrics(engine.metrics, served_model_name)
        return cls(
            engine=AsyncEngine(engine, metrics),
            tokenizer=engine.tokenizer,
            served_model_name=served_model_name,
            max_model_len=engine.max_model_len,
            options=options,
            metrics=metrics,
        )

    @property
    def model_names(self) -> set[str]:
        """Requests may name the served name or the model's own name."""
        return {self.served_model_name, self.engine.engine.model_name}

    def resolve_model(self, requested: str | None) -> str:
        """The name to echo back in responses; unknown names are a 404."""
        if requested is None:
            return self.served_model_name
        if requested not in self.model_names:
            raise ModelNotFoundError(requested)
        return requested

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()

    def begin_shutdown(self) -> None:
        """From a signal handler (any thread): refuse new requests, abort the rest after the grace period."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        if self.engine.draining:
            return
        grace = self.options.shutdown_grace_s
        logger.info("shutting down: in-flight requests have %.0f s to finish", grace)
        self.engine.draining = True
        asyncio.get_running_loop().call_later(grace, self.engine.abort_all)


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.sagellm
    return state
