"""Shared fixtures: small real media files made in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from codi2_sdk import Audio, Image


@pytest.fixture
def png_path(tmp_path: Path) -> Path:
    path = tmp_path / "square.png"
    img = PIL.Image.new("RGB", (48, 32), "white")
    img.paste((200, 30, 30), (10, 8, 30, 24))
    img.save(path)
    return path


@pytest.fixture
def wav_path(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    t = np.arange(8000) / 16000
    Audio.from_array(0.5 * np.sin(2 * np.pi * 440 * t), sample_rate=16000).save(path)
    return path


@pytest.fixture
def image(png_path: Path) -> Image:
    return Image.open(png_path)


@pytest.fixture
def audio(wav_path: Path) -> Audio:
    return Audio.open(wav_path)


@pytest.fixture(scope="session")
def tiny_model():
    from model_fixtures import tiny_model

    return tiny_model()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory):
    return tiny_model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "codi2-tiny")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--torch-threads",
        type=int,
        default=None,
        help="run every test (and the processes tests start) with this many torch CPU threads: another thread "
        "count sums in another order, as another CPU's kernels do (docs/testing.md)",
    )


def pytest_configure(config: pytest.Config) -> None:
    threads = config.getoption("--torch-threads")
    if threads is not None:
        import os

        import torch

        os.environ["OMP_NUM_THREADS"] = str(threads)  # for the servers and scripts that tests start
        torch.set_num_threads(threads)
