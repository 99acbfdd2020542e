"""``sagellm info``: what is installed and what the engine would run on."""

from __future__ import annotations

import argparse
import json
import platform
from importlib.metadata import distributions
from typing import Any

from sagellm.core import registry


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "info",
        help="environment, installed modules, detected device",
        description="Show the environment, the installed sageLLM packages and "
        "their implementations, the detected device and the default model.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def collect() -> dict[str, Any]:
    import torch

    from sagellm.engines.engine.device import cpu_has_fast_bf16, resolve_device, resolve_dtype
    from sagellm.engines.model.default_model import DEFAULT_MODEL_NAME, default_model_path

    packages = sorted(
        (d.metadata["Name"], d.version) for d in distributions() if str(d.metadata["Name"]).startswith("sagellm")
    )
    device = resolve_device("auto")
    try:
        model = str(default_model_path())
    except Exception as exc:  # reported, not raised: info must always print
        model = f"not installed ({exc})"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "device": str(device),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "auto_dtype": str(resolve_dtype("auto", device)).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "packages": dict(packages),
        # Every module slot (config section), with what is installed for it; '-' is none.
        "implementations": {group.section: sorted(registry.available(kind)) for kind, group in registry.GROUPS.items()},
        "default_model": {"name": DEFAULT_MODEL_NAME, "path": model},
    }


def run(args: argparse.Namespace) -> int:
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    width = max(len(k) for k in data)
    for key, value in data.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for sub, item in value.items():
                shown = ", ".join(item) if isinstance(item, list) else item
                print(f"  {sub:<22} {shown or '-'}")
        else:
            print(f"{key:<{width}} {value}")
    return 0
