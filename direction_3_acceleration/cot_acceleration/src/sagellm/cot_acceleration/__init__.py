"""sageLLM CoT acceleration: decide when a reasoning request has said enough.

``AnswerProbeAccelerator`` (registry name ``probe``) implements core's
``CoTAccelerator``: answer-probe early exit at reasoning-step boundaries
(DEER, Dynasor), self-consistency with early stopping (ESC) and TALE-style
token budgets in the prompt. It is pure Python and only decides; the
engine forks the probes and draws the samples.
"""

from sagellm.cot_acceleration.accelerator import AnswerProbeAccelerator
from sagellm.cot_acceleration.answers import canonical_number, extract_answer, normalise_answer
from sagellm.cot_acceleration.boundaries import TRANSITION_WORDS, ends_step
from sagellm.cot_acceleration.budget import BUDGET_INSTRUCTION, budget_prompt
from sagellm.cot_acceleration.early_exit import EarlyExitRule, Reading
from sagellm.cot_acceleration.options import DEFAULT_PROBE_SUFFIX, ProbeOptions
from sagellm.cot_acceleration.replay import ReplayOutcome, ScriptedStep, replay
from sagellm.cot_acceleration.self_consistency import consistent, majority_vote, samples_until_consistent
from sagellm.cot_acceleration.version import __version__

__all__ = [
    "BUDGET_INSTRUCTION",
    "DEFAULT_PROBE_SUFFIX",
    "TRANSITION_WORDS",
    "AnswerProbeAccelerator",
    "EarlyExitRule",
    "ProbeOptions",
    "Reading",
    "ReplayOutcome",
    "ScriptedStep",
    "__version__",
    "budget_prompt",
    "canonical_number",
    "consistent",
    "ends_step",
    "extract_answer",
    "majority_vote",
    "normalise_answer",
    "replay",
    "samples_until_consistent",
]
