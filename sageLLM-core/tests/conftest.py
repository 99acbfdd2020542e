"""Shared fixtures: every test sees a clean ``SAGELLM__*`` environment."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_sagellm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's exported ``SAGELLM__...`` must not leak into config tests."""
    for name in list(os.environ):
        if name.upper().startswith("SAGELLM__"):
            monkeypatch.delenv(name)
