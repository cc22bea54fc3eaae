"""The public fine-tuning loop: LoRA on saved conversations lowers the loss, and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codi2_sdk import Conversation, Image, assistant
from codi2_sdk.model import LoraSpec
from codi2_sdk.testing import ScriptedBackend
from codi2_sdk.train import TrainingLog, examples_from_conversation, finetune


def _saved_conversation(tmp_path: Path, image: Image) -> Path:
    conv = Conversation(backend=ScriptedBackend([assistant("a red square", image), assistant("blue")]), system="hi")
    conv.add_example(inputs="x", outputs=image)
    conv.send("draw a red square")
    conv.send("make it blue")
    return conv.save(tmp_path / "conv.json")


def test_examples_from_a_saved_conversation(tmp_path: Path, image: Image) -> None:
    conv = Conversation.load(_saved_conversation(tmp_path, image))
    examples = examples_from_conversation(conv)
    assert len(examples) == 2
    assert examples[1].answer.text == "blue" and [m.role for m in examples[1].messages] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    assert examples[0].examples == conv.examples


def test_lora_finetune_lowers_the_loss_and_trains_only_the_adapter(tmp_path: Path, image: Image) -> None:
    from model_fixtures import tiny_model

    model = tiny_model(seed=3)
    data = examples_from_conversation(Conversation.load(_saved_conversation(tmp_path, image)))
    frozen = {n: p.detach().clone() for n, p in model.llm.named_parameters()}
    before = float(model(data).loss.detach())
    logs = finetune(model, data, steps=30, batch_size=2, lr=5e-3, lora=LoraSpec(r=4), progress=False, log_every=5)
    assert model.has_lora and logs[-1].step == 30
    assert float(model(data).loss.detach()) < 0.7 * before
    base = model.llm.get_base_model()
    for name, param in base.named_parameters():
        original = frozen.get(name.replace(".base_layer", ""))
        if original is not None and "lora_" not in name:
            assert torch.equal(param, original), name  # the LLM's own weights did not move


def test_finetune_resumes_from_its_checkpoint(tmp_path: Path, image: Image) -> None:
    from model_fixtures import tiny_model

    data = examples_from_conversation(Conversation.load(_saved_conversation(tmp_path, image)))
    settings = {"steps": 6, "batch_size": 2, "lora": None, "progress": False, "seed": 1}
    straight = tiny_model(seed=4)
    finetune(straight, data, **settings)

    def stop_at_step_3(entry: TrainingLog) -> None:
        if entry.step == 3:
            raise KeyboardInterrupt

    folder = tmp_path / "state"
    with pytest.raises(KeyboardInterrupt):
        finetune(
            tiny_model(seed=4),
            data,
            **settings,
            checkpoint_dir=folder,
            checkpoint_every=3,
            log=stop_at_step_3,
            log_every=1,
        )
    resumed = tiny_model(seed=4)  # a fresh process would start from scratch weights, then load the state
    logs = finetune(resumed, data, **settings, checkpoint_dir=folder, checkpoint_every=3, log_every=1)
    assert [entry.step for entry in logs] == [4, 5, 6]
    for (name, a), b in zip(straight.llm.named_parameters(), resumed.llm.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


def test_a_run_that_cannot_train_is_refused_before_the_model_changes(tmp_path: Path, image: Image) -> None:
    from model_fixtures import tiny_model

    from codi2_sdk import InvalidRequestError
    from codi2_sdk.train.align import align_decoders, align_llm

    conv = Conversation.load(_saved_conversation(tmp_path, image))
    data = examples_from_conversation(conv)
    model = tiny_model(seed=3)
    assert not model.has_lora
    for data_given, settings, message in [
        ([], {}, r"data is empty: there is nothing to train on \(examples_from_conversation"),
        (examples_from_conversation(Conversation()), {}, "data is empty"),  # a conversation with no answers
        (conv, {}, "data must be a list of TrainingExample, not Conversation"),
        (["draw a red square"], {}, r"data\[0\] is a str, not a TrainingExample"),
        (data, {"steps": 0}, "steps must be a whole number of at least 1, not 0"),
        (data, {"batch_size": 0}, "batch_size must be"),
        (data, {"lr": float("nan")}, "lr must be a positive number"),
        (data, {"gradient_accumulation_steps": 0}, "gradient_accumulation_steps must be a whole number"),
    ]:
        with pytest.raises(InvalidRequestError, match=message):
            finetune(model, data_given, **{"steps": 1, "lora": LoraSpec(r=4), **settings})
    assert not model.has_lora  # no adapter was added by the refused runs
    with pytest.raises(InvalidRequestError, match=r"data\[0\] is a TrainingExample, not a CaptionedMedium"):
        align_decoders(model, data, steps=1)
    with pytest.raises(InvalidRequestError, match=r"data is empty.*load_manifest"):
        align_llm(model, [], steps=1)
    assert not model.has_lora


def test_a_step_whose_loss_is_not_finite_is_skipped_and_a_run_of_them_stops(tmp_path: Path, caplog) -> None:
    """A NaN or infinite loss (bf16 overflow, a bad record) never reaches the weights or the saved state: the step is
    skipped with a warning, and ten in a row stop the run with the advice to lower the learning rate."""
    import random

    from codi2_sdk import ModelError
    from codi2_sdk.train import train_loop
    from codi2_sdk.train.loop import MAX_NONFINITE_STEPS

    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 1)
    x = torch.randn(8, 4)

    def step(number: int, rng: random.Random, module: torch.nn.Module) -> torch.Tensor:
        loss = module(x).pow(2).mean()
        return loss * float("nan") if number in (2, 3) else loss

    logs = train_loop(layer, step, steps=6, lr=0.1, rng=random.Random(0), log_every=1)
    assert [e.step for e in logs] == [1, 2, 3, 4, 5, 6] and all(torch.isfinite(p).all() for p in layer.parameters())
    for line in (logs[2].to_json(stage="test"), TrainingLog(3, float("nan"), float("inf"), 0.0, 0.1, 1.0).to_json()):
        assert "NaN" not in line and "Infinity" not in line  # not JSON: jq and JavaScript refuse them
        assert json.loads(line)["loss"] is None  # a skipped step's NaN
    assert [r.getMessage() for r in caplog.records if "not finite" in r.getMessage()] == [
        "step 3: the loss or its gradients are not finite; the step is skipped",
        "step 4: the loss or its gradients are not finite; the step is skipped",
    ]

    saved = tmp_path / "state.pt"
    train_loop(layer, step, steps=2, lr=0.1, rng=random.Random(0), state_path=saved)  # a good state, saved
    good = {k: v.clone() for k, v in layer.state_dict().items()}

    def diverged(number: int, rng: random.Random, module: torch.nn.Module) -> torch.Tensor:
        return module(x).sum() * float("inf")

    with pytest.raises(ModelError, match=f"not finite for {MAX_NONFINITE_STEPS} steps in a row.*lower the learning"):
        train_loop(layer, diverged, steps=200, lr=0.1, rng=random.Random(0), state_path=tmp_path / "more.pt")
    assert all(torch.equal(layer.state_dict()[k], v) for k, v in good.items())  # the weights are as they were
    assert not (tmp_path / "more.pt").exists()  # nothing non-finite was saved


def test_gradient_accumulation_makes_the_update_of_one_larger_batch() -> None:
    """Two batches of 2 with accumulation update the weights as one batch of the same 4 rows does: a run on fewer
    or smaller GPUs reaches the recipe's batch."""
    import random

    from codi2_sdk.train import train_loop

    rows, targets = torch.randn(64, 4), torch.randn(64, 1)

    def draw(size: int):
        def step(number: int, rng: random.Random, module: torch.nn.Module) -> torch.Tensor:
            picked = [rng.randrange(64) for _ in range(size)]
            return (module(rows[picked]) - targets[picked]).pow(2).mean()

        return step

    torch.manual_seed(0)
    trained = [torch.cat([p.detach().flatten() for p in torch.nn.Linear(4, 1).parameters()])]  # where both start
    for size, accumulate in ((4, 1), (2, 2)):
        torch.manual_seed(0)
        layer = torch.nn.Linear(4, 1)
        train_loop(layer, draw(size), steps=5, lr=0.05, rng=random.Random(1), gradient_accumulation_steps=accumulate)
        trained.append(torch.cat([p.detach().flatten() for p in layer.parameters()]))
    assert torch.allclose(trained[1], trained[2], atol=1e-6) and not torch.allclose(trained[0], trained[1], atol=1e-3)


