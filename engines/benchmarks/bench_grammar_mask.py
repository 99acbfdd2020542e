"""Grammar engines for structured output: per-token mask cost and compile time on SmolLM2's vocabulary.

Structured output masks every sampled row with the tokens a grammar allows
next, so the mask is on the decode path of each constrained token; a new
schema is compiled on the request's path before its first token. This
benchmark measures both for the three maintained engines that vLLM and
SGLang use -- llguidance, xgrammar, outlines-core -- on the vocabulary
sageLLM's own tokenizer gives the default model (49,152 byte-level BPE
tokens, converted by ``sagellm.engines.runtime.grammar.vocab``, the same
bytes for all three):

* for each schema (a flat record, a nested order with arrays, enums and a
  nullable field, a two-tool call as ``anyOf``) and ``json_object`` (any
  JSON object), a valid document is forced token by token: before each
  token the engine fills a 32-bit-per-token bitmask (timed), the token is
  checked to be allowed, then accepted (timed apart);
* compile: schema to a ready matcher, cold (xgrammar's cache off, a new
  outlines-core index), median of ``--compile-reps``; "first mask" is the
  mask of the first token, which llguidance computes lazily.
* engine path: llguidance's bitmask turned into the additive float mask the
  sampler adds to the logits row (``GrammarMatcher.mask``) and added, the
  engine's whole per-token cost.

All three engines produce compact JSON here (no free whitespace), the form
the engine generates.

Decision: **llguidance** (table in engines/README.md, measured on this
repository's 2-core Zen 3 CPU under load). Every engine's mask costs
microseconds at the median (llguidance 12-25 µs, xgrammar 6-18 µs,
outlines-core 1-2 µs, 76 µs for ``json_object``), against a decode step of
milliseconds, so per-token cost does not separate them. Compilation does,
and it is paid on a request's path for every new schema: llguidance about
a millisecond (its lexer and parser work lazily, per token, with no
per-vocabulary precomputation), xgrammar 20-45 ms, outlines-core 0.35-1.7 s
over two runs (a DFA index over the vocabulary per schema; 23-44 s for
``json_object``, which a regex engine can only approximate by bounding the
nesting depth). Dependencies too: llguidance is one 3 MB wheel with none;
xgrammar requires torch, transformers, apache-tvm-ffi and triton (a GPU
compiler, of no use on a CPU box). All three are maintained (guidance-ai,
MLC, dottxt) and used by vLLM.

Usage::

    python engines/benchmarks/bench_grammar_mask.py              # 20 forced documents per schema and engine
    python engines/benchmarks/bench_grammar_mask.py --quick      # CI smoke: 2 documents, 1 compile
    python engines/benchmarks/bench_grammar_mask.py --engines llguidance xgrammar

Writes ``results/grammar_mask.json`` and ``results/grammar_mask.md`` (or ``--out DIR``).
An engine that is not installed is reported as such and skipped.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sagellm.engines.model.tokenizer_loader import load_tokenizer
from sagellm.engines.runtime.grammar.backend import JSON_OPTIONS
from sagellm.engines.runtime.grammar.matcher import GrammarMatcher
from sagellm.engines.runtime.grammar.vocab import GrammarVocab, grammar_vocab
from sagellm.engines.tokenizer import Tokenizer

HERE = Path(__file__).resolve().parent
ENGINES = ("llguidance", "xgrammar", "outlines-core")
PACKAGES = {"llguidance": "llguidance", "xgrammar": "xgrammar", "outlines-core": "outlines_core"}

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "email": {"type": "string"},
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "email", "active"],
    "additionalProperties": False,
}
ORDER = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}, "price": {"type": "number"}},
                "required": ["sku", "qty", "price"],
                "additionalProperties": False,
            },
        },
        "shipping": {"enum": ["standard", "express"]},
        "notes": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["id", "items", "shipping", "notes"],
    "additionalProperties": False,
}


def _tool(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    arguments = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": arguments},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


TOOL_CALL = {
    "anyOf": [
        _tool(
            "get_weather",
            {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer"}},
        ),
        _tool("search_web", {"query": {"type": "string"}, "max_results": {"type": "integer"}}),
    ]
}
JSON_OBJECT = {"type": "object"}

# (schema, a valid document written compactly, as the engine generates it)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "person": (PERSON, {"name": "Ada Lovelace", "age": 36, "email": "ada@example.org", "active": True}),
    "order": (
        ORDER,
        {
            "id": "A-1029",
            "items": [
                {"sku": "KB-87", "qty": 2, "price": 49.5},
                {"sku": "MS-12", "qty": 1, "price": 19.99},
                {"sku": "CB-USB-C", "qty": 3, "price": 7.25},
            ],
            "shipping": "express",
            "notes": None,
        },
    ),
    "tool_call": (TOOL_CALL, {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius", "days": 3}}),
    "json_object": (
        JSON_OBJECT,
        {"title": "Notes", "tags": ["a", "b"], "meta": {"pages": 12, "draft": False}, "score": 0.75},
    ),
}


class Runner:
    """One grammar engine: compile a schema, make a matcher, fill a bitmask, accept a token."""

    name = ""

    def compile(self, schema: dict[str, Any]) -> Any:
        raise NotImplementedError

    def matcher(self, compiled: Any) -> Any:
        raise NotImplementedError

    def fill(self, matcher: Any, words: torch.Tensor) -> None:
        raise NotImplementedError

    def accept(self, matcher: Any, token: int) -> bool:
        raise NotImplementedError


class LLGuidanceRunner(Runner):
    name = "llguidance"

    def __init__(self, tokenizer: Tokenizer, vocab: GrammarVocab) -> None:
        import llguidance

        from sagellm.engines.runtime.grammar.backend import LLGuidanceBackend

        self._ll = llguidance
        self._tokenizer = LLGuidanceBackend(tokenizer, vocab)._tokenizer  # the engine's own LLTokenizer

    def compile(self, schema: dict[str, Any]) -> Any:
        grammar = self._ll.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
        return self._ll.LLMatcher(self._tokenizer, grammar, log_level=0)

    def matcher(self, compiled: Any) -> Any:
        return compiled.deep_copy()

    def fill(self, matcher: Any, words: torch.Tensor) -> None:
        matcher.unsafe_compute_mask_ptr(words.data_ptr(), words.numel() * 4)

    def accept(self, matcher: Any, token: int) -> bool:
        return bool(matcher.consume_token(token))


class XGrammarRunner(Runner):
    name = "xgrammar"

    def __init__(self, tokenizer: Tokenizer, vocab: GrammarVocab) -> None:
        import xgrammar

        self._xgr = xgrammar
        # Special tokens as empty strings: xgrammar never allows those inside the grammar (stop tokens apart).
        encoded = [b"" if i in vocab.special_ids else b for i, b in enumerate(vocab.token_bytes)]
        self._info = xgrammar.TokenizerInfo(
            encoded, xgrammar.VocabType.RAW, vocab_size=vocab.size, stop_token_ids=list(vocab.eos_token_ids)
        )

    def compile(self, schema: dict[str, Any]) -> Any:
        compiler = self._xgr.GrammarCompiler(self._info, max_threads=os.cpu_count() or 1, cache_enabled=False)
        return compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, separators=(",", ":"))

    def matcher(self, compiled: Any) -> Any:
        return self._xgr.GrammarMatcher(compiled)

    def fill(self, matcher: Any, words: torch.Tensor) -> None:
        matcher.fill_next_token_bitmask(words.view(1, -1))

    def accept(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))


class OutlinesRunner(Runner):
    name = "outlines-core"

    def __init__(self, tokenizer: Tokenizer, vocab: GrammarVocab) -> None:
        import outlines_core

        self._oc = outlines_core
        tokens: dict[bytes, list[int]] = {}
        for i, piece in enumerate(vocab.token_bytes):
            if i not in vocab.special_ids and i not in vocab.eos_token_ids:
                tokens.setdefault(piece, []).append(i)
        self._vocab = outlines_core.Vocabulary(vocab.eos_token_ids[0], tokens)

    def compile(self, schema: dict[str, Any]) -> Any:
        # A regex engine: recursive JSON (json_object) becomes a regex bounded at its default nesting depth.
        regex = self._oc.json_schema.build_regex_from_schema(json.dumps(schema), whitespace_pattern="")
        return self._oc.Index(regex, self._vocab)

    def matcher(self, compiled: Any) -> Any:
        return self._oc.Guide(compiled)

    def fill(self, matcher: Any, words: torch.Tensor) -> None:
        matcher.write_mask_into(words.data_ptr(), words.numel(), 4)

    def accept(self, matcher: Any, token: int) -> bool:
        matcher.advance(token, return_tokens=False)
        return True


RUNNERS: dict[str, Callable[[Tokenizer, GrammarVocab], Runner]] = {
    "llguidance": LLGuidanceRunner,
    "xgrammar": XGrammarRunner,
    "outlines-core": OutlinesRunner,
}


@dataclass
class CaseResult:
    engine: str
    schema: str
    num_tokens: int
    compile_ms: float
    first_mask_us: float
    mask_p50_us: float
    mask_p99_us: float
    mask_mean_us: float
    accept_p50_us: float
    all_allowed: bool  # every token of the valid document was in its mask, and EOS at the end
    note: str = ""


def _allowed(words: torch.Tensor, token: int) -> bool:
    return bool((int(words[token // 32]) >> (token % 32)) & 1)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_case(
    runner: Runner, name: str, schema: dict[str, Any], token_ids: list[int], vocab: GrammarVocab, args: Any
) -> CaseResult:
    compile_s = []
    compiled = None
    for _ in range(args.compile_reps):
        started = time.perf_counter()
        compiled = runner.compile(schema)
        compile_s.append(time.perf_counter() - started)
    words = torch.zeros((vocab.size + 31) // 32, dtype=torch.int32)
    first, masks, accepts = [], [], []
    all_allowed = True
    for _ in range(args.reps):
        matcher = runner.matcher(compiled)
        for position, token in enumerate(token_ids):
            started = time.perf_counter()
            runner.fill(matcher, words)
            filled = time.perf_counter()
            all_allowed &= _allowed(words, token)
            accepted_at = time.perf_counter()
            all_allowed &= runner.accept(matcher, token)
            done = time.perf_counter()
            (first if position == 0 else masks).append((filled - started) * 1e6)
            accepts.append((done - accepted_at) * 1e6)
        runner.fill(matcher, words)
        all_allowed &= _allowed(words, vocab.eos_token_ids[0])
    return CaseResult(
        engine=runner.name,
        schema=name,
        num_tokens=len(token_ids),
        compile_ms=statistics.median(compile_s) * 1e3,
        first_mask_us=statistics.median(first),
        mask_p50_us=_percentile(masks, 0.5),
        mask_p99_us=_percentile(masks, 0.99),
        mask_mean_us=statistics.fmean(masks),
        accept_p50_us=_percentile(accepts, 0.5),
        all_allowed=all_allowed,
        note="depth-bounded regex" if runner.name == "outlines-core" and name == "json_object" else "",
    )


def measure_sampler_path(
    tokenizer: Tokenizer, vocab: GrammarVocab, token_ids: list[int], reps: int
) -> dict[str, float]:
    """llguidance through the engine's GrammarMatcher: bitmask to the additive float mask, added to a logits row."""
    from sagellm.engines.runtime.grammar import GrammarSpec, LLGuidanceBackend

    backend = LLGuidanceBackend(tokenizer, vocab)
    spec = GrammarSpec.json_schema(ORDER)
    logits = torch.randn(vocab.size)
    mask_us, masked_us = [], []
    for _ in range(reps):
        matcher: GrammarMatcher = backend.matcher(spec)
        for token in token_ids:
            started = time.perf_counter()
            mask = matcher.mask(vocab.size)
            made = time.perf_counter()
            masked = logits + mask
            done = time.perf_counter()
            assert masked[token] == logits[token]
            mask_us.append((made - started) * 1e6)
            masked_us.append((done - started) * 1e6)
            matcher.accept(token)
    return {
        "mask_p50_us": _percentile(mask_us, 0.5),
        "mask_p99_us": _percentile(mask_us, 0.99),
        "mask_and_add_p50_us": _percentile(masked_us, 0.5),
        "mask_and_add_p99_us": _percentile(masked_us, 0.99),
    }


