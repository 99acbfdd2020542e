"""API keys: with ``--api-key`` set, every route but the health and version probes wants it.

Clients send it the way their SDK does: ``Authorization: Bearer KEY``
(OpenAI) or ``x-api-key: KEY`` (Anthropic). The comparison takes the same
time whatever the key's first wrong byte, so timing does not leak it.
``/metrics`` stays open for scrapers unless ``protect_metrics``.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from sagellm.core.errors import SageLLMError
from sagellm.engines.server.state import get_state

OPEN_PATHS = frozenset({"/health", "/version"})
METRICS_PATH = "/metrics"


class AuthenticationError(SageLLMError):
    """No API key, or the wrong one (OpenAI answers 401 with code invalid_api_key)."""

    http_status = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


async def require_api_key(request: Request) -> None:
    """FastAPI dependency of the whole app: a 401 unless the request may pass."""
    options = get_state(request).options
    path = request.url.path
    if options.api_key is None or path in OPEN_PATHS or (path == METRICS_PATH and not options.protect_metrics):
        return
    given = presented_key(request)
    if given is None:
        raise AuthenticationError(
            "You didn't provide an API key: send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'."
        )
    if not hmac.compare_digest(given.encode(), options.api_key.encode()):
        raise AuthenticationError("Incorrect API key provided.")


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key")
