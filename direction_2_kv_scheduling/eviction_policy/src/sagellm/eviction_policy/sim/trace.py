"""Block-hash request traces (Mooncake jsonl): loading and validation."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sagellm.core.errors import ConfigError


class TraceError(ConfigError):
    """A trace file is missing, unreadable or not in the expected format."""


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request: when it arrived and the hashes of its prompt's blocks, in chain order.

    ``hash_ids[i]`` names block ``i`` of the prompt together with everything
    before it (a chained hash), so two requests share block ``i`` only if
    they share blocks ``0..i``.
    """

    timestamp_s: float
    hash_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Trace:
    requests: tuple[TraceRequest, ...]
    name: str = "trace"

    @property
    def num_accesses(self) -> int:
        """Block lookups in the whole trace: the denominator of the block hit ratio."""
        return sum(len(r.hash_ids) for r in self.requests)

    def unique_blocks(self) -> int:
        return len({h for r in self.requests for h in r.hash_ids})

    def depths(self) -> dict[int, int]:
        """Position of every block in its chain (0 = first block of a prompt)."""
        return {h: depth for r in self.requests for depth, h in enumerate(r.hash_ids)}


def load_trace(path: str | Path) -> Trace:
    """Read a Mooncake-style jsonl trace: one object per line with ``timestamp`` (ms) and ``hash_ids``.

    A ``.gz`` file is read through gzip. Other fields (``input_length``,
    ``output_length``) are ignored. Raises
    :class:`TraceError` naming the file and line when anything is off.
    """
    path = Path(path)
    try:
        with _open_text(path) as lines:
            requests = tuple(_parse(lines, path))
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError):  # BadGzipFile is an OSError: caught first
        raise TraceError(f"{path}: not a text file (expected jsonl or jsonl.gz)") from None
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    if not requests:
        raise TraceError(f"{path}: no requests (expected one JSON object per line)")
    return Trace(requests=requests, name=Path(path.name.removesuffix(".gz")).stem)


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def trace_from_rows(rows: Iterable[dict[str, Any]], name: str = "trace") -> Trace:
    """A trace from already parsed rows (tests, generators), validated like a file."""
    requests = tuple(_request(row, f"{name} row {i}") for i, row in enumerate(rows, 1))
    if not requests:
        raise TraceError(f"{name}: no requests")
    return Trace(requests=requests, name=name)


def _parse(lines: Iterable[str], path: Path) -> Iterable[TraceRequest]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{where}: not JSON ({exc.msg}); expected one JSON object per line") from None
        yield _request(row, where)


def _request(row: Any, where: str) -> TraceRequest:
    if not isinstance(row, dict):
        raise TraceError(f"{where}: expected a JSON object, got {type(row).__name__}")
    hash_ids, timestamp = row.get("hash_ids"), row.get("timestamp")
    if not isinstance(hash_ids, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in hash_ids):
        raise TraceError(f"{where}: 'hash_ids' must be a list of integers")
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
        raise TraceError(f"{where}: 'timestamp' (ms) must be a number")
    return TraceRequest(timestamp_s=timestamp / 1000.0, hash_ids=tuple(hash_ids))
