"""CPU sets in the two spellings Linux tools use: lists ("0-3,8") and hex masks ("ff,00000000").

sysfs, lscpu and nvidia-smi write cpulists; NCCL's topology XML writes the
kernel's cpumask (32-bit hex words, most significant first, comma-joined).
"""

from __future__ import annotations

from sagellm.topology.errors import TopologyParseError


def parse_cpulist(text: str) -> tuple[int, ...]:
    """``"0-2,8"`` -> ``(0, 1, 2, 8)``; empty text is the empty set.

    Kernel lists are ascending and disjoint, so the common case is one
    ``extend`` per range; only out-of-order input pays for a sort.
    """
    cpus: list[int] = []
    ordered, previous = True, -1
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise TopologyParseError(f"not a cpulist: {text!r}") from None
        if last < first:
            raise TopologyParseError(f"descending range {part!r} in cpulist {text!r}")
        ordered = ordered and first > previous
        previous = last
        cpus.extend(range(first, last + 1))
    return tuple(cpus) if ordered else tuple(sorted(set(cpus)))


def format_cpulist(cpus: tuple[int, ...] | list[int]) -> str:
    """``(0, 1, 2, 8)`` -> ``"0-2,8"`` (the kernel's spelling)."""
    ranges: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def parse_cpumask(text: str) -> tuple[int, ...]:
    """``"00000000,000000ff"`` -> ``(0, ..., 7)``: comma-separated 32-bit words, high word first."""
    digits = text.strip().replace(",", "")
    if digits.startswith(("0x", "0X")):
        digits = digits[2:]
    try:
        value = int(digits or "0", 16)
    except ValueError:
        raise TopologyParseError(f"not a cpumask: {text!r}") from None
    return tuple(bit for bit in range(value.bit_length()) if value >> bit & 1)


def format_cpumask(cpus: tuple[int, ...] | list[int]) -> str:
    """The inverse of :func:`parse_cpumask`, in whole 32-bit words like the kernel."""
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    words = max(1, (value.bit_length() + 31) // 32)
    return ",".join(f"{value >> (32 * i) & 0xFFFFFFFF:08x}" for i in reversed(range(words)))