def test_held_out_losses_are_logged_and_change_nothing_the_run_trains(tmp_path: Path, image: Image) -> None:
    """``finetune(eval_data=...)`` reads the held-out examples every ``eval_every`` steps and after the last, in eval
    mode and without gradients: the figures are logged with those steps, and the weights trained (with dropout on)
    are bit for bit those of the same run without them."""
    from model_fixtures import tiny_model

    from codi2_sdk import InvalidRequestError

    data = examples_from_conversation(Conversation.load(_saved_conversation(tmp_path, image)))
    settings = {"steps": 5, "batch_size": 2, "lr": 5e-3, "lora": LoraSpec(r=4, dropout=0.2), "seed": 2}
    settings |= {"progress": False, "log_every": 10}
    plain, watched = tiny_model(seed=3), tiny_model(seed=3)
    finetune(plain, data, **settings)
    logs = finetune(watched, data, eval_data=data, eval_every=2, **settings)
    assert [(e.step, sorted(e.held_out)) for e in logs] == [
        (s, ["feature_loss", "loss", "text_loss"]) for s in (2, 4, 5)
    ]
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), watched.parameters(), strict=True))
    with torch.no_grad():  # one batch of both examples: the figure is their loss for the weights after the last step
        assert logs[-1].held_out["loss"] == pytest.approx(float(watched(data).loss), rel=1e-5)
    assert logs[0].held_out["loss"] > logs[-1].held_out["loss"]  # trained on the same examples

    for eval_data, eval_every, message in [
        ([], 10, "eval_data is empty: there is nothing to evaluate on"),
        ([data[0].answer], 10, r"eval_data\[0\] is a Message, not a TrainingExample"),
        (data, 0, "eval_every must be a whole number of at least 1, not 0"),
    ]:
        model = tiny_model(seed=3)
        with pytest.raises(InvalidRequestError, match=message):
            finetune(model, data, steps=1, lora=LoraSpec(r=4), eval_data=eval_data, eval_every=eval_every)
        assert not model.has_lora


