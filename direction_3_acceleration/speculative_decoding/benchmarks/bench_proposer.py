"""The n-gram proposer without a model: how often its drafts match text that copies its input, and their cost.

Each task is a prompt and the exact output a greedy target would emit; the
benchmark decodes it as the engine will: each step the proposer drafts up
to K tokens, the leading drafts equal to the true continuation are kept,
plus one token of the target's own, and ``accept`` reports the growth.
Tokens are words of bundled Shakespeare text (no tokenizer, no model), so
the figures say what prompt lookup and the shared suffix table can catch,
not a model's speed-up:

* ``edit``: the output is the prompt with every 20th word changed;
* ``extract``: the output is every third line of the prompt, in order;
* ``free``: the output is unrelated text (drafts should rarely fire);
* ``template``: 20 requests whose answers share a sentence no prompt holds
  (only the suffix table can draft it; its first request teaches it).

Reported per task: acceptance (kept / drafted), mean tokens per target pass
(the ceiling of the speed-up before the verify pass's extra cost), and
microseconds per ``propose`` call. Usage::

    python benchmarks/bench_proposer.py [--quick] [--out DIR]

Writes ``proposer.json`` and ``proposer.md`` into ``--out`` (default results/).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sagellm.core.types import DraftSequence
from sagellm.speculative_decoding import NgramDecoder

HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "tinyshakespeare_20k.txt"


@dataclass
class Outcome:
    drafted: int = 0
    kept: int = 0
    passes: int = 0
    emitted: int = 0
    propose_s: float = 0.0
    calls: int = 0

    def row(self, task: str) -> dict[str, float | str | int]:
        return {
            "task": task,
            "acceptance": round(self.kept / self.drafted, 3) if self.drafted else 0.0,
            "tokens_per_pass": round(self.emitted / self.passes, 3),
            "us_per_propose": round(self.propose_s / self.calls * 1e6, 1),
            "emitted": self.emitted,
        }


def words(text: str) -> list[str]:
    return text.replace("\n", " \n ").split(" ")


def decode(decoder: NgramDecoder, request_id: str, prompt: list[int], output: list[int], k: int, into: Outcome) -> None:
    """Greedy speculative decoding of a known output: the drafts' leading agreement is kept, plus one token."""
    sequence = list(prompt)
    position = 0
    while position < len(output):
        started = time.perf_counter()
        draft = decoder.propose([DraftSequence(request_id, sequence, len(prompt))], k)[0]
        into.propose_s += time.perf_counter() - started
        into.calls += 1
        truth = output[position : position + len(draft) + 1]
        kept = decoder.verify(draft, truth)
        grown = truth[: kept + 1]
        decoder.accept(request_id, grown)
        sequence += grown
        position += len(grown)
        into.drafted += len(draft)
        into.kept += kept
        into.passes += 1
        into.emitted += len(grown)
    decoder.release(request_id)


def tasks(lines: list[str], quick: bool) -> dict[str, list[tuple[list[str], list[str]]]]:
    rng = random.Random(0)
    size = 20 if quick else 60
    chunks = [lines[i : i + size] for i in range(0, len(lines) - size, size)][: 3 if quick else 8]
    vocabulary = sorted({w for line in lines for w in words(line)})
    built: dict[str, list[tuple[list[str], list[str]]]] = {"edit": [], "extract": [], "free": []}
    for index, chunk in enumerate(chunks):
        prompt = words("\n".join(chunk))
        edited = [rng.choice(vocabulary) if i % 20 == 19 else w for i, w in enumerate(prompt)]
        built["edit"].append((prompt, edited))
        built["extract"].append((prompt, words("\n".join(chunk[::3]))))
        other = chunks[(index + 1) % len(chunks)]
        built["free"].append((prompt, words("\n".join(other))))
    answer = words(
        "Thank you for asking . I hope this answers your question , and let me know if anything is unclear ."
    )
    built["template"] = [
        (words(f"Question {i}: " + lines[i]), words(f"The answer is {lines[i + 1].split(' ')[0]} .") + answer)
        for i in range(20)
    ]
    return built


def latency_us(length: int, calls: int = 200) -> float:
    """µs per propose on a sequence of ``length`` tokens that grows by one token per call."""
    rng = random.Random(1)
    sequence = [rng.randrange(2000) for _ in range(length)]
    decoder = NgramDecoder()
    decoder.propose([DraftSequence("r", sequence, length)], 4)  # the prompt is indexed once
    times = []
    for _ in range(calls):
        sequence.append(rng.randrange(2000))
        started = time.perf_counter()
        decoder.propose([DraftSequence("r", sequence, length)], 4)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def run(quick: bool, k: int) -> dict[str, object]:
    lines = [line for line in TEXT.read_text().splitlines() if line.strip()]
    ids: dict[str, int] = {}

    def encode(ws: Sequence[str]) -> list[int]:
        return [ids.setdefault(w, len(ids)) for w in ws]

    rows = []
    for task, pairs in tasks(lines, quick).items():
        decoder = NgramDecoder()  # one decoder per task: the suffix table is shared by its requests
        outcome = Outcome()
        for number, (prompt, output) in enumerate(pairs):
            decode(decoder, f"{task}-{number}", encode(prompt), encode(output), k, outcome)
        rows.append(outcome.row(task))
    first_index_us = {}
    for length in (1024, 8192):
        decoder = NgramDecoder()
        tokens = list(range(length))
        started = time.perf_counter()
        decoder.propose([DraftSequence("r", tokens, length)], 4)
        first_index_us[length] = round((time.perf_counter() - started) * 1e6)
    return {
        "benchmark": "bench_proposer",
        "num_speculative_tokens": k,
        "cpu": platform.processor() or platform.machine(),
        "tasks": rows,
        "propose_us_per_step": {str(n): round(latency_us(n), 1) for n in (1024, 8192)},
        "first_propose_us (indexes the prompt)": first_index_us,
    }


def markdown(report: dict[str, object]) -> str:
    lines = [
        f"K = {report['num_speculative_tokens']} drafts per step; tokens are words; no model.",
        "",
        "| task | acceptance | tokens per target pass | us per propose | tokens emitted |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["tasks"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {row['task']} | {row['acceptance']:.3f} | {row['tokens_per_pass']:.2f} | "
            f"{row['us_per_propose']:.1f} | {row['emitted']} |"
        )
    lines.append("")
    lines.append(f"propose, growing sequence (µs, median): {report['propose_us_per_step']}")
    lines.append(f"first propose, indexing the prompt (µs): {report['first_propose_us (indexes the prompt)']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 passages instead of 8 (CI smoke run)")
    parser.add_argument("--full", action="store_true", help="accepted for nox; the default is the full size")
    parser.add_argument("-k", "--num-speculative-tokens", type=int, default=4, help="drafts per step (default 4)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where proposer.json/.md go")
    args = parser.parse_args()
    report = run(args.quick, args.num_speculative_tokens)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "proposer.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / "proposer.md").write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
