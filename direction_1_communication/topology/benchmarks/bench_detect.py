"""Cold ``detect()`` latency of the sysfs detector, p50/p99.

    python benchmarks/bench_detect.py [--quick] [--runs N] [--out DIR]

Rows (each: a fresh detector per run):

* ``first call, fresh process``: a new Python process per run imports
  sagellm.topology and times its very first ``detect()`` (no Python-level
  caches; the kernel's dentry cache is as warm as it is on a live host).
  The import time is reported beside it.
* ``fresh detector, same process``: ``SysfsTopologyDetector().detect()``
  repeated in one process.
* ``2 x 96-core fake tree``: the same on a generated tree the size of a
  2-socket, 384-thread, 8-NUMA-node GPU server (8 GPUs, 8 HCAs, 256 PCI
  functions), because the development VM has only 2 CPUs.
* ``lscpu`` (the peer): one ``lscpu`` run, which reads the CPU half of the
  same files in C.

Writes ``bench_detect.json`` and ``bench_detect.md`` to ``--out`` (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sagellm.topology import SysfsTopologyDetector, format_cpulist

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
CHILD = (
    "import time; t0 = time.perf_counter()\n"
    "from sagellm.topology import SysfsTopologyDetector\n"
    "t1 = time.perf_counter(); SysfsTopologyDetector().detect(); t2 = time.perf_counter()\n"
    "print((t1 - t0) * 1e3, (t2 - t1) * 1e3)\n"
)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(samples), "p99_ms": percentile(samples, 99), "runs": len(samples)}


def time_ms(fn: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def fresh_process_runs(runs: int) -> tuple[list[float], list[float]]:
    imports, detects = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
        imp, det = (float(x) for x in out.split())
        imports.append(imp)
        detects.append(det)
    return imports, detects


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def big_tree(root: Path) -> Path:
    """2 sockets x 96 cores x 2 threads, 8 NUMA nodes of 48 threads, 8 GPUs + 8 HCAs + 240 other PCI functions."""
    threads, cores, nodes = 384, 192, 8
    write(root, "sys/devices/system/cpu/online", f"0-{threads - 1}")
    for cpu in range(threads):
        core = cpu % cores
        base = f"sys/devices/system/cpu/cpu{cpu}"
        socket = core // 96
        write(root, f"{base}/topology/thread_siblings_list", f"{core},{core + cores}")
        write(
            root,
            f"{base}/topology/package_cpus_list",
            format_cpulist(
                [*range(socket * 96, socket * 96 + 96), *range(cores + socket * 96, cores + socket * 96 + 96)]
            ),
        )
        ccx = core // 8
        for idx, (level, kind, size, shared) in enumerate(
            [
                (1, "Data", "32K", f"{core},{core + cores}"),
                (1, "Instruction", "32K", f"{core},{core + cores}"),
                (2, "Unified", "1024K", f"{core},{core + cores}"),
                (3, "Unified", "32768K", f"{ccx * 8}-{ccx * 8 + 7},{cores + ccx * 8}-{cores + ccx * 8 + 7}"),
            ]
        ):
            for name, value in (("level", str(level)), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
                write(root, f"{base}/cache/index{idx}/{name}", value)
    write(root, "sys/devices/system/node/online", f"0-{nodes - 1}")
    for node in range(nodes):
        first = node * 24
        write(
            root,
            f"sys/devices/system/node/node{node}/cpulist",
            f"{first}-{first + 23},{cores + first}-{cores + first + 23}",
        )
        write(
            root,
            f"sys/devices/system/node/node{node}/distance",
            " ".join("10" if n == node else "12" if n // 4 == node // 4 else "32" for n in range(nodes)),
        )
        write(root, f"sys/devices/system/node/node{node}/meminfo", f"Node {node} MemTotal: 198000000 kB\n")
    write(
        root,
        "proc/cpuinfo",
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9654 96-Core Processor\nflags\t\t: fpu sse sse2 avx avx2 avx512f\n\n",
    )
    write(root, "proc/sys/kernel/hostname", "big")
    for i in range(256):
        addr = f"0000:{i:02x}:00.0"
        cls, vendor = (0x030200, 0x10DE) if i % 32 == 1 else (0x020700, 0x15B3) if i % 32 == 2 else (0x060400, 0x1022)
        base = f"sys/bus/pci/devices/{addr}"
        uevent = f"PCI_CLASS={cls:X}\nPCI_ID={vendor:04X}:1234\nPCI_SLOT_NAME={addr}\n"
        for name, value in (
            ("uevent", uevent),
            ("numa_node", str(i // 32)),
            ("current_link_speed", "32.0 GT/s PCIe"),
            ("current_link_width", "16"),
            ("local_cpulist", "0-23"),
        ):
            write(root, f"{base}/{name}", value)
        if cls == 0x020700:
            ib = f"sys/class/infiniband/mlx5_{i // 32}"
            write(root, f"{ib}/ports/1/rate", "400 Gb/sec (4X NDR)")
            write(root, f"{ib}/ports/1/link_layer", "InfiniBand")
            os.symlink(f"../../../bus/pci/devices/{addr}", root / ib / "device")
    return root


def row(name: str, stats: dict[str, float], note: str = "") -> str:
    return f"| {name} | {stats['p50_ms']:.2f} | {stats['p99_ms']:.2f} | {int(stats['runs'])} | {note} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (a few seconds)")
    parser.add_argument("--runs", type=int, default=None, help="runs per row (default 200, --quick 20)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    runs = args.runs or (20 if args.quick else 200)
    imports, first_calls = fresh_process_runs(max(5, runs // 4) if args.quick else runs)
    same_process = time_ms(lambda: SysfsTopologyDetector().detect(), runs * 5)
    with tempfile.TemporaryDirectory() as tmp:
        root = str(big_tree(Path(tmp)))
        big = time_ms(lambda: SysfsTopologyDetector(root).detect(), runs)
    lscpu = (
        time_ms(lambda: subprocess.run(["lscpu"], capture_output=True, check=True), runs)
        if shutil.which("lscpu")
        else []
    )
    cpu = SysfsTopologyDetector().detect().cpu
    result = {
        "benchmark": "topology detect",
        "quick": args.quick,
        "cpu": f"{cpu.model if cpu else platform.processor()} ({cpu.threads if cpu else os.cpu_count()} CPUs)",
        "python": platform.python_version(),
        "first_call_fresh_process": summary(first_calls),
        "import_fresh_process": summary(imports),
        "fresh_detector_same_process": summary(same_process),
        "fake_2x96_core_tree": summary(big),
        "lscpu": summary(lscpu) if lscpu else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_detect.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"Cold `SysfsTopologyDetector().detect()` on {result['cpu']}, Python {result['python']}"
        + (" (--quick)" if args.quick else ""),
        "",
        "| what | p50 ms | p99 ms | runs | note |",
        "|---|---:|---:|---:|---|",
        row("first call, fresh process", result["first_call_fresh_process"], "target: p50 < 10, p99 < 50"),
        row(
            "import sagellm.topology, fresh process",
            result["import_fresh_process"],
            "once per process, not part of detect()",
        ),
        row("fresh detector, same process", result["fresh_detector_same_process"]),
        row(
            "2 x 96-core fake tree (384 threads, 8 NUMA, 256 PCI)",
            result["fake_2x96_core_tree"],
            "tmpfs-backed files, not sysfs",
        ),
    ]
    if lscpu:
        lines.append(row("lscpu (peer, one subprocess)", result["lscpu"]))
    (args.out / "bench_detect.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
