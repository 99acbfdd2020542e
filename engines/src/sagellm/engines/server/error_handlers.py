"""Every failure becomes a JSON error body in the API's own shape; never a traceback.

``/v1/messages`` answers in Anthropic's shape (``{"type": "error", "error":
{"type", "message"}}``), everything else in OpenAI's (``{"error":
{"message", "type", "param", "code"}}``). FastAPI's 422 for a body that
fails validation becomes a 400, as OpenAI answers: clients and SDKs treat
422 as an unknown status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sagellm.core.errors import SageLLMError, ServerOverloadedError
from sagellm.engines.server.errors import ClientDisconnectedError, error_code, error_param
from sagellm.engines.server.protocol_anthropic import AnthropicError, AnthropicErrorResponse
from sagellm.engines.server.protocol_openai import ErrorInfo, ErrorResponse
from sagellm.engines.server.sse import data_frame, event_frame
from sagellm.engines.server.state import get_state

logger = logging.getLogger(__name__)

ANTHROPIC_PATH = "/v1/messages"

_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}

# Anthropic's error types by status; its SDK maps them back to exception classes.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(SageLLMError, _sagellm_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)


def openai_error(message: str, error_type: str, param: str | None, code: str | None) -> ErrorResponse:
    return ErrorResponse(error=ErrorInfo(message=message, type=error_type, param=param, code=code))


def anthropic_error(status: int, message: str) -> AnthropicErrorResponse:
    return AnthropicErrorResponse(error=AnthropicError(type=anthropic_error_type(status), message=message))


def anthropic_error_type(status: int) -> str:
    return _ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def error_response(
    request: Request,
    status: int,
    message: str,
    error_type: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: Any
    if request.url.path.startswith(ANTHROPIC_PATH):
        body = anthropic_error(status, message)
    else:
        body = openai_error(message, error_type, param, code)
    _count(request, status)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {}
    path = _field_path(first.get("loc", ()))
    param: str | None = path.split(".")[0] if path else None
    if first.get("type") == "json_invalid":
        message, param = f"Malformed JSON body: {first.get('ctx', {}).get('error', first.get('msg'))}", None
    elif first.get("type") == "extra_forbidden":
        message = f"Unsupported parameter: '{path}' is not implemented by this server (it would be ignored otherwise)"
    elif not path:
        message = "The request body must be a JSON object (sent with Content-Type: application/json)"
    else:
        # A union (e.g. prompt: str | list[int] | ...) reports one error per alternative: show them together.
        same_field = [e for e in errors if _field_path(e.get("loc", ())) == path]
        reasons = "; ".join(dict.fromkeys(str(e.get("msg")) for e in same_field[:4]))
        message = f"Invalid value for '{path}': {reasons}"
    return error_response(request, 400, message, "invalid_request_error", param)


def _field_path(loc: Sequence[Any]) -> str:
    """``("body", "prompt", "list[int]", 0)`` -> ``"prompt.0"``: pydantic's union-member tags dropped."""
    parts = [
        str(p)
        for p in loc[1:]
        if isinstance(p, int) or (isinstance(p, str) and p.isidentifier() and p not in _TYPE_TAGS)
    ]
    return ".".join(parts)


async def _sagellm_error(request: Request, exc: SageLLMError) -> Response:
    if isinstance(exc, ClientDisconnectedError):
        get_state(request).metrics.disconnects.inc()
        return Response(status_code=exc.http_status)  # nobody is listening
    headers = None
    if isinstance(exc, ServerOverloadedError):
        headers = {"Retry-After": str(get_state(request).options.retry_after_s)}
    if exc.http_status >= 500:
        logger.error("request failed: %s", exc)
    return error_response(
        request, exc.http_status, str(exc), exc.error_type, error_param(exc), error_code(exc), headers
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    error_type = "invalid_request_error" if exc.status_code < 500 else "internal_error"
    message = "Not found" if exc.status_code == 404 else str(exc.detail)
    return error_response(request, exc.status_code, message, error_type, headers=getattr(exc, "headers", None))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error serving %s", request.url.path)
    return error_response(request, 500, "internal server error", "internal_error")


def _count(request: Request, status: int) -> None:
    state = getattr(request.app.state, "sagellm", None)
    if state is None:
        return
    state.metrics.errors.inc()
    if status == 429:
        state.metrics.rejected.inc()


def stream_error(exc: Exception) -> tuple[int, str, str]:
    """(status, message, type) of an error raised after a stream's headers went out."""
    if isinstance(exc, SageLLMError):
        return exc.http_status, str(exc), exc.error_type
    logger.error("unexpected error while streaming", exc_info=exc)
    return 500, "internal server error", "internal_error"


def openai_error_frame(exc: Exception) -> str:
    """Mid-stream errors are sent in-band, as vLLM does: a data line holding an error body."""
    status, message, error_type = stream_error(exc)
    return data_frame(openai_error(message, error_type, error_param(exc), error_code(exc)))


def anthropic_error_frame(exc: Exception) -> str:
    status, message, _ = stream_error(exc)
    return event_frame("error", anthropic_error(status, message))