def _version(engine: str) -> str | None:
    try:
        return importlib.metadata.version(engine)
    except importlib.metadata.PackageNotFoundError:
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    tokenizer = load_tokenizer(args.model)
    started = time.perf_counter()
    vocab = grammar_vocab(tokenizer)
    vocab_s = time.perf_counter() - started
    documents = {
        name: tokenizer.encode(json.dumps(doc, separators=(",", ":")), add_special_tokens=False)
        for name, (_, doc) in CASES.items()
    }
    results: list[CaseResult] = []
    setup: dict[str, Any] = {}
    for engine in args.engines:
        version = _version(engine)
        if version is None:
            setup[engine] = {"installed": False}
            continue
        started = time.perf_counter()
        runner = RUNNERS[engine](tokenizer, vocab)
        setup[engine] = {"installed": True, "version": version, "setup_s": time.perf_counter() - started}
        for name, (schema, _) in CASES.items():
            if name in args.skip:
                continue
            print(f"{engine} {name} ...", flush=True)
            results.append(measure_case(runner, name, schema, documents[name], vocab, args))
    sampler = (
        measure_sampler_path(tokenizer, vocab, documents["order"], args.reps) if "llguidance" in args.engines else {}
    )
    return {
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "vocab_size": vocab.size,
        "vocab_conversion_s": vocab_s,
        "reps": args.reps,
        "compile_reps": args.compile_reps,
        "document_tokens": {name: len(ids) for name, ids in documents.items()},
        "engines": setup,
        "results": [asdict(r) for r in results],
        "sampler_path_llguidance_order": sampler,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        "# Grammar engines: per-token mask cost on SmolLM2's vocabulary",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}; "
        f"load average {machine['loadavg_before'][0]:.2f} before, {machine['loadavg_after'][0]:.2f} after; "
        f"vocabulary {report['vocab_size']} tokens; {report['reps']} forced documents per case, "
        f"compile: median of {report['compile_reps']} cold compiles.",
        "",
        "| engine | schema | tokens | compile ms | first mask µs | mask p50 µs | mask p99 µs | mask mean µs "
        "| accept p50 µs | valid doc allowed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        note = f" ({r['note']})" if r["note"] else ""
        lines.append(
            f"| {r['engine']} | {r['schema']}{note} | {r['num_tokens']} | {r['compile_ms']:.1f} "
            f"| {r['first_mask_us']:.0f} | {r['mask_p50_us']:.1f} | {r['mask_p99_us']:.1f} | {r['mask_mean_us']:.1f} "
            f"| {r['accept_p50_us']:.1f} | {'yes' if r['all_allowed'] else 'NO'} |"
        )
    lines += ["", "| engine | installed | version | vocabulary setup s |", "|---|---|---|---:|"]
    for engine, info in report["engines"].items():
        setup = f"{info['setup_s']:.2f}" if info.get("installed") else "-"
        lines.append(f"| {engine} | {info['installed']} | {info.get('version', '-')} | {setup} |")
    sampler = report["sampler_path_llguidance_order"]
    if sampler:
        lines += [
            "",
            "Engine path (llguidance, `order` schema, `GrammarMatcher.mask` + adding it to a logits row): "
            f"p50 {sampler['mask_and_add_p50_us']:.1f} µs, p99 {sampler['mask_and_add_p99_us']:.1f} µs "
            f"(of which the mask: p50 {sampler['mask_p50_us']:.1f} µs, p99 {sampler['mask_p99_us']:.1f} µs).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--reps", type=int, default=20, help="forced documents per schema and engine")
    parser.add_argument("--compile-reps", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=list(CASES), help="schemas to leave out")
    parser.add_argument("--model", default=None, help="GGUF file or HF directory (default: the embedded SmolLM2)")
    parser.add_argument("--quick", action="store_true", help="CI smoke: 2 documents, 1 compile")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.compile_reps = 2, 1
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grammar_mask.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "grammar_mask.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
