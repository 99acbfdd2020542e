"""Human-readable plans for logs and debugging sessions."""

from __future__ import annotations

from sagellm.core.types import ExecutionPlan, ScheduledChunk


def describe_plan(plan: ExecutionPlan) -> str:
    """A header line, one line per chunk, then the preempted ids, if any.

    ::

        3 chunks, 66 tokens (2 decode + 64 prefill), 1 admitted, 1 preempted [slo]
          decode   r0  [12, 13)           1 tok
          decode   r1  [9, 10)            1 tok
          prefill  w4  [8, 72)           64 tok  admitted
          preempted: r3 (swap)

    The policy tag is left out when the plan names none; a preempted id is
    marked ``(swap)`` when its KV goes to host memory (recompute otherwise).
    """
    admitted = set(plan.admitted)
    width = max((len(c.request_id) for c in plan.chunks), default=0)
    lines = [_header(plan)]
    lines.extend(_chunk_line(c, width, c.request_id in admitted) for c in plan.chunks)
    if plan.preempted:
        swapped = set(plan.swapped_out)
        lines.append("  preempted: " + ", ".join(r + " (swap)" if r in swapped else r for r in plan.preempted))
    return "\n".join(lines)


def _header(plan: ExecutionPlan) -> str:
    decode = sum(c.num_tokens for c in plan.chunks if c.is_decode)
    prefill = plan.num_batched_tokens - decode
    header = (
        f"{len(plan.chunks)} chunks, {plan.num_batched_tokens} tokens "
        f"({decode} decode + {prefill} prefill), {len(plan.admitted)} admitted, {len(plan.preempted)} preempted"
    )
    return f"{header} [{plan.policy}]" if plan.policy else header


def _chunk_line(chunk: ScheduledChunk, width: int, is_admitted: bool) -> str:
    kind = "decode" if chunk.is_decode else "prefill"
    span = f"[{chunk.start}, {chunk.start + chunk.num_tokens})"
    line = f"  {kind:<7}  {chunk.request_id:<{width}}  {span:<14} {chunk.num_tokens:>5} tok"
    return line + "  admitted" if is_admitted else line
