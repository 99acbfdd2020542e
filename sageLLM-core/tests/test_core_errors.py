"""Error hierarchy: one base to catch, builtin bases for generic handlers, HTTP mapping."""

from __future__ import annotations

import inspect

import pytest

from sagellm.core import errors
from sagellm.core.errors import (
    ConfigError,
    ContextLengthExceededError,
    EngineDeadError,
    InvalidRequestError,
    KVBlockError,
    ModelLoadError,
    NotSupportedError,
    OutOfBlocksError,
    PlanError,
    RegistryError,
    RequestAbortedError,
    SageLLMError,
    ServerOverloadedError,
)

EXPECTED: dict[type[SageLLMError], tuple[int, str, tuple[type[BaseException], ...]]] = {
    SageLLMError: (500, "internal_error", (Exception,)),
    ConfigError: (400, "invalid_request_error", (ValueError,)),
    InvalidRequestError: (400, "invalid_request_error", (ValueError,)),
    ContextLengthExceededError: (400, "invalid_request_error", (InvalidRequestError, ValueError)),
    RegistryError: (500, "internal_error", (LookupError,)),
    ModelLoadError: (500, "internal_error", ()),
    NotSupportedError: (501, "internal_error", (NotImplementedError,)),
    OutOfBlocksError: (503, "internal_error", (MemoryError,)),
    RequestAbortedError: (499, "internal_error", ()),
    ServerOverloadedError: (429, "rate_limit_error", ()),
    KVBlockError: (500, "internal_error", (ValueError,)),
    PlanError: (500, "internal_error", ()),
    EngineDeadError: (500, "internal_error", ()),
}


def test_every_error_class_is_covered() -> None:
    defined = {obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, SageLLMError)}
    assert defined == set(EXPECTED)


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_hierarchy_and_http_status(cls: type[SageLLMError]) -> None:
    status, error_type, bases = EXPECTED[cls]
    assert issubclass(cls, SageLLMError)
    for base in bases:
        assert issubclass(cls, base)
    assert cls.http_status == status
    assert cls.error_type == error_type
    err = cls("something went wrong")
    assert str(err) == "something went wrong" and err.http_status == status


def test_catch_by_base_and_builtin() -> None:
    with pytest.raises(SageLLMError):
        raise OutOfBlocksError("pool exhausted")
    with pytest.raises(ValueError):
        raise ConfigError("bad")
    with pytest.raises(NotImplementedError):
        raise NotSupportedError("later")


def test_status_codes_are_http() -> None:
    for cls in EXPECTED:
        assert 400 <= cls.http_status < 600
