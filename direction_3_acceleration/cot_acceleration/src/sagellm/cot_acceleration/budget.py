"""Asking for brevity: a token budget stated in the prompt (TALE, Han et al. 2024).

TALE ("Token-Budget-Aware LLM Reasoning") finds that naming a budget in
the chain-of-thought instruction shortens the reasoning with little loss
when the budget is reasonable. The prompt only asks; the engine enforces
the hard cap by forcing an answer there (a last probe).
"""

from __future__ import annotations

from sagellm.core.errors import InvalidRequestError

BUDGET_INSTRUCTION = "Let's think step by step and use less than {budget} tokens:"


def budget_prompt(prompt: str, budget: int) -> str:
    """``prompt`` followed, on its own line, by TALE's instruction to reason within ``budget`` tokens."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise InvalidRequestError(f"a CoT token budget must be an int >= 1, got {budget!r}")
    instruction = BUDGET_INSTRUCTION.format(budget=budget)
    if not prompt:
        return instruction
    return prompt + instruction if prompt.endswith("\n") else f"{prompt}\n{instruction}"
