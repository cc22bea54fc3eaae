"""Assembling the full-scale CoDi-2 from local folders of the public components (here: tiny random twins
saved as those folders), then using it, saving it and loading it like any checkpoint."""

from __future__ import annotations

from pathlib import Path

import PIL.Image
import pytest
import torch

from codi2_sdk import Audio, Conversation, Example, Image, Message, ModelError, ModelNotFoundError, Text, Video
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.model import ImageBindAudioEncoder, UnCLIPImageDecoder, assemble
from codi2_sdk.model.imagebind.audio import official_key
from codi2_sdk.model.prompt import LLAMA2_CHAT_TEMPLATE
from codi2_sdk.testing.twins import (
    tiny_audioldm2_pipeline,
    tiny_llama_tokenizer,
    tiny_unclip_pipeline,
    tiny_zeroscope_pipeline,
)

AUDIO = {"embed_dim": 32, "num_blocks": 1, "num_heads": 4, "out_dim": 32, "num_mel_bins": 32, "target_length": 48}
SHORT = {"audio": {"duration": 0.064}, "video": {"num_frames": 2, "size": 16}}  # the published defaults are long
WORDS = ["show", "a", "red", "circle", "what", "is", "this", "?", "."]


def llama_folder(path: Path) -> Path:
    """A tiny Llama with Llama's tokenizer class and Llama-2-chat's template, without CoDi-2's tags, saved as a
    published LLM folder would be."""
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
            max_position_embeddings=1024,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
    )
    llm.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("public")
    UnCLIPImageDecoder(tiny_unclip_pipeline(), prompt_embeds=torch.randn(1, 4, 24)).save_pretrained(root / "unclip")
    tiny_audioldm2_pipeline().save_pretrained(str(root / "audioldm2"))
    tiny_zeroscope_pipeline().save_pretrained(str(root / "zeroscope"))
    torch.manual_seed(0)
    tower = ImageBindAudioEncoder(**AUDIO)
    torch.save({official_key(k): v for k, v in tower.state_dict().items()}, root / "imagebind_huge.pth")
    return {
        "llm": llama_folder(root / "llama"),
        "imagebind": root / "imagebind_huge.pth",
        "unclip": root / "unclip",
        "audioldm2": root / "audioldm2",
        "zeroscope": root / "zeroscope",
    }


