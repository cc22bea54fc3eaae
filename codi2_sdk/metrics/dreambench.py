"""DreamBench's data, laid out in a local folder (the user supplies it; nothing is downloaded)::

    dreambench/
      <subject>/                      one folder per subject (e.g. "dog2", "backpack")
        *.jpg | *.png                 the subject's reference pictures
        prompts.txt                   one prompt per line; "{}" stands for the subject ("a {} on the beach")

The original release keeps all prompts in one file; write each subject's lines (with its class noun, e.g.
"a dog", in place of "{}" when scoring CLIP-T) into its folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..content import Image

__all__ = ["DreamBenchSubject", "load_dreambench"]


@dataclass
class DreamBenchSubject:
    """One subject: its reference pictures and its prompts."""

    name: str
    references: list[Image]
    prompts: list[str]


def load_dreambench(root: str | Path) -> list[DreamBenchSubject]:
    """Read every subject folder under ``root`` (sorted by name).

    Raises:
        FileNotFoundError: ``root`` has no subject folder with pictures and a ``prompts.txt``.
    """
    subjects = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        pictures = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        prompts_file = folder / "prompts.txt"
        if not pictures or not prompts_file.exists():
            continue
        prompts = [line.strip() for line in prompts_file.read_text().splitlines() if line.strip()]
        subjects.append(DreamBenchSubject(folder.name, [Image.open(p) for p in pictures], prompts))
    if not subjects:
        raise FileNotFoundError(f"no DreamBench subject folders (pictures and prompts.txt) under {root}")
    return subjects
