"""The package installs into the shared ``sagellm`` namespace without owning it."""

from __future__ import annotations

import re

import sagellm
import sagellm.domestic_interconnect


def test_version_is_exported() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", sagellm.domestic_interconnect.__version__)


def test_sagellm_stays_a_namespace_package() -> None:
    # A regular sagellm/__init__.py would hide every other sagellm distribution.
    assert getattr(sagellm, "__file__", None) is None
    assert len(list(sagellm.__path__)) >= 1
