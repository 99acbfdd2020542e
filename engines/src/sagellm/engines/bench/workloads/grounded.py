"""Input-grounded tasks: edit, quote from or summarise a bundled passage, one chat request each.

The answers reuse the input's own words, which is where prompt-lookup
speculation drafts from (and where it is known to pay): rewriting a scene,
quoting one speaker's lines, changing a function and printing it again.
Summaries are in the mix as the task that copies least. The passages are
Shakespeare scenes (tinyshakespeare, public domain) and functions of this
repository (``sagellm/engines/data/grounded_passages.jsonl``).
"""

from __future__ import annotations

from sagellm.engines.bench.load_pattern import LoadPattern
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.bench.workloads.base import RunSpec, WorkloadOptions
from sagellm.engines.data.datasets import GroundedPassage, load_grounded_passages

SCENE_TASKS = {
    "edit": "Rewrite this scene exactly as it is, but write every speaker's name in lower case.",
    "extract": "Quote, word for word, every line that {name} speaks in this scene.",
    "summarise": "Summarise this scene in a few sentences, naming who speaks.",
}
CODE_TASKS = {
    "edit": "Rename the function `{name}` to `{name}_v2` and print the whole updated function.",
    "extract": "Print every line of this function that contains an `if` or a `for`, exactly as written.",
    "summarise": "Explain in a few sentences what the function `{name}` does.",
}


def build(tokenizer: TokenizerLike, options: WorkloadOptions, name: str = "grounded") -> RunSpec:
    passages = load_grounded_passages(options.data_path)
    tasks = list(SCENE_TASKS)
    requests = []
    for i in range(options.num_requests):
        passage = passages[(options.seed + i) % len(passages)]
        task = tasks[(options.seed + i // len(passages)) % len(tasks)]
        requests.append(
            BenchRequest(
                request_id=f"{name}-{i}",
                max_tokens=options.output_len,
                messages=({"role": "user", "content": prompt_for(passage, task)},),
                tag=task,
            )
        )
    shape = {"workload": "grounded", "num_requests": options.num_requests, "output_len": options.output_len}
    return RunSpec(name, requests, LoadPattern(request_rate=float("inf")), shape, "input-grounded tasks")


def prompt_for(passage: GroundedPassage, task: str) -> str:
    instruction = (CODE_TASKS if passage.kind == "code" else SCENE_TASKS)[task].format(name=passage.name)
    return f"{instruction}\n\n{passage.text}"
