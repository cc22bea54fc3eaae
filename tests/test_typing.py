"""A user's script that uses the SDK's public types type-checks under ``mypy --strict`` without the pydantic plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
from codi2_sdk import Conversation, GenerationConfig, Image, ImageConfig, Message, samples

config = GenerationConfig(seed=0, output_modality="image", image={"steps": 25})
small = ImageConfig(steps=10)
conv = Conversation(config=config)
picture: Image = samples.picture("a small red circle on the left")
answer: Message = conv.send(picture, "make it blue.", config={"image": {"steps": 10}})
first: Image = answer.images[0]
steps: int | None = GenerationConfig(image=small).image.steps
print(first.width, small.steps, steps)
"""


def test_a_users_script_type_checks_strictly_without_the_pydantic_plugin(tmp_path: Path) -> None:
    (tmp_path / "user_script.py").write_text(SCRIPT)
    (tmp_path / "mypy.ini").write_text("[mypy]\\nstrict = True\\n")  # no plugins
    done = subprocess.run(
        # the package as an installed one is seen: its own modules' findings are not the user's (follow silently)
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            "mypy.ini",
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "cache"),
            "user_script.py",
        ],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
