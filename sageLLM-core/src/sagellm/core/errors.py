"""One exception hierarchy for every sageLLM package.

Callers catch :class:`SageLLMError` to handle anything sageLLM raises on
purpose; the subclasses let servers map failures to HTTP status codes and the
CLI to exit codes without string matching.
"""

from __future__ import annotations


class SageLLMError(Exception):
    """Base class of every error sageLLM raises deliberately."""

    #: HTTP status a server should answer with when this reaches a client.
    http_status: int = 500
    #: OpenAI-style ``error.type`` string.
    error_type: str = "internal_error"


class ConfigError(SageLLMError, ValueError):
    """A configuration value is missing, malformed or out of range."""

    http_status = 400
    error_type = "invalid_request_error"


class InvalidRequestError(SageLLMError, ValueError):
    """A request (prompt, sampling parameters) cannot be served as given."""

    http_status = 400
    error_type = "invalid_request_error"


class ContextLengthExceededError(InvalidRequestError):
    """The prompt plus the requested tokens do not fit the model's context."""


class RegistryError(SageLLMError, LookupError):
    """No implementation is registered under the requested name."""


class ModelLoadError(SageLLMError):
    """A model file is missing, unreadable or of an unsupported kind."""


class NotSupportedError(SageLLMError, NotImplementedError):
    """The implementation exists but does not offer this operation (yet)."""

    http_status = 501


class OutOfBlocksError(SageLLMError, MemoryError):
    """The KV pool has no free block left for an allocation."""

    http_status = 503


class RequestAbortedError(SageLLMError):
    """The request was aborted before it finished (client gone, shutdown)."""

    http_status = 499


class EngineDeadError(SageLLMError):
    """A part of the engine outside this process is gone (a tensor-parallel rank, a disaggregated worker):
    nothing can succeed any more, so a server fails what is in flight and exits rather than serve errors."""


class ServerOverloadedError(SageLLMError):
    """The waiting queue is full; the client should retry later."""

    http_status = 429
    error_type = "rate_limit_error"


class KVBlockError(SageLLMError, ValueError):
    """A block id is unknown, already free, or used against its state (double free)."""


class PlanError(SageLLMError):
    """An execution plan the engine cannot apply: it asked for more KV than the builder's view allowed.

    A builder that prices chunks with the engine's KV view never produces
    one; this is a bug in the builder or the view, reported instead of
    silently re-deciding the step.
    """
