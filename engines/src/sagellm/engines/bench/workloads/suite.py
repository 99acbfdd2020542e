"""The named suite Q1-Q8 and its presets.

``full`` is the suite as specified; ``ci`` keeps every task and its
concurrency but shrinks lengths and counts so the whole suite, model load
included, runs in well under 3 minutes on 2 CPU cores with SmolLM2-135M
(36 s wall on an idle 2-core AVX-512 EPYC, 49 s with one thread; see
engines/benchmarks/baselines/README.md):

    task                     full: in -> out x n (users)      ci: in -> out x n (users)
    Q1 short Q&A             32 -> 64 x 5 (1)                 32 -> 32 x 4 (1)
    Q2 long-context summary  512 -> 128 x 3 (1)               512 -> 32 x 2 (1)
    Q3 code generation       128 -> 256 x 3 (1)               128 -> 64 x 2 (1)
    Q4 multi-turn chat       256 -> 256 x 3 conv. x 2 turns   128 -> 32 x 2 conv. x 2 turns
    Q5 concurrent short      32 -> 64 x 10 (10)               32 -> 32 x 10 (10)
    Q6 concurrent long       512 -> 256 x 10 (10)             256 -> 64 x 6 (6)
    Q7 chain of thought      256 -> 512 x 3 (1)               256 -> 96 x 2 (1)
    Q8 composite             192 -> 128 x 4 (4)               192 -> 64 x 4 (4)

"(1)" runs requests one after another (closed loop, one user); "(n)" sends
all n at once. Q4's second turns carry the first turn and its answer, so
their prompts are longer than the listed input length.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.engines.bench.load_pattern import LoadPattern
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.bench.workloads.base import RunSpec
from sagellm.engines.bench.workloads.suite_prompts import (
    COMPOSITE_KINDS,
    TEXT_PROMPTS,
    SuiteCorpus,
    multi_turn_messages,
)


@dataclass(frozen=True, slots=True)
class SuiteEntry:
    name: str
    title: str
    kind: str  # a TEXT_PROMPTS key, "multi_turn" or "composite"
    input_len: int
    output_len: int
    count: int
    concurrency: int

    def shape(self) -> dict[str, object]:
        return {
            "workload": f"suite:{self.kind}",
            "input_len": self.input_len,
            "output_len": self.output_len,
            "count": self.count,
            "concurrency": self.concurrency,
        }


def _entries(rows: list[tuple[int, int, int, int]]) -> tuple[SuiteEntry, ...]:
    return tuple(SuiteEntry(name, title, kind, *row) for (name, title, kind), row in zip(TASKS, rows))


TASKS = (
    ("Q1", "short Q&A", "qa"),
    ("Q2", "long-context summarisation", "summarise"),
    ("Q3", "code generation", "code"),
    ("Q4", "multi-turn chat", "multi_turn"),
    ("Q5", "concurrent short", "qa"),
    ("Q6", "concurrent long", "summarise"),
    ("Q7", "chain of thought", "cot"),
    ("Q8", "composite", "composite"),
)
# (input_len, output_len, count, concurrency) per task, in TASKS order.
FULL_SHAPES = [
    (32, 64, 5, 1),  # Q1
    (512, 128, 3, 1),  # Q2
    (128, 256, 3, 1),  # Q3
    (256, 256, 3, 1),  # Q4: 3 conversations of 2 turns
    (32, 64, 10, 10),  # Q5
    (512, 256, 10, 10),  # Q6
    (256, 512, 3, 1),  # Q7
    (192, 128, 4, 4),  # Q8
]
CI_SHAPES = [
    (32, 32, 4, 1),  # Q1
    (512, 32, 2, 1),  # Q2
    (128, 64, 2, 1),  # Q3
    (128, 32, 2, 1),  # Q4: 2 conversations of 2 turns
    (32, 32, 10, 10),  # Q5
    (256, 64, 6, 6),  # Q6
    (256, 96, 2, 1),  # Q7
    (192, 64, 4, 4),  # Q8
]
PRESETS: dict[str, tuple[SuiteEntry, ...]] = {"full": _entries(FULL_SHAPES), "ci": _entries(CI_SHAPES)}


def build_suite(preset: str, tokenizer: TokenizerLike, only: tuple[str, ...] = ()) -> list[RunSpec]:
    """One run per task of ``preset`` (all, or those named in ``only``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    corpus = SuiteCorpus(tokenizer)
    entries = [e for e in PRESETS[preset] if not only or e.name in only]
    return [build_entry(entry, corpus) for entry in entries]


def build_entry(entry: SuiteEntry, corpus: SuiteCorpus) -> RunSpec:
    requests: list[BenchRequest] = []
    for i in range(entry.count):
        rid = f"{entry.name}-{i}"
        if entry.kind == "multi_turn":
            first, follow_up = multi_turn_messages(corpus, i, entry.input_len)
            requests.append(BenchRequest(f"{rid}-t1", entry.output_len, messages=first, tag="chat"))
            second = ({"role": "user", "content": follow_up},)
            requests.append(
                BenchRequest(f"{rid}-t2", entry.output_len, messages=second, follows=f"{rid}-t1", tag="chat")
            )
            continue
        kind = COMPOSITE_KINDS[i % len(COMPOSITE_KINDS)] if entry.kind == "composite" else entry.kind
        ids = TEXT_PROMPTS[kind](corpus, i, entry.input_len)
        requests.append(BenchRequest(rid, entry.output_len, prompt_token_ids=tuple(ids), tag=kind))
    return RunSpec(entry.name, requests, LoadPattern(concurrency=entry.concurrency), entry.shape(), entry.title)
