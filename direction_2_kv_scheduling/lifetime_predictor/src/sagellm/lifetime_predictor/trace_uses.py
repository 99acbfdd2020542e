"""A block-hash request trace (Mooncake jsonl) as a time-ordered list of block uses with their outcomes."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

from sagellm.core.errors import ConfigError
from sagellm.core.types import KVBlockMeta

BUNDLED_TRACES = {  # name -> file under data/ (see data/NOTICE.md)
    "mooncake-synthetic": "mooncake_synthetic_trace.jsonl.gz",
    "mooncake-conversation": "mooncake_conversation_trace.jsonl.gz",
}
DEFAULT_TRACE = "mooncake-synthetic"
BLOCK_TOKENS = 512  # tokens per hash id in Mooncake traces


class TraceError(ConfigError):
    """A trace file is missing, unreadable or not in the expected format."""


@dataclass(frozen=True, slots=True)
class BlockUse:
    """One use of a block by a request, the block's record right after it, and when it was used next.

    ``meta`` is what a cache would hold at that moment (``access_count`` =
    reuses so far, ``last_access`` = this use), so a predictor sees exactly
    the features it would see online. ``next_gap_s`` is the answer, from
    the future: seconds to the next use, ``None`` if the trace has none.
    """

    time_s: float
    meta: KVBlockMeta
    next_gap_s: float | None


def load_uses(path: str | Path | None = None, limit: int | None = None) -> list[BlockUse]:
    """Every block use of the trace, in time order.

    ``path``: a jsonl(.gz) file, or the name of a bundled trace (``BUNDLED_TRACES``);
    default ``DEFAULT_TRACE``.
    """
    rows = sorted(_read_rows(path), key=lambda row: float(row.get("timestamp", 0)))
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise TraceError(f"{path or DEFAULT_TRACE}: no requests")
    return uses_from_rows(rows)


def uses_from_rows(rows: Iterable[dict[str, Any]]) -> list[BlockUse]:
    """Replay requests (``timestamp`` ms, ``input_length``, ``hash_ids``) into block uses."""
    times: list[float] = []
    metas: list[KVBlockMeta] = []
    first_seen: dict[int, float] = {}
    reuses: dict[int, int] = {}
    turn_after: dict[int, int] = {}  # a request's last (and last full) block -> that request's turn
    for number, row in enumerate(rows, 1):
        time_s, prompt_tokens, hash_ids = _fields(row, number)
        turn = _turn(hash_ids, turn_after)
        for depth, block in enumerate(hash_ids):
            count = reuses.get(block, -1) + 1
            reuses[block] = count
            created = first_seen.setdefault(block, time_s)
            metas.append(
                KVBlockMeta(
                    block,
                    created_at=created,
                    last_access=time_s,
                    access_count=count,
                    prefix_depth=depth,
                    request_tokens=prompt_tokens,
                    turn=turn,
                )
            )
            times.append(time_s)
        for block in _conversation_ends(hash_ids, prompt_tokens):
            turn_after[block] = turn
    return [BlockUse(t, m, gap) for t, m, gap in zip(times, metas, _next_gaps(times, metas))]


def _conversation_ends(hash_ids: list[int], prompt_tokens: int) -> list[int]:
    """The blocks a next turn of this request's conversation would re-send last.

    A next turn re-sends the prompt and the answer, so the prompt's last,
    partial block changes hash: its last *full* block is what the next turn
    still contains (the last block too, for traces that re-send prompts
    whole). Depth 0 never counts: it is the system prompt every request of
    a deployment may share.
    """
    full = min(len(hash_ids), prompt_tokens // BLOCK_TOKENS) if prompt_tokens > 0 else len(hash_ids)
    ends = {hash_ids[depth] for depth in (len(hash_ids) - 1, full - 1) if depth >= 1}
    return sorted(ends)


def _turn(hash_ids: list[int], turn_after: dict[int, int]) -> int:
    """A request that re-sends an earlier request's prompt (up to its last full block) continues its conversation."""
    for block in reversed(hash_ids):
        previous = turn_after.get(block)
        if previous is not None:
            return previous + 1
    return 0


def _next_gaps(times: list[float], metas: list[KVBlockMeta]) -> Iterator[float | None]:
    following: dict[int, float] = {}
    gaps: list[float | None] = [None] * len(times)
    for i in range(len(times) - 1, -1, -1):
        block = metas[i].block_id
        later = following.get(block)
        gaps[i] = None if later is None else later - times[i]
        following[block] = times[i]
    return iter(gaps)


def _read_rows(path: str | Path | None) -> Iterator[dict[str, Any]]:
    try:
        with _open(path) as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield _json(line, f"{path or DEFAULT_TRACE}:{number}")
    except OSError as exc:
        bundled = ", ".join(BUNDLED_TRACES)
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc} (bundled traces: {bundled})") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a text file (expected jsonl)") from None


def _open(path: str | Path | None) -> IO[str]:
    name = DEFAULT_TRACE if path is None else str(path)
    if name in BUNDLED_TRACES:
        data = resources.files("sagellm.lifetime_predictor").joinpath("data", BUNDLED_TRACES[name]).read_bytes()
        return io.StringIO(gzip.decompress(data).decode("utf-8"))
    file = Path(name)
    if file.suffix == ".gz":
        return gzip.open(file, "rt", encoding="utf-8")
    return file.open(encoding="utf-8")


def _json(line: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise TraceError(f"{where}: expected a JSON object")
    return row


def _fields(row: dict[str, Any], number: int) -> tuple[float, int, list[int]]:
    try:
        time_s = float(row["timestamp"]) / 1000.0
        hash_ids = [int(h) for h in row["hash_ids"]]
        prompt_tokens = int(row.get("input_length", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise TraceError(f"request {number}: needs numeric 'timestamp' and a list 'hash_ids' ({exc})") from None
    return time_s, prompt_tokens, hash_ids
