"""The server's own error types, on top of :mod:`sagellm.core.errors`.

Every failure a client can cause is raised as a :class:`SageLLMError`, so the
exception handlers can turn it into a 4xx body from its ``http_status`` and
``error_type`` alone. ``param`` and ``code`` fill the matching fields of an
OpenAI error body, which clients (and the ``openai`` SDK) surface to users.
"""

from __future__ import annotations

from sagellm.core.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    SageLLMError,
    ServerOverloadedError,
)


class BadParameterError(InvalidRequestError):
    """A request field the server cannot honour as given; names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ModelNotFoundError(InvalidRequestError):
    """The request names a model this server does not serve."""

    http_status = 404
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist.")
        self.param = "model"


class ServiceUnavailableError(SageLLMError):
    """The server is shutting down (or its engine loop has stopped): try another replica."""

    http_status = 503
    error_type = "service_unavailable"


class EngineFailureError(SageLLMError):
    """``step()`` raised: the requests in that batch are failed, the server keeps serving."""

    http_status = 500
    error_type = "internal_error"


class ClientDisconnectedError(SageLLMError):
    """The client went away before its answer was ready; nothing is sent back."""

    http_status = 499
    error_type = "client_disconnected"


_CODES: dict[type[SageLLMError], str] = {
    ContextLengthExceededError: "context_length_exceeded",
    ServerOverloadedError: "rate_limit_exceeded",
}


def error_param(exc: BaseException) -> str | None:
    param = getattr(exc, "param", None)
    return param if isinstance(param, str) else None


def error_code(exc: BaseException) -> str | None:
    """OpenAI's machine-readable ``code``: set on the class, or looked up for core errors."""
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    return next((c for cls, c in _CODES.items() if isinstance(exc, cls)), None)