def test_held_out_figures_weigh_each_item_once_and_name_each_group() -> None:
    from codi2_sdk.train.loop import held_out_evaluation

    def loss_of(scale: float, batch: list[float]) -> dict[str, torch.Tensor]:
        return {"loss": torch.tensor(batch).mean() * scale}

    evaluation = held_out_evaluation({"image": [1.0, 2.0, 3.0], "audio": [10.0], "video": []}, loss_of, batch_size=2)
    assert evaluation.figures(1.0) == pytest.approx({"loss": 4.0, "loss_audio": 10.0, "loss_image": 2.0})
    assert held_out_evaluation({"image": [1.0, 3.0]}, loss_of, batch_size=1).figures(2.0) == {"loss": 4.0}


def test_an_example_the_model_cannot_read_is_refused_before_training(tmp_path: Path, image: Image) -> None:
    """A word outside codi2-mini's closed vocabulary is named with its example before any step, not when a batch
    draws it (and as the library's error, not a raw ``ValueError``)."""
    import dataclasses

    from codi2_sdk import InvalidRequestError
    from codi2_sdk.model import CoDi2Model

    model = CoDi2Model.from_pretrained("codi2-mini")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = examples_from_conversation(Conversation.load(_saved_conversation(tmp_path, image)))
    readable = [dataclasses.replace(ex, messages=ex.messages[1:], examples=None) for ex in data]  # words it knows
    unreadable = [readable[0], dataclasses.replace(readable[1], answer=assistant("zzyzx"))]
    for settings, says in [
        (
            {"data": unreadable},
            r"^data\[1\]: the model does not know the words 'zzyzx'\. It understands prompts like",
        ),
        (
            {"data": readable[:1], "eval_data": unreadable},
            r"^eval_data\[1\]: the model does not know the words 'zzyzx'",
        ),
    ]:
        with pytest.raises(InvalidRequestError, match=says):
            finetune(model, steps=1, progress=False, **settings)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
