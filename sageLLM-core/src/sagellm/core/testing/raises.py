"""A pytest-free ``raises`` context manager for the suites."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def raises(*exc_types: type[BaseException]) -> Iterator[None]:
    try:
        yield
    except exc_types:
        return
    names = ", ".join(t.__name__ for t in exc_types)
    raise AssertionError(f"expected {names} to be raised")
