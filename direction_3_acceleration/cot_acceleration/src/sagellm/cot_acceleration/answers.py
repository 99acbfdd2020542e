"""Reading the final answer out of reasoning text, normalised so equal answers compare equal.

Early exit and self-consistency both decide by comparing answers as
strings, so "$1,000", "1000.00" and "\\boxed{1000} dollars" must all read
``"1000"``. Where to look, most explicit first (the last occurrence of
each wins, since a model that corrects itself states the answer again):

1. ``\\boxed{...}`` (the probe suffix ends in one; MATH-style outputs),
2. ``#### X`` (GSM8K's reference solutions),
3. "the answer is X" / "answer: X" (chain-of-thought exemplars),
4. otherwise the last number of the text, as self-consistency
   (Wang et al. 2023) and ESC (Li et al. 2024) parse GSM8K samples.

A box or a ``####`` line that holds nothing gives None rather than falling
through to a number of the reasoning: the text said where its answer is.
So does a box not closed yet: a probe decoding "\\boxed{1" then ",000}"
has not answered until the "}" (reading "1" early would look settled).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# A number as written in GSM8K: "1,000" (thousands separators only), "-3", "12.5".
# The sign counts only where it cannot be a minus between two operands ("16-3").
NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
HASHES = re.compile(r"####[ \t]*([^\n]*)")
ANSWER_IS = re.compile(r"answer(?:\s+is|\s*:)\s*", re.IGNORECASE)
CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's "<<2*9=18>>" calculator annotations
# LaTeX and currency wrappers around an answer: "\\text{ dollars}" keeps its words, "$", "\\," and "%" go.
TEXT_COMMAND = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
WRAPPERS = re.compile(r"\\[,!;: ]|\\left|\\right|\\?\$|\\?%|\^\\circ|\\circ")
SPACES = re.compile(r"\s+")
# What may surround a lone number for it to be the answer: words (units) and an "x =" in front, no operators.
UNITS_ONLY = re.compile(r"\s*(?:[A-Za-z]\w*\s*=)?[A-Za-z\s.,:']*")


def extract_answer(text: str) -> str | None:
    """The answer ``text`` states, normalised (see :func:`normalise_answer`); None when there is none."""
    box = _last_box(text)
    if box is not None:
        content, closed = box
        return normalise_answer(content) if closed else None
    hashes = HASHES.findall(text)
    if hashes:
        return normalise_answer(hashes[-1])
    stated = _after_last_marker(text)
    if stated is not None:
        return stated
    numbers = NUMBER.findall(CALCULATOR.sub(" ", text))
    return canonical_number(numbers[-1]) if numbers else None


def normalise_answer(candidate: str) -> str | None:
    """One answer as a comparable string: its number when the rest is only words, else its cleaned text.

    "$70,000" -> "70000", "12.0" -> "12", "18 dollars" -> "18", "50%" -> "50",
    "x = 5" -> "5"; "3/4" and "x+1" stay as they are; blank -> None.
    """
    cleaned = SPACES.sub(" ", _unwrap(candidate)).strip().rstrip(".").strip()
    if not cleaned:
        return None
    numbers = list(NUMBER.finditer(cleaned))
    if len(numbers) == 1:
        only = numbers[0]
        if UNITS_ONLY.fullmatch(cleaned[: only.start()] + " " + cleaned[only.end() :]):
            return canonical_number(only.group())
    return cleaned


def canonical_number(number: str) -> str:
    """The number's canonical spelling: 1,000 -> 1000, 12.50 -> 12.5, 12.0 -> 12, -0 -> 0 (never an exponent)."""
    digits = number.replace(",", "")
    try:
        value = Decimal(digits)
    except InvalidOperation:  # NUMBER only matches decimals; kept for direct callers
        return digits
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _last_box(text: str) -> tuple[str, bool] | None:
    """Content of the last ``\\boxed{...}`` (nested braces kept) and whether its "}" has come; None: no box."""
    starts = list(BOXED.finditer(text))
    if not starts:
        return None
    begin = starts[-1].end()
    depth = 1
    for index in range(begin, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:index], True
    return text[begin:], False


def _after_last_marker(text: str) -> str | None:
    """The first number on the line after the last "answer is"/"answer:"; None when no marker has one."""
    for marker in reversed(list(ANSWER_IS.finditer(text))):
        line = text[marker.end() :].split("\n", 1)[0]
        numbers = NUMBER.findall(_unwrap(line))
        if numbers:
            return canonical_number(numbers[0])
    return None


def _unwrap(text: str) -> str:
    return WRAPPERS.sub(" ", TEXT_COMMAND.sub(r" \1 ", text))
