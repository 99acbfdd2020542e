"""The bundled data files (``sagellm/engines/data/``) read into typed rows.

Every reader takes an optional path so a user can point a workload at the
full upstream file; the bundled subsets are described, with their
licences, in ``README.md`` beside this file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sagellm.core.errors import InvalidRequestError

DATA_DIR = Path(__file__).resolve().parent
MT_BENCH_FILE = DATA_DIR / "mt_bench_questions.jsonl"
GSM8K_FILE = DATA_DIR / "gsm8k_test_200.jsonl"
MOONCAKE_FILE = DATA_DIR / "mooncake_trace_500.jsonl"
AZURE_FILE = DATA_DIR / "azure_code_2023_1000.csv"
GROUNDED_FILE = DATA_DIR / "grounded_passages.jsonl"


@dataclass(frozen=True, slots=True)
class MTBenchQuestion:
    question_id: int
    category: str
    turns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GSM8KItem:
    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class MooncakeRow:
    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AzureRow:
    arrival_s: float  # seconds since the trace's first request
    context_tokens: int
    generated_tokens: int


@dataclass(frozen=True, slots=True)
class GroundedPassage:
    """Text a request works on (a scene to edit or quote from, code to change): what prompt lookup drafts from."""

    kind: str  # "scene" or "code"
    text: str
    name: str  # the scene's most frequent speaker, or the code's function


def load_grounded_passages(path: Path | None = None) -> list[GroundedPassage]:
    return [
        GroundedPassage(str(row["kind"]), str(row["text"]), str(row.get("speaker") or row.get("function") or ""))
        for row in _jsonl(path or GROUNDED_FILE, ("kind", "text"))
    ]


def load_mt_bench(path: Path | None = None) -> list[MTBenchQuestion]:
    return [
        MTBenchQuestion(int(row["question_id"]), str(row["category"]), tuple(str(t) for t in row["turns"]))
        for row in _jsonl(path or MT_BENCH_FILE, ("question_id", "category", "turns"))
    ]


def load_gsm8k(path: Path | None = None) -> list[GSM8KItem]:
    return [
        GSM8KItem(str(row["question"]), str(row["answer"]))
        for row in _jsonl(path or GSM8K_FILE, ("question", "answer"))
    ]


def load_mooncake(path: Path | None = None) -> list[MooncakeRow]:
    keys = ("timestamp", "input_length", "output_length", "hash_ids")
    return [
        MooncakeRow(float(r["timestamp"]), int(r["input_length"]), int(r["output_length"]), tuple(r["hash_ids"]))
        for r in _jsonl(path or MOONCAKE_FILE, keys)
    ]


def load_azure(path: Path | None = None) -> list[AzureRow]:
    path = path or AZURE_FILE
    rows: list[AzureRow] = []
    first: datetime | None = None
    try:
        with path.open(newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    when = _parse_time(row["TIMESTAMP"])
                    first = first or when
                    rows.append(
                        AzureRow((when - first).total_seconds(), int(row["ContextTokens"]), int(row["GeneratedTokens"]))
                    )
                except (KeyError, ValueError, TypeError) as exc:
                    raise InvalidRequestError(f"{path}:{line}: not an Azure trace row ({exc})") from None
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc}") from None
    return rows


def _parse_time(text: str) -> datetime:
    """Azure writes 7 fractional digits; datetime takes at most 6."""
    head, _, frac = text.strip().partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}" if frac else head)


def _jsonl(path: Path, keys: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        missing = [k for k in keys if k not in row] if isinstance(row, dict) else list(keys)
        if missing:
            raise InvalidRequestError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
        yield row
