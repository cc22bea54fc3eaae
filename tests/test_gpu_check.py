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


def test_the_sdks_own_path_runs_at_tiny_sizes_and_reports_json(tmp_path: Path) -> None:
    """``--sdk``: folders built as published, ``assemble``, a Conversation turn per medium, both alignment stages.
    A call past its deadline skips every part but keeps the folders it built in ``--scratch`` for the next call."""
    hurried = run("--sdk", "--tiny", "--device", "cpu", "--scratch", str(tmp_path), "--deadline-s", "0")
    assert hurried.returncode == 0, hurried.stderr[-3000:]
    lines = [json.loads(line) for line in hurried.stdout.splitlines() if line.startswith("{")]
    assert any("built_folders_s" in line for line in lines) and (tmp_path / "llm" / "config.json").exists()
    assert [line["part"] for line in lines if "part" in line] == ["sdk_assemble"]
    assert _parts(hurried.stdout)["sdk_assemble"]["skipped"] == "past --deadline-s 0"

    done = run(
        "--sdk", "--tiny", "--device", "cpu", "--train-steps", "3", "--train-batch", "8", "--decode-tokens", "4",
        "--scratch", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert any(line.get("kept_folders") for line in lines) and not any("built_folders_s" in line for line in lines)
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
    # at the recipe's batch per GPU (8 for the LLM's stages, 32 for the decoders'), its GPU-hours are projected
    hours = parts["sdk_align_llm"]["recipe_gpu_hours"]
    assert (
        set(hours) == {"2. LLM alignment", "3. instructions"} and hours["2. LLM alignment"] >= hours["3. instructions"]
    )
    assert "recipe_gpu_hours" not in parts["sdk_align_decoders"]


def test_all_modes_run_the_default_low_memory_and_fast_passes_over_one_folder_build() -> None:
    """``--sdk --all-modes``: the one call a lent GPU's few minutes allow, run here first at tiny sizes so that those
    minutes are not spent finding a bug. The passes come in the order of what matters most (the fast pass's
    compiles take longest), so a deadline cuts the least."""
    done = run("--sdk", "--tiny", "--device", "cpu", "--decode-tokens", "4", "--train-steps", "2", "--all-modes")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sum("built_folders_s" in line for line in lines) == 1
    by_mode = {(line.get("mode"), line["part"]): line for line in lines if "part" in line}
    modes = [line["mode"] for line in lines if "mode" in line]
    assert sorted(set(modes), key=modes.index) == ["default", "low", "fast"]
    assert by_mode["default", "sdk_image"]["ratio"] > 0 and ("default", "sdk_align_llm") in by_mode
    assert by_mode["fast", "sdk_text_compiled"]["ms_per_token"] > 0
    fast = by_mode["fast", "sdk_fast_audio"]
    assert fast["compile"] is True and fast["channels_last"] is True and "ratio" not in fast  # no bare call again
    assert by_mode["fast", "sdk_audio_fast_over_plain"]["ratio"] > 0 and ("fast", "sdk_image") not in by_mode
    assert by_mode["low", "sdk_assemble"]["memory"] == "low" and by_mode["low", "sdk_video"]["s_per_turn"] > 0
    assert ("low", "sdk_align_llm") not in by_mode  # a low-memory model is for inference