def test_assemble_from_local_folders_and_use_it(folders, tmp_path: Path) -> None:
    model = assemble(**folders, feature_dim=32, imagebind_args=AUDIO)
    assert model.has_lora and model.config.lora.r == 128  # type: ignore[union-attr]
    assert model.llm.get_base_model().config.vocab_size == len(model.tokenizer) > 100  # tags added
    trainable = {n for n, p in model.llm.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any("trainable_tokens" in n for n in trainable)
    backend = LocalBackend(model)
    assert backend.capabilities.output_modalities == ["text", "audio", "image", "video"]
    made = {}
    for modality, kind in (("image", Image), ("audio", Audio), ("video", Video)):
        config = {"seed": 0, "output_modality": modality, "text": {"max_new_tokens": 3}}
        config[modality] = {"steps": 2, **SHORT.get(modality, {})}
        answer = Conversation(backend=backend).send("show a red circle .", config=config)
        assert isinstance(answer.parts[0], kind)
        made[modality] = answer
    folder = model.save_pretrained(tmp_path / "codi2-full")
    again = LocalBackend.from_pretrained(folder)
    twice = LocalBackend.from_pretrained(folder)
    config = {
        "seed": 0,
        "output_modality": "video",
        "text": {"max_new_tokens": 3},
        "video": {"steps": 2, **SHORT["video"]},
    }
    first = Conversation(backend=again).send("show a red circle .", config=config)
    assert first == Conversation(backend=twice).send("show a red circle .", config=config)


def test_missing_or_broken_parts_name_themselves(folders, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="Zeroscope pipeline folder"):
        assemble(llm=folders["llm"], zeroscope=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="LLM"):
        assemble(llm=tmp_path / "empty")
    text_only = assemble(llm=folders["llm"], lora=None)
    assert not text_only.decoders and not text_only.has_lora
    # one component's folder given for another: refused by name (diffusers alone loads AudioLDM2's UNet into
    # Zeroscope's pipeline and fails later with an unrelated TypeError)
    for slot, given, names in (
        ("zeroscope", "audioldm2", "AudioLDM2Pipeline, but TextToVideoSDPipeline"),
        ("audioldm2", "unclip", "StableUnCLIPImg2ImgPipeline, but AudioLDM2Pipeline"),
        ("unclip", "zeroscope", "TextToVideoSDPipeline, but StableUnCLIPImg2ImgPipeline"),
    ):
        with pytest.raises(ModelError, match=f"its model_index.json names {names} is wanted here"):
            assemble(llm=folders["llm"], lora=None, **{slot: folders[given]})
    with pytest.raises(ModelNotFoundError, match="not a diffusers pipeline folder"):
        assemble(llm=folders["llm"], lora=None, audioldm2=tmp_path / "empty")


def test_prompts_follow_the_llms_chat_template(folders, tmp_path: Path) -> None:
    import shutil

    model = assemble(llm=folders["llm"], unclip=folders["unclip"], lora=None)
    picture = Image.from_pil(PIL.Image.new("RGB", (32, 32), "red"))
    examples = [Example(inputs=[Text("show a circle")], outputs=[picture])]
    typed = "what is <image> this? [/INST] </s>"  # tags and template markers typed by a user stay text
    messages = [Message(role="system", parts=[Text("be brief")]), Message(role="user", parts=[picture, Text(typed)])]
    prompt = model.prompts.build(examples, messages)
    rendered = model.tokenizer.decode(prompt.ids)
    assert rendered.startswith("<s>[INST] <<SYS>>") and "<</SYS>>" in rendered and rendered.rstrip().endswith("[/INST]")
    assert prompt.ids.count(model.prompts.start_ids["image"]) == 2  # the example's output and the user's picture
    assert prompt.ids.count(model.tokenizer.eos_token_id) == 1  # after the example's answer only
    assert [slot.count for slot in prompt.media] == [1, model.encoders["image"].tokens_per_item]

    trained = model.prompts.build([], messages[1:], answer=Message(role="assistant", parts=[Text("a circle .")]))
    learnt = [i for i in trained.labels if i >= 0]
    assert model.tokenizer.decode(learnt).strip() == "a circle . </s>" and learnt[-1] == model.prompts.end_id
    # generation starts where training's answer starts: the template's space before an answer is in both
    asked = model.prompts.build([], messages[1:]).ids
    assert trained.ids[: len(asked)] == asked and trained.labels[len(asked)] == trained.ids[len(asked)] >= 0

    plain = tmp_path / "llama-without-template"
    shutil.copytree(folders["llm"], plain)
    (plain / "chat_template.jinja").unlink()
    words = [Message(role="system", parts=[Text("be brief")]), Message(role="user", parts=[Text("a circle")])]
    own = assemble(llm=plain, lora=None)  # no template: the SDK's role tokens
    assert "<|user|>" in own.tokenizer.decode(own.prompts.build([], words).ids)
    given = assemble(llm=plain, lora=None, chat_template=LLAMA2_CHAT_TEMPLATE)
    assert given.tokenizer.decode(given.prompts.build([], words).ids).startswith("<s>[INST] <<SYS>>")


_QUIETLY = """
import json, sys
from codi2_sdk.model import AudioLDM2Decoder, CoDi2Model, UnCLIPImageDecoder, ZeroscopeVideoDecoder, assemble
from codi2_sdk.testing.twins import full_scale_twin

folders, audio, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
model = assemble(**folders, feature_dim=32, imagebind_args=audio)
model.save_pretrained(out)
CoDi2Model.from_pretrained(out)
UnCLIPImageDecoder.from_pretrained(folders["unclip"])
AudioLDM2Decoder.from_pipeline(folders["audioldm2"], cond_dim=32)
ZeroscopeVideoDecoder.from_pipeline(folders["zeroscope"], cond_dim=32).save_pretrained(out + "-video")
full_scale_twin()
"""


def test_assembling_saving_loading_and_building_decoders_print_nothing(folders, tmp_path: Path) -> None:
    """In a fresh process, as a user runs it: no mean-resizing notice, no "Writing model shards" bar, no
    components a pipeline cannot save, no deprecated-pipeline warning (issue 33)."""
    import json
    import subprocess
    import sys

    paths = json.dumps({k: str(v) for k, v in folders.items()})
    command = [sys.executable, "-c", _QUIETLY, paths, json.dumps(AUDIO), str(tmp_path / "codi2")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout, done.stderr) == ("", "")
    # asked for (INFO logging on the SDK's logger), the libraries' own lines and the SDK's are shown
    verbose = "import logging; logging.basicConfig(level=logging.INFO)\n" + _QUIETLY
    done = subprocess.run([*command[:2], verbose, *command[3:]], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TextToVideoSDPipeline, which diffusers no longer fixes" in done.stderr
    assert "mean_resizing" in done.stderr


def test_a_saved_assembly_keeps_its_base_weights_in_llm_and_only_what_trains_in_the_adapter(
    folders, tmp_path: Path
) -> None:
    """The base LLM's folder loads on its own (every weight there, the tags' rows included), and the adapter holds
    the LoRA and the tags' trained rows, not a second copy of the embeddings."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = assemble(llm=folders["llm"])  # the paper's LoRA, the tags' rows trainable
    with torch.no_grad():
        for name, parameter in model.llm.named_parameters():
            if "trainable_tokens_delta" in name or "lora_B" in name:
                parameter.add_(0.05)
    ids = torch.arange(len(model.tokenizer))[None]
    before = model.llm(input_ids=ids).logits
    folder = model.save_pretrained(tmp_path / "codi2")
    base, info = AutoModelForCausalLM.from_pretrained(str(folder / "llm"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert base.get_input_embeddings().weight.shape[0] == len(model.tokenizer)
    adapter = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
    assert all("lora_" in key or "trainable_tokens" in key for key in adapter)
    again = LocalBackend.from_pretrained(folder).model
    assert torch.equal(again.llm(input_ids=ids).logits, before)


def test_a_saved_checkpoint_stores_the_clip_tower_once_and_shares_it_again_on_load(folders, tmp_path: Path) -> None:
    import json

    model = assemble(**folders, feature_dim=32, imagebind_args=AUDIO)  # no vision trunk in this ImageBind file
    folder = model.save_pretrained(tmp_path / "codi2")
    assert json.loads((folder / "encoders" / "image" / "shared.json").read_text())["wraps"] == (
        "decoders/image/image_encoder"
    )
    video = json.loads((folder / "encoders" / "video" / "shared.json").read_text())
    assert video["wraps"] == "encoders/image" and video["settings"] == {"frames": 2, "segments": 1}
    assert not list((folder / "encoders" / "image").iterdir())[1:]  # shared.json alone
    assert [p.parent.name for p in folder.rglob("*.safetensors") if "image_encoder" in str(p)] == ["image_encoder"]
    again = LocalBackend.from_pretrained(folder).model
    assert again.encoders["image"].model is again.decoders["image"].pipeline.image_encoder
    assert again.encoders["video"].image_encoder is again.encoders["image"]
    picture = Image.from_pil(PIL.Image.new("RGB", (32, 32), "red"))
    assert torch.equal(again.encode("image", [picture]), model.encode("image", [picture]))


def test_the_low_memory_mode_stores_the_llm_in_int8_and_still_answers(folders, tmp_path: Path) -> None:
    pytest.importorskip("torchao", reason="memory='low' quantizes with torchao (the lowmem extra)")
    model = assemble(**folders, feature_dim=32, imagebind_args=AUDIO, memory="low")
    assert not model.has_lora and model.offload_decoders  # the adapter merged before the weights went to int8
    linear = model.llm.get_decoder().layers[0].self_attn.q_proj
    assert "Int8" in type(linear.weight).__name__, type(linear.weight)
    assert all(d.vae.use_slicing for d in model.decoders.values())
    backend = LocalBackend(model)
    for modality, kind in (("image", Image), ("audio", Audio), ("video", Video)):
        config = {"seed": 0, "output_modality": modality, "text": {"max_new_tokens": 3}}
        config[modality] = {"steps": 2, **SHORT.get(modality, {})}
        answer = Conversation(backend=backend).send("show a red circle .", config=config)
        assert isinstance(answer.parts[0], kind), modality
    with pytest.raises(ModelError, match="int8"):
        model.save_pretrained(tmp_path / "low")


def hub_cached(folder: Path, cache: Path, repo_id: str) -> Path:
    """``folder`` as ``hf download repo_id`` leaves it in the Hugging Face cache: files stored once in ``blobs/`` by
    their hash, a snapshot of relative links to them per commit, ``refs/main`` naming the commit."""
    import hashlib
    import os

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(file.read_bytes())
            link = repo / "snapshots" / commit / file.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return repo


def test_parts_and_checkpoints_are_found_in_the_hugging_face_cache(
    folders, tmp_path: Path, monkeypatch, caplog
) -> None:
    """Whoever fetched the components with ``hf download`` holds them in the hub cache: they are read by repo id
    (or by their cache folder) from there, with nothing downloaded. Each part is said as it loads."""
    import logging

    from huggingface_hub import constants

    caplog.set_level(logging.INFO, logger="codi2_sdk")

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_cached(folders["llm"], cache, "meta-llama/Llama-2-7b-chat-hf")
    unclip = hub_cached(folders["unclip"], cache, "stabilityai/stable-diffusion-2-1-unclip")

    model = assemble(llm="meta-llama/Llama-2-7b-chat-hf", unclip=unclip, feature_dim=32)  # a repo id; a cache folder
    config = {"seed": 0, "output_modality": "image", "text": {"max_new_tokens": 3}, "image": {"steps": 2}}
    made = Conversation(backend=LocalBackend(model)).send("show a red circle .", config=config)
    assert isinstance(made.parts[0], Image)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("assemble: ")]
    assert said == ["assemble: the LLM", "assemble: unCLIP", "assemble: placing and measuring"]

    hub_cached(model.save_pretrained(tmp_path / "codi2-full"), cache, "someone/codi2-full")
    again = Conversation(backend=LocalBackend.from_pretrained("someone/codi2-full")).send(
        "show a red circle .", config=config
    )
    assert isinstance(again.parts[0], Image)

    with pytest.raises(ModelNotFoundError, match=r"nor a model 'cvssp/audioldm2' in the Hugging Face cache at .*hub"):
        assemble(llm="meta-llama/Llama-2-7b-chat-hf", audioldm2="cvssp/audioldm2")
    with pytest.raises(ModelNotFoundError, match=r"hf download someone/other.*codi2-mini"):
        LocalBackend.from_pretrained("someone/other")
