"""The package installs into the shared ``sagellm`` namespace without owning it."""

from __future__ import annotations

import re

import sagellm
import sagellm.cot_acceleration


def test_version_is_exported() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", sagellm.cot_acceleration.__version__)


def test_sagellm_stays_a_namespace_package() -> None:
    # A regular sagellm/__init__.py would hide every other sagellm distribution.
    assert getattr(sagellm, "__file__", None) is None
    assert len(list(sagellm.__path__)) >= 1
