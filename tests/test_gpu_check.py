"""tools/gpu_check.py: its help works without a GPU, and its whole code path runs at tiny sizes on CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "gpu_check.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def _parts(stdout: str) -> dict[str, dict]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {line["part"]: line for line in lines if "part" in line}


def test_help_works_without_a_gpu() -> None:
    done = run("--help")
    assert done.returncode == 0 and "--only" in done.stdout and "llm" in done.stdout


def test_every_part_runs_at_tiny_sizes_and_reports_json() -> None:
    done = run("--tiny", "--device", "cpu")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    parts = {line["part"]: line for line in lines if "part" in line}
    assert set(parts) == {"llm", "encoders", "unclip", "audioldm2", "zeroscope"}
    assert parts["llm"]["decode_ms_per_token"] > 0 and parts["unclip"]["s_per_image"] > 0
    assert run("--only", "nothing", "--tiny").returncode == 2  # an unknown part is refused


def test_the_sdks_own_path_runs_at_tiny_sizes_and_reports_json() -> None:
    """``--sdk``: folders built as published, ``assemble``, a Conversation turn per medium, both alignment stages."""
    done = run("--sdk", "--tiny", "--device", "cpu", "--train-steps", "3", "--decode-tokens", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    parts = {line["part"]: line for line in lines if "part" in line}
    assert set(parts) == {
        "sdk_assemble",
        "sdk_text",
        "sdk_image",
        "sdk_audio",
        "sdk_video",
        "sdk_align_decoders",
        "sdk_align_llm",
    }
    assert parts["sdk_text"]["ms_per_token"] > 0 and parts["sdk_image"]["s_per_turn"] > 0
    assert all(parts[f"sdk_{m}"]["ratio"] > 0 for m in ("image", "audio", "video"))  # beside the bare pipeline
    assert parts["sdk_align_llm"]["s_per_step"] > 0 and parts["sdk_align_decoders"]["steps"] == 3


def test_the_sdks_fast_and_low_memory_modes_run_at_tiny_sizes() -> None:
    """``--sdk --memory low --channels-last --compile``: the paths a GPU run would take first, so that a lent GPU's
    minutes are not spent finding a bug here."""
    done = run("--sdk", "--tiny", "--device", "cpu", "--decode-tokens", "4", "--memory", "low", "--channels-last")
    assert done.returncode == 0, done.stderr[-3000:]
    parts = _parts(done.stdout)
    assert parts["sdk_assemble"]["memory"] == "low"
    assert {"sdk_fast_image", "sdk_fast_audio", "sdk_fast_video", "sdk_video_fast_over_plain"} <= set(parts)
    assert parts["sdk_fast_image"]["channels_last"] is True and parts["sdk_video_fast_over_plain"]["ratio"] > 0
    assert "sdk_align_llm" not in parts  # a low-memory model is for inference
    done = run("--sdk", "--tiny", "--device", "cpu", "--decode-tokens", "4", "--compile")
    assert done.returncode == 0, done.stderr[-3000:]
    parts = _parts(done.stdout)
    assert parts["sdk_text_compiled"]["ms_per_token"] > 0
