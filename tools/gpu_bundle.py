#!/usr/bin/env python
"""Wheels for running ``tools/gpu_check.py --sdk`` on a GPU machine that cannot reach a package index.

Such a machine's image holds a CUDA PyTorch and much around it (accelerate, numpy, pillow, safetensors, tokenizers,
peft, ...) but not the rest of what the SDK's model path imports, nor a transformers as new as it needs (older
releases ignore the ``cache`` keyword, see ``codi2_sdk/model/_libraries.py``). This downloads, for the machine's
Python on manylinux x86-64, the wheels of :data:`PACKAGES` at the versions installed here (those the tests ran
with), and splits them into parts of at most ``--part-mb`` (a machine reached through a size-limited transfer takes
one part per call)::

    python tools/gpu_bundle.py --out .whl                  # .whl/1, .whl/2, ...
    python tools/gpu_bundle.py --out .whl --from-dir DIR   # pack wheels already downloaded to DIR

It prints, for each part, the command that installs it on the machine (into ``.site``; parts add up), after which
``PYTHONPATH=.site:. python3 tools/gpu_check.py --sdk ...`` runs. The list was found by installing these wheels
beside a copy of such an image's packages (transformers 5.17, huggingface_hub 1.33, peft 0.21, accelerate 1.15; no
pydantic, diffusers, av, greenlet or torchao) and running ``gpu_check.py --sdk --tiny --all-modes`` there.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = (
    # transformers as new as the SDK needs, and what it checks or imports that such an image has too old or lacks
    "transformers",
    "huggingface_hub",
    "httpx2",
    "httpcore2",
    "truststore",
    "kernels",
    "tomlkit",
    "regex",
    # the SDK's own needs beyond torch
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_inspection",
    "diffusers",
    "greenlet",
    "av",
    "soundfile",
    "cffi",
    "pycparser",
    "soxr",
    "torchao",
)

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")  # fmt: skip

INSTALL = "python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target .site {part}/*.whl"


def pinned(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """``name==version`` of each package as installed here."""
    pins = []
    for name in packages:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            raise SystemExit(f"gpu_bundle: {name} is not installed here; pip install -e '.[all]' first") from None
    return pins


def download(pins: list[str], into: Path, python_version: str) -> None:
    """The wheels of ``pins`` (no dependencies: the list is complete) for ``python_version`` on manylinux x86-64."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               python_version, "--implementation", "cp", *platforms, "-d", str(into), *pins]  # fmt: skip
    subprocess.run(command, check=True)


def pack(wheels: list[Path], limit_bytes: int) -> list[list[Path]]:
    """The wheels in parts of at most ``limit_bytes`` each, largest first into the first part with room."""
    parts: list[list[Path]] = []
    room: list[int] = []
    for wheel in sorted(wheels, key=lambda w: w.stat().st_size, reverse=True):
        size = wheel.stat().st_size
        if size > limit_bytes:
            raise SystemExit(f"gpu_bundle: {wheel.name} alone is {size / 2**20:.1f} MiB, over --part-mb")
        index = next((i for i, left in enumerate(room) if left >= size), None)
        if index is None:
            parts.append([])
            room.append(limit_bytes)
            index = len(parts) - 1
        parts[index].append(wheel)
        room[index] -= size
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".whl"), help="where the parts go (emptied first)")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default: 3.12)")
    parser.add_argument("--part-mb", type=float, default=40.0, help="most MiB in a part (default: 40)")
    parser.add_argument("--from-dir", type=Path, default=None, help="pack the wheels in this folder, no download")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        source = args.from_dir or Path(scratch)
        if args.from_dir is None:
            download(pinned(), source, args.python_version)
        parts = pack(sorted(source.glob("*.whl")), int(args.part_mb * 2**20))
        shutil.rmtree(args.out, ignore_errors=True)
        for number, wheels in enumerate(parts, start=1):
            folder = args.out / str(number)
            folder.mkdir(parents=True)
            for wheel in wheels:
                shutil.copy2(wheel, folder / wheel.name)
            size = sum(w.stat().st_size for w in wheels) / 2**20
            print(f"{folder}: {len(wheels)} wheels, {size:.1f} MiB; install there with:")
            print(f"    {INSTALL.format(part=folder)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
