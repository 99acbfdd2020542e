"""CPU model, counts, SMT sibling groups and caches from /sys/devices/system/cpu and /proc/cpuinfo.

Reads one file per *group*, not per CPU: once ``cpu0`` says its siblings
are ``0,96``, ``cpu96`` is not read again; a cache index shared by 12 CPUs
is read once; a per-core cache index is checked on two CPUs and then
follows the SMT groups. On a 2 x 96-core machine that is ~250 CPU reads
instead of ~5,000, which is most of what keeps a cold ``detect()`` in
milliseconds.
"""

from __future__ import annotations

import re

from sagellm.core.types.topology import CacheInfo, CpuInfo
from sagellm.topology._sysfs import SysfsReader
from sagellm.topology.cpulist import parse_cpulist

CPU_DIR = "/sys/devices/system/cpu"
_SIZE = re.compile(r"(\d+)\s*([KMG]?)", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def online_cpus(reader: SysfsReader) -> tuple[int, ...]:
    """The online logical CPUs (``cpu/online``; the ``cpuN`` directories when that file is missing)."""
    text = reader.read(f"{CPU_DIR}/online")
    if text:
        return parse_cpulist(text)
    names = reader.listdir(CPU_DIR)
    return tuple(sorted(int(n[3:]) for n in names if re.fullmatch(r"cpu\d+", n)))


def cpu_groups(reader: SysfsReader, cpus: tuple[int, ...], *files: str) -> tuple[tuple[int, ...], ...]:
    """Partition ``cpus`` by a per-CPU list file (the first of ``files`` that exists), one read per group."""
    online = set(cpus)
    covered: set[int] = set()
    groups: list[tuple[int, ...]] = []
    for cpu in cpus:
        if cpu in covered:
            continue
        members: tuple[int, ...] = (cpu,)
        for name in files:
            text = reader.read(f"{CPU_DIR}/cpu{cpu}/topology/{name}")
            if text is not None:
                listed = tuple(c for c in parse_cpulist(text) if c in online and c not in covered)
                members = listed if cpu in listed else (cpu,)
                break
        covered.update(members)
        groups.append(members)
    return tuple(groups)


def parse_size(text: str) -> int:
    """``"48K"`` -> 49152 (sysfs cache sizes are binary units)."""
    match = _SIZE.fullmatch(text.strip())
    return int(match.group(1)) * _UNITS[match.group(2).upper()] if match else 0


def _per_core(reader: SysfsReader, base: str, cpus: tuple[int, ...], siblings: tuple[tuple[int, ...], ...]) -> bool:
    """Whether a cache index is private to each core: the first and the last CPU share it with exactly their SMT siblings.

    Then its instances are the sibling groups and the other ~all CPUs need
    not be read (L1d, L1i and L2 on every current x86 and Arm server part).
    """
    group_of = {cpu: group for group in siblings for cpu in group}
    for cpu in (cpus[0], cpus[-1]):
        text = reader.read(base.format(cpu=cpu) + "/shared_cpu_list")
        if text is None or parse_cpulist(text) != group_of.get(cpu):
            return False
    return True


def read_caches(
    reader: SysfsReader, cpus: tuple[int, ...], siblings: tuple[tuple[int, ...], ...] = ()
) -> tuple[CacheInfo, ...]:
    """Every cache instance once, ordered by (level, type, shared cpus).

    Level, type and size are read once per cache index: every instance of
    an index is the same cache design. Hybrid CPUs break that (Intel's
    P-core and E-core L2 differ), so where the kernel exposes the hybrid
    PMUs (``/sys/devices/cpu_atom``) every instance is read in full.
    """
    if not cpus:
        return ()
    first = f"{CPU_DIR}/cpu{cpus[0]}/cache"
    indexes = [n for n in reader.listdir(first) if re.fullmatch(r"index\d+", n)]
    hybrid = reader.exists("/sys/devices/cpu_atom")
    caches: list[CacheInfo] = []
    for index in indexes:
        level, kind = reader.read_int(f"{first}/{index}/level"), reader.read(f"{first}/{index}/type") or "Unified"
        size = parse_size(reader.read(f"{first}/{index}/size") or "")
        if level is None or not size:
            continue
        base = CPU_DIR + "/cpu{cpu}/cache/" + index
        if siblings and not hybrid and _per_core(reader, base, cpus, siblings):
            caches.extend(CacheInfo(level, kind, size, group) for group in siblings)
            continue
        covered: set[int] = set()
        for cpu in cpus:
            if cpu in covered:
                continue
            path = base.format(cpu=cpu)
            shared = parse_cpulist(reader.read(f"{path}/shared_cpu_list") or "")
            if cpu not in shared or not covered.isdisjoint(shared):  # malformed: keep the partition
                shared = tuple(c for c in shared if c not in covered) if cpu in shared else (cpu,)
            covered.update(shared)
            own_size = parse_size(reader.read(f"{path}/size") or "") if hybrid else size
            caches.append(CacheInfo(level, kind, own_size or size, shared))
    return tuple(sorted(caches, key=lambda c: (c.level, c.type, c.shared_cpus)))


def first_cpuinfo_block(reader: SysfsReader) -> dict[str, str]:
    """The ``key: value`` pairs of the first processor in /proc/cpuinfo (all CPUs repeat them)."""
    text = reader.read("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text, 0) if text is not None else None
    except ValueError:
        return None


def read_cpu(reader: SysfsReader) -> CpuInfo:
    """The CPU summary ``lscpu`` would print: model, vendor, sockets, cores, threads, flags."""
    cpus = online_cpus(reader)
    siblings = cpu_groups(reader, cpus, "thread_siblings_list", "core_cpus_list")
    packages = cpu_groups(reader, cpus, "package_cpus_list", "core_siblings_list")
    info = first_cpuinfo_block(reader)
    flags = info.get("flags") or info.get("Features") or ""
    return CpuInfo(
        model=info.get("model name", ""),
        vendor=info.get("vendor_id") or info.get("CPU implementer", ""),
        family=_int_or_none(info.get("cpu family")),
        model_number=_int_or_none(info.get("model")),
        sockets=len(packages),
        cores=len(siblings),
        threads=len(cpus),
        flags=tuple(sorted(set(flags.split()))),
        smt_siblings=siblings,
    )
