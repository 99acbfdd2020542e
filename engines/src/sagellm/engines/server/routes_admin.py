"""``/health``, ``/metrics`` and ``/v1/models``: what load balancers, scrapers and SDKs poll."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sagellm.engines.server.prometheus_exposition import CONTENT_TYPE
from sagellm.engines.server.protocol_openai import ModelCard, ModelList
from sagellm.engines.server.state import ServerState, get_state

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 while the engine loop runs and the server admits requests; 503 while draining or broken."""
    state = get_state(request)
    if state.engine.is_healthy:
        return JSONResponse({"status": "ok"})
    status = "draining" if state.engine.draining else "unavailable"
    return JSONResponse({"status": status}, status_code=503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(get_state(request).metrics.render(), media_type=CONTENT_TYPE)


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    state = get_state(request)
    return JSONResponse(ModelList(data=[_card(state)]).model_dump())


@router.get("/v1/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> JSONResponse:
    state = get_state(request)
    card = _card(state)
    card.id = state.resolve_model(model)
    return JSONResponse(card.model_dump())


def _card(state: ServerState) -> ModelCard:
    return ModelCard(id=state.served_model_name, created=state.created, max_model_len=state.max_model_len)
