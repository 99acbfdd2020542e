"""A progress bar for long replays: tqdm when installed, a few plain lines otherwise."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO


class Progress:
    """Counts work units; shows them with tqdm if it can be imported, else prints every 10 %.

    Disabled (``enabled=False``) it prints nothing: tests and ``--no-progress``.
    """

    def __init__(self, total: int, description: str, enabled: bool = True, stream: TextIO | None = None) -> None:
        self._total, self._done, self._description = max(1, total), 0, description
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._reported = 0  # tenths of the total already printed
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, desc=description, file=self._stream, unit="req", mininterval=0.5)

    def update(self, count: int = 1) -> None:
        self._done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self._enabled and self._done * 10 // self._total > self._reported:
            self._reported = min(10, self._done * 10 // self._total)
            print(f"{self._description}: {self._reported * 10}%", file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
