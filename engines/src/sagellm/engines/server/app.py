"""create_app: the FastAPI application around one served engine (colocated, tensor-parallel or disaggregated).

The engine is built by the caller (``sagellm serve``, or a test around an
already-loaded model); the app only starts its engine thread at startup and
stops it at shutdown, through the lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from sagellm.engines.server import routes_admin, routes_chat, routes_completions, routes_messages, routes_tokenize
from sagellm.engines.server.auth import require_api_key
from sagellm.engines.server.error_handlers import install_error_handlers
from sagellm.engines.server.options import ServerOptions
from sagellm.engines.server.served_engine import ServedEngine
from sagellm.engines.server.state import ServerState
from sagellm.engines.version import __version__


def create_app(engine: ServedEngine, options: ServerOptions | None = None) -> FastAPI:
    state = ServerState.build(engine, options or ServerOptions())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    # strict_content_type=False: a JSON body without a Content-Type header is still read as JSON.
    app = FastAPI(
        title="sageLLM",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        strict_content_type=False,
        dependencies=[Depends(require_api_key)],
    )
    app.state.sagellm = state
    for module in (routes_completions, routes_chat, routes_messages, routes_admin, routes_tokenize):
        app.include_router(module.router)
    if state.options.allowed_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(state.options.allowed_origins), allow_methods=["*"], allow_headers=["*"]
        )
    install_error_handlers(app)
    return app
