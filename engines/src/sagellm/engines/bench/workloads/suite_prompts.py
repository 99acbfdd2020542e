"""Real-text prompts of exact token lengths for the Q1-Q8 suite, one builder per kind of task.

Every prompt is ``instruction + body + question`` in token ids (see
:func:`~sagellm.engines.bench.token_fit.fit_tokens`): the body is real
MT-Bench or GSM8K text, cut (or continued with the next items) to hit the
target length. Plain text, not chat-templated: SmolLM2's template alone is
30 tokens, which would leave a 32-token "short question" almost empty. The
multi-turn task is the exception -- roles are the point there -- and its
first turn is fitted through the template instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from sagellm.engines.bench.request import Message
from sagellm.engines.bench.token_fit import fit_chat_turn, fit_tokens
from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.data.datasets import GSM8KItem, MTBenchQuestion, load_gsm8k, load_mt_bench

CHAT_CATEGORIES = ("writing", "roleplay", "stem", "humanities", "extraction", "reasoning")


@dataclass
class SuiteCorpus:
    """MT-Bench and GSM8K, tokenized lazily; the source of every suite prompt."""

    tokenizer: TokenizerLike

    @cached_property
    def mt_bench(self) -> list[MTBenchQuestion]:
        return load_mt_bench()

    @cached_property
    def gsm8k(self) -> list[GSM8KItem]:
        return load_gsm8k()

    @cached_property
    def chat_questions(self) -> list[MTBenchQuestion]:
        return [q for q in self.mt_bench if q.category in CHAT_CATEGORIES]

    @cached_property
    def coding_questions(self) -> list[MTBenchQuestion]:
        return [q for q in self.mt_bench if q.category == "coding"]

    def ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def joined(self, texts: Sequence[str], start: int, min_tokens: int) -> list[int]:
        """Texts from ``start`` on (wrapping), blank-line separated, until ``min_tokens`` are reached."""
        out: list[int] = []
        for k in range(len(texts)):
            out += self.ids(("\n\n" if out else "") + texts[(start + k) % len(texts)])
            if len(out) >= min_tokens:
                break
        return out


def qa_prompt(corpus: SuiteCorpus, index: int, target: int) -> list[int]:
    """A short open question (MT-Bench writing/roleplay/stem/... first turns)."""
    body = corpus.joined([q.turns[0] for q in corpus.chat_questions], index, target)
    return fit_tokens(target, body, corpus.ids("Answer briefly.\nQuestion: "), corpus.ids("\nAnswer:"))


def summarise_prompt(corpus: SuiteCorpus, index: int, target: int) -> list[int]:
    """A long document to summarise: consecutive GSM8K problems read as one text."""
    body = corpus.joined([item.question for item in corpus.gsm8k], index * 37, target)
    prefix = corpus.ids("Summarise the following text in a few sentences.\n\n")
    return fit_tokens(target, body, prefix, corpus.ids("\n\nSummary:"))


def code_prompt(corpus: SuiteCorpus, index: int, target: int) -> list[int]:
    """A programming task (MT-Bench coding), continued with the next tasks when short."""
    body = corpus.joined([q.turns[0] for q in corpus.coding_questions], index, target)
    prefix = corpus.ids("You are an expert programmer. Write the code, then explain it briefly.\n\n")
    return fit_tokens(target, body, prefix, corpus.ids("\n\nCode:\n"))


def cot_prompt(corpus: SuiteCorpus, index: int, target: int) -> list[int]:
    """Few-shot chain of thought: solved GSM8K examples, then an unsolved question."""
    items = corpus.gsm8k
    question = items[index % len(items)].question
    shots = [f"Question: {it.question}\nAnswer: {it.answer}" for it in items[index + 1 :] + items[: index + 1]]
    body = corpus.joined(shots[:-1], 0, target)  # never the question being asked
    suffix = corpus.ids(f"\n\nQuestion: {question}\nAnswer: Let's think step by step.")
    return fit_tokens(target, body, (), suffix)


def multi_turn_messages(corpus: SuiteCorpus, index: int, target: int) -> tuple[tuple[Message, ...], str]:
    """A first chat turn of ~``target`` templated tokens, and the second turn's question."""
    questions = corpus.chat_questions
    question = questions[index % len(questions)]
    filler = corpus.joined([q.turns[0] for q in questions], index + 1, target)
    return fit_chat_turn(corpus.tokenizer, question.turns[0], filler, target), question.turns[1]


PromptBuilder = Callable[[SuiteCorpus, int, int], list[int]]
TEXT_PROMPTS: dict[str, PromptBuilder] = {
    "qa": qa_prompt,
    "summarise": summarise_prompt,
    "code": code_prompt,
    "cot": cot_prompt,
}
COMPOSITE_KINDS = ("qa", "code", "cot", "summarise")  # Q8 cycles through these
