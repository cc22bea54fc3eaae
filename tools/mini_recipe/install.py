"""Building the parts a stage trains and writing them into the checkpoint folder."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from codi2_sdk.mini.tasks import (
    picture_part,
    vocabulary,
)
from codi2_sdk.model import CoDi2Config, CoDi2Model
from codi2_sdk.model.mini.decoders import AudioDecoder, ImageDecoder, VideoDecoder
from codi2_sdk.model.mini.encoders import CNNAudioEncoder, CNNImageEncoder
from codi2_sdk.model.parts import FrameVideoEncoder, build_kind
from codi2_sdk.model.prompt import build_word_tokenizer, load_tokenizer

from .data import marked_pictures, pick, train_pictures
from .places import Log, Places


def video_encoder(
    at: Places,
) -> FrameVideoEncoder:
    """codi2-mini's video encoder: the model's own once ``llm-v2`` has written it (it keeps the image encoder it was
    trained with; ``encoders-marks`` changes the image one after), before that the trained image encoder over the
    clip's first and last frames."""
    from codi2_sdk.model.parts import load_kind

    if (at.out / "encoders" / "video").is_dir():
        encoder = load_kind("encoder", at.config.encoders["video"].kind, at.out / "encoders" / "video")
        assert isinstance(encoder, FrameVideoEncoder)
        return encoder.eval()
    args = at.config.encoders["video"].args
    image = CNNImageEncoder.from_pretrained(at.out / "encoders" / "image")
    return FrameVideoEncoder(image, frames=args["frames"], segments=args["segments"]).eval()


def fresh_decoder(at: Places, modality: str, *, fine: bool = False) -> ImageDecoder | AudioDecoder:
    """A random-initialised decoder; the image one of the first design (8x8x16 latents) unless ``fine``
    (16x16x8, the design of ``vae-fine`` and ``unet-fine``)."""
    spec = (at.config if fine else at.first_config).decoders[modality]
    return build_kind("decoder", spec.kind, spec.args)  # type: ignore[return-value]


def item_encoder(at: Places, modality: str) -> CNNImageEncoder | CNNAudioEncoder:
    encoder_cls = CNNImageEncoder if modality == "image" else CNNAudioEncoder
    return encoder_cls.from_pretrained(at.out / "encoders" / modality).eval()


def install(at: Places, model: CoDi2Model, parts: list[str]) -> None:
    """Write ``model``'s checkpoint and copy the named parts into the package's folder (the rest stays)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for part in parts:
            source, target = Path(tmp) / part, at.out / part
            if source.is_dir():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target)
            else:
                shutil.copy(source, target)


def extended_model(at: Places, config: CoDi2Config) -> tuple[CoDi2Model, int]:
    """A model of ``config`` holding the trained LLM, its vocabulary extended by the task mix's new words (their
    rows fresh), and how many words were added. Encoders, decoders and projectors are still fresh."""
    from transformers import LlamaForCausalLM

    tokenizer = build_word_tokenizer(vocabulary(), extends=load_tokenizer(at.out / "tokenizer"))
    model = CoDi2Model.from_config(config, tokenizer=tokenizer, seed=at.seed)
    base = LlamaForCausalLM.from_pretrained(at.out / "llm")
    added = len(model.tokenizer) - base.config.vocab_size
    base.resize_token_embeddings(len(model.tokenizer))
    model.llm.load_state_dict(base.state_dict())
    return model, added


def install_decoder(
    at: Places, modality: str, decoder: ImageDecoder | AudioDecoder | VideoDecoder, parts: list[str]
) -> None:
    """Write a decoder's ``parts`` into the package's folder (the rest stays)."""
    target = at.out / "decoders" / modality
    for part in parts:
        shutil.rmtree(target / part, ignore_errors=True)
    decoder.save_pretrained(target)
    for part in ("unet", "vae"):
        drop_local_path(target / part)


def drop_local_path(folder: Path) -> None:
    """A diffusers model loaded from a folder records its path in the config it writes: a path of this machine."""
    saved = folder / "config.json"
    config = json.loads(saved.read_text())
    config.pop("_name_or_path", None)
    saved.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def refit_image_whitening(model: CoDi2Model, log: Log) -> None:
    """Refit the image regression space on plain and marked renders, and map the output head's last layer into it.

    A mark lies in directions that plain pictures hardly vary in, which the old whitening blew up: a marked
    feature whitened to 7x a plain one's norm, so the regression target was nearly all mark, and the answer was
    decoded at the plain norm. The floor (``eps``) keeps its old absolute level, so size keeps its weight; the
    head starts with the old space mapped into the new one (``A = M_new @ M_old^-1``).
    """
    from codi2_sdk.model.modeling import FeatureWhitening

    old: FeatureWhitening = model.whitening["image"]  # type: ignore[assignment]
    rng = np.random.default_rng(23)
    plain = [picture_part(p, rng) for p in train_pictures() for _ in range(4)]
    marked = [picture_part(p, rng) for p in pick(marked_pictures(), rng, len(plain))]
    with torch.no_grad():
        features = torch.cat([model.encode("image", plain)[:, 0], model.encode("image", marked)[:, 0]])
    old_top = 1.0 / (1.02 * float(torch.linalg.eigvalsh(old.matrix.double()).min()) ** 2)
    centered = features.double() - features.double().mean(0)
    new_top = float(torch.linalg.eigvalsh(centered.T @ centered / (len(features) - 1)).max())
    new = FeatureWhitening.fit(features, eps=0.02 * old_top / new_top)
    last: torch.nn.Linear = model.out_head["image"][-1]  # type: ignore[index,assignment]
    with torch.no_grad():
        mapping = (new.matrix.double() @ old.inverse.double()).float()
        last.weight.copy_(mapping @ last.weight)
        last.bias.copy_(mapping @ last.bias)
    model.whitening["image"] = new
    norms = [float(new.whiten(f).norm(dim=-1).mean()) for f in features.split(len(plain))]
    log(
        f"image whitening refit on {len(features)} renders (half marked): whitened norm plain {norms[0]:.2f}, "
        f"marked {norms[1]:.2f} (decoded at {float(new.norm):.2f}); largest variance x{new_top / old_top:.2f}"
    )
