"""A model assembled from a pretrained LLM learns to open a medium by itself.

Llama-2-7b's output head is its own matrix (untied from the input embeddings). The media tags added to its
vocabulary start, after mean resizing, near the mean of the old rows in both; the tags' rows of the head train
beside the LoRA, so that a finetuned model can write a tag first. This test reproduces that checkpoint at tiny
size: a Llama folder with an untied head and Llama-2's chat template, pre-trained on text first (so its old rows are
not random), assembled, LoRA-finetuned on "draw ..." -> picture conversations, then asked.

It found (2026-12-07) that generation prompts ended at Llama-2's ``[/INST]`` while training put the template's
space before each answer: the first answer token was learnt after a space that generation never gave, so the
finetuned model answered "draw ..." in words (greedy first token "a" at 0.67, the tag at 0.02; at one thread on one
machine it happened to pass). Generation prompts now end where training's answers begin (the tag at 0.98).
"""

from __future__ import annotations

import random
from pathlib import Path

import PIL.Image
import pytest
import torch

from codi2_sdk import Conversation, Image, Message, Text, assistant, user
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.model import TrainingExample, UnCLIPImageDecoder, assemble
from codi2_sdk.testing.twins import tiny_llama_tokenizer, tiny_unclip_pipeline
from codi2_sdk.train import finetune

COLOURS = ["red", "blue", "green", "yellow"]
SHAPES = ["circle", "square"]
WORDS = ["draw", "what", "is", "this", "a", "it", "the", *COLOURS, *SHAPES, "?", "."]


def pretrained_llama(path: Path) -> Path:
    """A tiny Llama with an untied head, trained for a while on text in its own chat template, saved as a
    published LLM folder is."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_llama_tokenizer(WORDS)
    torch.manual_seed(0)
    llm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
            tie_word_embeddings=False,
        )
    )
    rng = random.Random(0)
    texts = []
    for _ in range(64):
        colour, shape = rng.choice(COLOURS), rng.choice(SHAPES)
        chat = [
            {"role": "user", "content": "what is this ?"},
            {"role": "assistant", "content": f"a {colour} {shape} ."},
        ]
        texts.append(tokenizer.apply_chat_template(chat, tokenize=False))
    tokenizer.pad_token = tokenizer.unk_token  # for this batch only: Llama-2's tokenizer has no pad token
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    tokenizer.pad_token = None
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(llm.parameters(), lr=3e-3)
    for _ in range(60):
        loss = llm(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 1.5  # it has learnt its text
    assert not llm.config.tie_word_embeddings and llm.lm_head.weight is not llm.model.embed_tokens.weight
    llm.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def drawings() -> list[TrainingExample]:
    found = []
    for colour in COLOURS:
        for shape in SHAPES:
            picture = PIL.Image.new("RGB", (32, 32), "white")
            box = (6, 6, 26, 26)
            draw = PIL.ImageDraw.Draw(picture)
            (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=colour)
            found.append(
                TrainingExample(
                    messages=[user(f"draw a {colour} {shape} .")], answer=assistant(Image.from_pil(picture))
                )
            )
            found.append(
                TrainingExample(
                    messages=[user(Image.from_pil(picture), "what is this ?")],
                    answer=assistant(f"a {colour} {shape} ."),
                )
            )
    return found


@pytest.fixture(scope="module")
def unclip_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("public") / "unclip"
    UnCLIPImageDecoder(tiny_unclip_pipeline(), prompt_embeds=torch.randn(1, 4, 24)).save_pretrained(folder)
    return folder


def test_after_a_lora_finetune_an_untied_llama_opens_pictures_by_itself(tmp_path: Path, unclip_folder: Path) -> None:
    import PIL.ImageDraw  # noqa: F401  (drawings() draws with it)

    model = assemble(llm=pretrained_llama(tmp_path / "llama"), unclip=unclip_folder, feature_dim=32)
    logs = finetune(model, drawings(), steps=150, batch_size=8, lr=3e-3, progress=False, log_every=10)
    assert logs[-1].text_loss < 0.5, [round(e.text_loss, 2) for e in logs]
    trained = {n for n, p in model.llm.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n or "trainable_tokens" in n for n in trained)  # a LoRA finetune
    assert any("lm_head" in n and "trainable_tokens" in n for n in trained), "the tags' head rows must train"

    backend = LocalBackend(model)
    config = {"seed": 0, "output_modality": "auto", "image": {"steps": 2}, "text": {"max_new_tokens": 8}}
    drawn = [("red", "circle"), ("blue", "square"), ("green", "circle"), ("yellow", "square")]
    made = [
        [p.type for p in Conversation(backend=backend).send(f"draw a {c} {s} .", config=config).parts] for c, s in drawn
    ]
    assert made == [["image"]] * 4, made
    start = model.prompts.start_ids["image"]
    for colour, shape in drawn:  # not by a hair: the tag is most of the first token's probability (0.98 measured)
        asked = model.prompts.build([], [user(f"draw a {colour} {shape} .")]).ids
        with torch.no_grad():
            first = model.llm(input_ids=torch.tensor([asked])).logits[0, -1].float().softmax(-1)
        assert first[start] > 0.5, (colour, shape, float(first[start]))
    asked = Conversation(backend=backend).send(
        Message(role="user", parts=[drawings()[1].messages[0].parts[0], Text("what is this ?")]).parts[0],
        "what is this ?",
        config=config,
    )
    assert [p.type for p in asked.parts] == ["text"]  # and a question about a picture still gets words


def test_the_trained_tag_rows_of_the_head_survive_saving_and_loading(tmp_path: Path, unclip_folder: Path) -> None:
    model = assemble(llm=pretrained_llama(tmp_path / "llama"), unclip=unclip_folder, feature_dim=32)
    finetune(model, drawings(), steps=20, batch_size=4, lr=3e-3, progress=False)
    ids = torch.tensor([model.tokenizer.convert_tokens_to_ids(list(model.tokenizer.get_vocab())[:40])])
    before = model.llm(input_ids=ids).logits
    again = LocalBackend.from_pretrained(model.save_pretrained(tmp_path / "codi2")).model
    assert torch.equal(again.llm(input_ids=ids).logits, before)
