#!/usr/bin/env python
"""How long ``import codi2_sdk`` takes in a fresh interpreter, beside ``import pydantic`` (its floor), in one run.

    python tools/bench/import_time.py [--repeats 15]

Media libraries (numpy, Pillow, soundfile, PyAV), the HTTP client and asyncio are imported where they are
first used, and validation schemas are built on a model's first use, so the import pays for the SDK's own
modules and pydantic only. Median of ``--repeats`` fresh interpreters each. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def seconds(module: str, repeats: int) -> float:
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(repeats)
    ]
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    sdk, floor = seconds("codi2_sdk", args.repeats), seconds("pydantic", args.repeats)
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, codi2_sdk; print(sorted({'numpy', 'PIL', 'soundfile', 'httpx', 'torch', 'asyncio'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(
        f"import codi2_sdk {sdk * 1000:.0f} ms (target <= 150 ms); import pydantic {floor * 1000:.0f} ms; ratio {sdk / floor:.2f}"
    )
    print(f"heavy modules loaded by the import: {heavy}")


if __name__ == "__main__":
    main()
