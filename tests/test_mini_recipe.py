"""codi2-mini's recipe is one table: the order of its runs, the docs' training table and the rebuild all come
from it (tools/mini_recipe/recipe.py)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from mini_recipe.places import Places  # noqa: E402
from mini_recipe.recipe import RECIPE, Resume, Stage, docs_table, runs  # noqa: E402


def test_the_docs_training_table_is_the_recipes() -> None:
    assert docs_table() in (ROOT / "docs" / "mini.md").read_text()


def test_every_stage_runs_after_the_stages_it_needs_and_resumes_follow_their_stage() -> None:
    order = runs()
    seen: list[str] = []
    for run in order:
        assert all(need in seen for need in run.stage.needs), (run.stage.name, run.stage.needs)
        seen.append(run.stage.name)
    assert len(order) == len(RECIPE) + sum(len(s.resumes) for s in RECIPE)
    marks = [run.command() for run in order if run.stage.name in ("unet-marks", "llm-subjects")]
    assert marks[-2:] == ["python tools/train_mini.py llm-subjects --threads 2",
                          "python tools/train_mini.py unet-marks --steps 4000 --threads 2"]  # fmt: skip
    for entry in RECIPE:  # each stage's code takes the places, its steps, its learning rate and the log
        assert list(inspect.signature(entry.run).parameters)[:4] == ["at", "steps", "lr", "log"], entry.name


def test_a_recipe_that_runs_a_stage_before_what_it_needs_is_refused(monkeypatch) -> None:
    import mini_recipe.recipe as recipe

    first, second = RECIPE[0], RECIPE[3]
    monkeypatch.setattr(recipe, "RECIPE", (second, first))
    with pytest.raises(ValueError, match="needs"):
        recipe.runs()
    lost = Stage(**{**first.__dict__, "resumes": (Resume(900, after="no-such-stage"),)})
    monkeypatch.setattr(recipe, "RECIPE", (lost,))
    with pytest.raises(ValueError, match="never runs"):
        recipe.runs()


def test_the_command_lists_the_recipes_runs_and_is_short() -> None:
    script = ROOT / "tools" / "train_mini.py"
    listed = subprocess.run([sys.executable, str(script), "--list"], capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines() == [run.command() for run in runs()]
    assert len(script.read_text().splitlines()) < 200


def test_places_default_to_the_package_weights_and_derive_the_logs() -> None:
    at = Places()
    assert at.out == ROOT / "codi2_sdk" / "weights" / "codi2-mini" and at.logs == at.out / "training"
    assert at.first_config.decoders["image"] != at.config.decoders["image"]  # the 8x8x16 decoder came first
