"""The progress bar both backends show while a run is in flight (stderr, so stdout stays clean)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(label: str, total: int, enabled: bool) -> Any:
    """A bar when ``enabled`` and stderr is a terminal (tqdm's ``disable=None``), so CI logs stay readable."""
    return tqdm(
        total=total,
        desc=label,
        unit="req",
        file=sys.stderr,
        disable=None if enabled else True,
        leave=False,
        dynamic_ncols=True,
    )
