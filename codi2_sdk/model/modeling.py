"""CoDi2Model: encoders, projectors, the LLM (with optional LoRA), output heads and diffusion decoders.

The network, as in the paper (arXiv 2311.18775):

1. each input medium is encoded into a few aligned feature vectors (:mod:`.parts`; the kinds in :mod:`.mini` and :mod:`.fullscale`);
2. an input projector (Linear, GELU, LayerNorm, Linear) maps them to the LLM's width, and they fill
   the ``<|media|>`` slots between the medium's tags (:mod:`.prompt`);
3. the LLM reads the interleaved sequence as ``inputs_embeds``;
4. where the LLM writes a media start tag, an output head (same MLP shape) turns that position's hidden
   state into the feature that conditions the medium's diffusion decoder (:mod:`.parts`).

Training regresses the head's output onto the encoder's pooled feature of the target medium (cosine and
MSE, on unit-norm features) beside cross-entropy on the answer's tokens. At inference the unit-norm
prediction is scaled back to the encoder's feature norm before it conditions the decoder, and it is fed
back through the input projector into the slot, so later text and media condition on it.

Generation lives in :mod:`.generation`; this module holds the network, the loss and checkpoint files.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from ..content import MediaPart
from ..errors import InvalidRequestError, MissingDependencyError, ModelError, ModelNotFoundError
from ..messages import Example, Message
from ._libraries import local_path, quiet_loading
from .architecture import CoDi2Config, LoraSpec
from .parts import DiffusionDecoder, MediaEncoder, build_kind, kind_class, load_kind
from .prompt import IGNORE_INDEX, Prompt, PromptBuilder, UnknownWordsError, build_word_tokenizer, load_tokenizer
from .runtime.prefix_cache import MediaFeatureCache

__all__ = ["CoDi2Model", "CoDi2Output", "FeatureWhitening", "Projector", "TrainingExample", "resolve_checkpoint"]


CONFIG_FILE = "codi2.json"


SHARED_FILE = "shared.json"
"""In an encoder's folder: the encoder reads through a module stored elsewhere in the checkpoint (``wraps``)."""


PROJECTORS_FILE = "projectors.safetensors"


_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class Projector(nn.Sequential):
    """The paper's projector MLP: Linear, GELU, LayerNorm, Linear."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))


@dataclass
class TrainingExample:
    """One training sequence: a request's examples and messages, and the answer to learn."""

    messages: list[Message]
    answer: Message
    examples: list[Example] | None = None


@dataclass
class CoDi2Output:
    """The training forward's result."""

    loss: torch.Tensor
    text_loss: torch.Tensor
    feature_loss: torch.Tensor
    logits: torch.Tensor


@dataclass
class EmbeddedBatch:
    """Prompts turned into LLM inputs."""

    embeds: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    targets: list[tuple[int, int, str, torch.Tensor]]
    """(batch index, position of the start tag, modality, unit-norm target feature) for each answer medium."""


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """The folder for a checkpoint name shipped in the package (``"codi2-mini"``), a path, or a repo id in the local
    Hugging Face cache (``"owner/name"``; never downloaded)."""
    if isinstance(name_or_path, str) and not Path(name_or_path).exists() and (_WEIGHTS_DIR / name_or_path).is_dir():
        return _WEIGHTS_DIR / name_or_path
    try:
        path = local_path(name_or_path, "checkpoint folder")
    except ModelNotFoundError as exc:
        shipped = sorted(p.name for p in _WEIGHTS_DIR.iterdir()) if _WEIGHTS_DIR.is_dir() else []
        raise ModelNotFoundError(
            str(exc) + (f"; checkpoints shipped in the package: {', '.join(shipped)}" if shipped else "")
        ) from None
    if not path.is_dir():
        raise ModelNotFoundError(f"{name_or_path!s} is a file, not a checkpoint folder")
    return path


def _give_back_freed_memory() -> None:
    """Return the heap pages freed by replacing the LLM's float weights to the system: glibc keeps them otherwise, and
    on a CPU the process would hold more than before (a ~100 M Llama after a turn: 893 MB resident in the low mode
    without this, 740 MB in the default mode, 556 MB with this; ``tools/bench/low_memory.py``)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not Linux with glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _token_rows_to_train(llm: nn.Module, rows: list[int]) -> list[int] | dict[str, list[int]]:
    """peft's ``trainable_token_indices`` for ``rows``: the input embeddings' rows, and the output head's too where
    it is untied. Otherwise a new token's head row stays at its initial draw (around the old rows' mean, by mean
    resizing) and only the LoRA, steering hidden states toward it, could make the model write a media tag."""
    embeddings, head = llm.get_input_embeddings(), llm.get_output_embeddings()  # type: ignore[operator]
    if head is None or head.weight is embeddings.weight:
        return rows  # tied: peft trains the shared rows once
    names = {module: name.rsplit(".", 1)[-1] for name, module in llm.named_modules()}
    return {names[embeddings]: rows, names[head]: rows}


def _unwrapped_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A peft-wrapped model's base weights under the names they had before peft wrapped it: no ``lora_`` tensors
    or trainable-token deltas, no ``base_layer`` / ``token_adapter`` levels."""
    state = {}
    for key, value in model.state_dict().items():
        if ".lora_" in key or ".trainable_tokens_" in key:
            continue
        state[key.replace(".token_adapter.", ".").replace(".base_layer.", ".")] = value
    return state


def _pipeline_parts(decoders: Mapping[str, Any]) -> dict[str, nn.Module]:
    """The torch modules of the decoders' pipelines by their place in a checkpoint (``decoders/image/image_encoder``):
    what an encoder can share instead of storing its own copy."""
    return {
        f"decoders/{modality}/{name}": part
        for modality, decoder in decoders.items()
        for name, part in getattr(getattr(decoder, "pipeline", None), "components", {}).items()
        if isinstance(part, nn.Module)
    }


class CoDi2Model(nn.Module):
    """A CoDi-2 network: see the module docstring for its parts.

    Build a random-initialised one with :meth:`from_config`, load one with :meth:`from_pretrained`.
    """

    def __init__(
        self,
        config: CoDi2Config,
        llm: Any,
        tokenizer: Any,
        encoders: Mapping[Any, Any],
        decoders: Mapping[Any, DiffusionDecoder],
    ) -> None:
        super().__init__()
        self.config = config
        self.llm = llm
        self.tokenizer = tokenizer
        self.encoders = nn.ModuleDict(encoders)
        self.decoders = nn.ModuleDict(decoders)
        hidden = self.hidden_size
        mlp = config.projector_hidden or hidden
        widths = {m: int(d.cond_dim) for m, d in decoders.items()} | {m: int(e.width) for m, e in encoders.items()}
        # a medium the model writes but cannot read (a decoder without an encoder) still needs its written feature
        # fed back into the context: its input projector reads the decoder's feature width
        self.in_proj = nn.ModuleDict({m: Projector(width, mlp, hidden) for m, width in widths.items()})
        self.out_head = nn.ModuleDict({m: Projector(hidden, mlp, d.cond_dim) for m, d in decoders.items()})
        self.prompts = PromptBuilder(
            tokenizer,
            {m: int(e.tokens_per_item) for m, e in encoders.items()},
            closed_vocabulary=config.closed_vocabulary,
        )
        self.offload_decoders = False  # see reduce_memory
        self.whitening = nn.ModuleDict()  # modality -> FeatureWhitening, where the output head regresses whitened
        for encoder in self.encoders.values():
            encoder.requires_grad_(False)  # trained for alignment beforehand, frozen after

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, config: CoDi2Config, *, tokenizer: Any = None, words: Sequence[str] = (), seed: int | None = 0
    ) -> CoDi2Model:
        """A random-initialised model of ``config``'s shape.

        Args:
            tokenizer: the tokenizer to use; by default a word-level one over ``words``.
            words: vocabulary of the default word-level tokenizer.
            seed: seed for the initial weights (``None`` leaves torch's global generator alone).
        """
        from transformers import LlamaConfig, LlamaForCausalLM

        if seed is not None:
            torch.manual_seed(seed)
        tokenizer = tokenizer if tokenizer is not None else build_word_tokenizer(words)
        llm_config = LlamaConfig(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=False,
            **config.llm,
        )
        llm = LlamaForCausalLM(llm_config)
        encoders = {m: build_kind("encoder", spec.kind, spec.args) for m, spec in config.encoders.items()}
        decoders = {m: build_kind("decoder", spec.kind, spec.args) for m, spec in config.decoders.items()}
        model = cls(config, llm, tokenizer, encoders, decoders)
        if config.lora is not None:
            model.add_lora(config.lora)
        return model

    def add_lora(self, spec: LoraSpec | None = None) -> None:
        """Wrap the LLM in a peft LoRA (on q, k, v, o by default); only the adapter stays trainable in it, with
        ``spec.trainable_tokens``' rows of the input embeddings and, where the LLM's output head is its own
        matrix (Llama-2's is), of the head too."""
        from peft import LoraConfig, get_peft_model

        spec = spec or LoraSpec()
        if self.has_lora:
            raise ModelError("the LLM already has a LoRA adapter")
        extra: dict[str, Any] = (
            {"trainable_token_indices": _token_rows_to_train(self.llm, list(spec.trainable_tokens))}
            if spec.trainable_tokens
            else {}
        )
        lora = LoraConfig(
            r=spec.r,
            lora_alpha=spec.alpha,
            lora_dropout=spec.dropout,
            target_modules=list(spec.target_modules),
            **extra,
        )
        with quiet_loading():  # peft's own deprecation warning under transformers 5: not the user's doing
            self.llm = get_peft_model(self.llm, lora)
        self.config = self.config.model_copy(update={"lora": spec})

    def reduce_memory(self, *, quantize: bool = True, offload_decoders: bool = True, slice_vae: bool = True) -> None:
        """Lower the peak memory of inference (``assemble(..., memory="low")`` calls it): the LLM's linear weights
        stored in int8 (torchao's weight-only quantization, the LoRA merged first), the decoders kept on the CPU and
        moved to the LLM's device only while one of them runs, and their autoencoders decoding in slices and tiles
        (large pictures, long clips). For inference only: such a model cannot be saved or trained.

        Raises:
            MissingDependencyError: ``quantize`` without torchao (``pip install 'codi2-sdk[lowmem]'``).
        """
        if quantize:
            try:
                from torchao.quantization import Int8WeightOnlyConfig, quantize_
            except ImportError:
                raise MissingDependencyError(
                    "storing the LLM in int8 needs torchao: pip install 'codi2-sdk[lowmem]'"
                ) from None
            self.merge_lora()
            with quiet_loading():
                quantize_(self.llm, Int8WeightOnlyConfig())
            self.quantized = True
            _give_back_freed_memory()
        if slice_vae:
            for decoder in self.decoders.values():
                vae = getattr(decoder, "vae", None)
                for switch in ("enable_slicing", "enable_tiling"):
                    if hasattr(vae, switch):
                        getattr(vae, switch)()
        self.offload_decoders = offload_decoders
        if offload_decoders:
            for decoder in self.decoders.values():
                decoder.to("cpu")
            for encoder in self.encoders.values():  # a tower a decoder shares stays where the encoders run
                encoder.to(self.device)

    def speed_up_decoders(self, *, compile: bool = False, channels_last: bool = False) -> None:
        """Every decoder's denoiser compiled and/or in channels-last layout (see
        :meth:`~codi2_sdk.model.parts.DiffusionDecoder.speed_up`): the same media within float tolerance."""
        for modality in self.decoders:
            self.decoder_for(modality).speed_up(compile=compile, channels_last=channels_last)

    @contextlib.contextmanager
    def decoder_ready(self, modality: str) -> Iterator[DiffusionDecoder]:
        """The decoder of ``modality`` on the LLM's device for as long as it runs (moved back to the CPU after,
        where :meth:`reduce_memory` offloads decoders)."""
        decoder = self.decoder_for(modality)
        if not self.offload_decoders:
            yield decoder
            return
        decoder.to(self.device)
        try:
            yield decoder
        finally:
            decoder.to("cpu")
            for encoder in self.encoders.values():
                encoder.to(self.device)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def merge_lora(self) -> None:
        """Fold the LoRA (and the tags' trained token rows) into the LLM's own weights, for serving: the same
        answers within float tolerance, at the speed of the plain LLM (no adapter matmuls per layer and token).
        The model then has no adapter to train or save apart: merge a copy, or reload to train again."""
        if not self.has_lora:
            return
        with quiet_loading():
            self.llm = self.llm.merge_and_unload()
        self.config = self.config.model_copy(update={"lora": None})

    @property
    def has_lora(self) -> bool:
        """Whether the LLM is wrapped in a peft adapter."""
        return hasattr(self.llm, "peft_config")

    @property
    def hidden_size(self) -> int:
        """The LLM's width."""
        return int(self.llm.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.llm.parameters()).device

    @property
    def name(self) -> str:
        return self.config.name

    # -- embedding ---------------------------------------------------------------------------------

    def encoder_for(self, modality: str) -> MediaEncoder:
        """The encoder that reads ``modality``."""
        return cast(MediaEncoder, self.encoders[modality])

    def decoder_for(self, modality: str) -> DiffusionDecoder:
        """The decoder that writes ``modality``."""
        return cast(DiffusionDecoder, self.decoders[modality])

    @torch.no_grad()
    def encode(self, modality: str, parts: Sequence[MediaPart]) -> torch.Tensor:
        """Encoder features ``(len(parts), tokens_per_item, width)`` of one modality."""
        encoder = self.encoder_for(modality)
        inputs = encoder.preprocess(list(parts)).to(self.device)
        weights = next(encoder.parameters(), None)
        if weights is not None and inputs.is_floating_point():  # pixels and filter banks in the tower's dtype
            inputs = inputs.to(weights.dtype)
        return encoder(inputs).float()

    def _encode_one(self, modality: str, part: MediaPart, cache: MediaFeatureCache | None) -> torch.Tensor:
        feature = cache.get(modality, part.sha256) if cache is not None else None
        if feature is None:
            feature = self.encode(modality, [part])[0]
            if cache is not None:
                cache.put(modality, part.sha256, feature)
        return feature

    def feature_to_input(self, modality: str, feature: torch.Tensor) -> torch.Tensor:
        """Project encoder-space features ``(..., width)`` to LLM input embeddings."""
        proj: Any = self.in_proj[modality]
        return proj(feature.to(proj[0].weight.dtype))

    def predict_feature(self, modality: str, hidden: torch.Tensor) -> torch.Tensor:
        """The output head: LLM hidden states ``(..., hidden)`` to unit-norm media features (whitened, for
        modalities with a :class:`FeatureWhitening`)."""
        head: Any = self.out_head[modality]
        return F.normalize(head(hidden.to(head[0].weight.dtype)).float(), dim=-1)

    def regression_target(self, modality: str, feature: torch.Tensor) -> torch.Tensor:
        """What the output head learns to predict for an encoder feature: unit-norm, whitened if fitted."""
        if modality in self.whitening:
            feature = self.whitening[modality].whiten(feature)  # type: ignore[operator]
        return F.normalize(feature, dim=-1)

    def restore_scale(self, modality: str, unit_feature: torch.Tensor) -> torch.Tensor:
        """Turn a predicted unit-norm feature back into the encoder's space and scale, as the decoder was
        trained on (the reference code fed unit-norm features to a decoder that expects raw ones)."""
        if modality in self.whitening:
            whitening: Any = self.whitening[modality]
            return whitening.unwhiten(unit_feature * whitening.norm)
        norms: Mapping[Any, float] = self.config.feature_norms
        return unit_feature * norms.get(modality, 1.0)

    def nearest_sample(self, modality: str, feature: torch.Tensor, samples: Sequence[MediaPart]) -> int:
        """Which of several decoded ``samples`` of one feature lies nearest it once read back by this model's
        encoder (cosine in the output head's space, :meth:`regression_target`): best-of-n reranking."""
        read = self.encode(modality, samples)[:, 0]
        target = self.regression_target(modality, feature.float().to(read.device)[None])
        return int((self.regression_target(modality, read) @ target.T)[:, 0].argmax())

    def fit_whitening(self, modality: str, parts: Sequence[MediaPart], *, eps: float = 0.02) -> None:
        """Fit the regression space of ``modality`` to the encoder's pooled features of ``parts``."""
        self.whitening[modality] = FeatureWhitening.fit(self.encode(modality, parts)[:, 0], eps=eps)

    def embed(
        self,
        prompts: Sequence[Prompt],
        *,
        padding_side: str = "right",
        one_by_one: bool = False,
        media_cache: MediaFeatureCache | None = None,
    ) -> EmbeddedBatch:
        """Token embeddings with media features in their slots, padded into one batch.

        Media are encoded in one batch per modality, or ``one_by_one`` (generation: each medium's features
        then do not depend on what else is in the prompt, so ``media_cache`` can keep them by content hash).
        """
        length = max(len(p) for p in prompts)
        pad_id = self.tokenizer.pad_token_id
        ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
        labels = torch.full((len(prompts), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(prompts), length), dtype=torch.long)
        offsets = []
        for b, prompt in enumerate(prompts):
            offset = length - len(prompt) if padding_side == "left" else 0
            offsets.append(offset)
            ids[b, offset : offset + len(prompt)] = torch.tensor(prompt.ids)
            labels[b, offset : offset + len(prompt)] = torch.tensor(prompt.labels)
            mask[b, offset : offset + len(prompt)] = 1
        embeds = self.llm.get_input_embeddings()(ids.to(self.device))

        # Encode each modality's media in one batch, then write each item's features into its slot.
        slots = [(b, slot) for b, prompt in enumerate(prompts) for slot in prompt.media]
        rows: list[torch.Tensor] = []
        positions: list[tuple[int, int, int]] = []
        targets: list[tuple[int, int, str, torch.Tensor]] = []
        for modality in {slot.modality for _, slot in slots}:
            group = [(b, slot) for b, slot in slots if slot.modality == modality]
            parts = [slot.part for _, slot in group]
            if one_by_one:
                features = torch.stack([self._encode_one(modality, part, media_cache) for part in parts])
            else:
                features = self.encode(modality, parts)
            for (b, slot), feature in zip(group, features, strict=True):
                rows.append(self.feature_to_input(modality, feature[: slot.count]))
                positions.append((b, offsets[b] + slot.position, slot.count))
                if slot.target:
                    target = self.regression_target(modality, feature[0])
                    targets.append((b, offsets[b] + slot.position - 1, modality, target))
        if rows:
            embeds = embeds.clone()
            for (b, start, count), row in zip(positions, rows, strict=True):
                embeds[b, start : start + count] = row.to(embeds.dtype)
        return EmbeddedBatch(embeds, mask.to(self.device), labels.to(self.device), targets)

    def build_prompt(
        self, examples: Sequence[Example], messages: Sequence[Message], answer: Message | None = None
    ) -> Prompt:
        """The prompt of a conversation (with its ``answer`` to train on), as :attr:`prompts` builds it.

        Raises:
            InvalidRequestError: text this model cannot read (words outside a closed vocabulary, said with the
                nearest known ones and prompts the model understands).
        """
        try:
            return self.prompts.build(examples, messages, answer=answer)
        except UnknownWordsError as exc:
            guide = "; ".join(f'"{p}"' for p in self.config.prompt_examples)
            guide = f" It understands prompts like {guide}." if guide else ""
            raise InvalidRequestError(f"{exc}.{guide} Its vocabulary is in capabilities.vocabulary.") from None
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None

    # -- training ----------------------------------------------------------------------------------

    def forward(self, batch: Sequence[TrainingExample]) -> CoDi2Output:
        """The training loss of a batch: text cross-entropy plus feature regression at answer media.

        Target features are teacher-forced into the answer's slots.
        """
        prompts = [self.build_prompt(ex.examples or [], ex.messages, answer=ex.answer) for ex in batch]
        inputs = self.embed(prompts)
        out = self.llm(inputs_embeds=inputs.embeds, attention_mask=inputs.attention_mask, output_hidden_states=True)
        logits = out.logits
        text_loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
            inputs.labels[:, 1:].reshape(-1),
            ignore_index=IGNORE_INDEX,
        )
        if torch.isnan(text_loss):  # no text token to learn in this batch
            text_loss = logits.sum() * 0.0
        feature_loss = logits.new_zeros((), dtype=torch.float32)
        if inputs.targets:
            hidden = out.hidden_states[-1]
            losses = []
            for b, position, modality, target in inputs.targets:
                head: Any = self.out_head[modality]
                raw = head(hidden[b, position].to(head[0].weight.dtype)).float()
                cosine = 1 - F.cosine_similarity(raw, target, dim=-1)
                mse = F.mse_loss(raw, target)
                losses.append(self.config.loss.cosine * cosine + self.config.loss.mse * mse)
            feature_loss = torch.stack(losses).mean()
        loss = self.config.loss.text * text_loss + feature_loss
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Every trained projector and head takes part in the graph, with weight zero where this process's batch
            # has none of its medium: the processes of a sharded run then compute gradients for the same parameters
            # whatever each drew (FSDP reduces a unit's gradients in one collective of a fixed size), as DDP's own
            # search for unused parameters gives. A single process trains as before.
            trained = [
                p.sum().float() for m in (self.in_proj, self.out_head) for p in m.parameters() if p.requires_grad
            ]
            if trained:
                loss = loss + 0.0 * torch.stack(trained).sum()
        return CoDi2Output(loss=loss, text_loss=text_loss.detach(), feature_loss=feature_loss.detach(), logits=logits)

    # -- checkpoints -------------------------------------------------------------------------------

    @quiet_loading()
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the checkpoint folder: ``codi2.json``, ``llm/``, ``tokenizer/``, ``adapter/`` (with
        LoRA), ``projectors.safetensors``, ``encoders/<modality>/``, ``decoders/<modality>/``."""
        if getattr(self, "quantized", False):
            raise ModelError("a model whose LLM is stored in int8 (reduce_memory) is for inference; save it before")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config.model_copy(update={"llm_path": "llm"})
        if self.has_lora:
            # llm/ holds the whole base model (its embeddings resized for the tags), so the adapter holds only what
            # trains: the LoRA and the tags' rows (peft's trainable-token deltas), never a second copy of the
            # embedding matrices (said, so peft does not warn)
            self.llm.save_pretrained(str(directory / "adapter"), save_embedding_layers=False)
            base = self.llm.get_base_model()
            base.save_pretrained(str(directory / "llm"), state_dict=_unwrapped_state(base))
        else:
            self.llm.save_pretrained(str(directory / "llm"))
        self.tokenizer.save_pretrained(str(directory / "tokenizer"))
        projectors = {f"in_proj.{k}": v for k, v in self.in_proj.state_dict().items()}
        projectors |= {f"out_head.{k}": v for k, v in self.out_head.state_dict().items()}
        projectors |= {f"whitening.{k}": v for k, v in self.whitening.state_dict().items()}
        save_file({k: v.detach().contiguous().cpu() for k, v in projectors.items()}, str(directory / PROJECTORS_FILE))
        self._save_encoders(directory)
        for modality, decoder in self.decoders.items():
            decoder.save_pretrained(directory / "decoders" / modality)  # type: ignore[operator]
        (directory / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
        written = [directory / PROJECTORS_FILE]
        for part in ("llm", "adapter", "encoders", "decoders"):
            written += (directory / part).rglob("*.safetensors")
        _readable_as_umask_allows(written)
        return directory

    def _save_encoders(self, directory: Path) -> None:
        """Each encoder in ``encoders/<modality>/``; one that reads through a module stored elsewhere in the
        checkpoint (the CLIP-H tower of unCLIP's pipeline, or the model's own image encoder for frame-wise video)
        writes only :data:`SHARED_FILE` naming it, so the tower is stored once and shared again on load."""
        homes = {id(part): path for path, part in _pipeline_parts(dict(self.decoders)).items()}
        homes |= {id(encoder): f"encoders/{modality}" for modality, encoder in self.encoders.items()}
        for modality, encoder in self.encoders.items():
            folder = directory / "encoders" / modality
            home = homes.get(id(getattr(encoder, "wrapped", None)))
            if home is None:
                (folder / SHARED_FILE).unlink(missing_ok=True)  # an earlier save's pointer must not outlive it
                encoder.save_pretrained(folder)  # type: ignore[operator]
                continue
            folder.mkdir(parents=True, exist_ok=True)
            settings = encoder.wrapping_settings()  # type: ignore[operator]
            (folder / SHARED_FILE).write_text(json.dumps({"kind": encoder.kind, "wraps": home, "settings": settings}))

    @staticmethod
    def _load_encoders(
        config: CoDi2Config, decoders: Mapping[str, DiffusionDecoder], load_part: Any
    ) -> dict[str, MediaEncoder]:
        """The encoders of a checkpoint, each loaded from its folder or built over the module it shares."""
        parts: dict[str, Any] = _pipeline_parts(decoders)
        encoders: dict[str, MediaEncoder] = {}
        pending = dict(config.encoders)
        while pending:
            progress = False
            for modality, spec in list(pending.items()):
                shared = load_part(f"encoders/{modality}", lambda p: p / SHARED_FILE)
                if shared.exists():
                    record = json.loads(shared.read_text())
                    if record["wraps"] not in parts:
                        continue  # an encoder not loaded yet: the next pass
                    cls = kind_class("encoder", record["kind"])
                    encoders[modality] = cls.wrapping(parts[record["wraps"]], **record.get("settings", {}))
                else:
                    encoders[modality] = load_part(
                        f"encoders/{modality}", lambda p, s=spec: load_kind("encoder", s.kind, p)
                    )
                parts[f"encoders/{modality}"] = encoders[modality]
                del pending[modality]
                progress = True
            if not progress:
                raise ModelError(f"encoders {', '.join(sorted(pending))} share modules the checkpoint does not hold")
        return encoders

    def _load_projectors(self, projectors: dict[str, torch.Tensor], directory: Path) -> None:
        """Load the input projectors, output heads and whitenings from ``projectors.safetensors``' tensors."""
        for key, value in projectors.items():
            if key.startswith("whitening.") and key.endswith(".mean"):
                self.whitening[key.split(".")[1]] = FeatureWhitening(value.shape[0])
        for prefix, module in (
            ("in_proj.", self.in_proj),
            ("out_head.", self.out_head),
            ("whitening.", self.whitening),
        ):
            state = {k[len(prefix) :]: v for k, v in projectors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ModelError(
                    f"checkpoint {directory}: part '{PROJECTORS_FILE}' does not fit the model: {exc}"
                ) from exc

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> CoDi2Model:
        """Load a checkpoint folder, or a checkpoint shipped in the package by name (``"codi2-mini"``).

        Nothing is ever downloaded: an LLM named by hub id must already be in the local cache.

        Raises:
            ModelNotFoundError: the folder, or a part of it, is missing (the message names the part).
            ModelError: a part is there but does not fit the rest (the message names the part).
        """
        directory = resolve_checkpoint(name_or_path)
        with quiet_loading():
            return cls._load(directory, device=device, dtype=dtype)

    @classmethod
    def _load(cls, directory: Path, *, device: str | torch.device, dtype: torch.dtype | None) -> CoDi2Model:
        config = _read_config(directory)

        def need(relative: str) -> Path:
            path = directory / relative
            if not path.exists():
                raise ModelNotFoundError(f"checkpoint {directory} is missing its part '{relative}'")
            return path

        def load_part(relative: str, load: Any) -> Any:
            path = need(relative)
            try:
                return load(path)
            except (ModelError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise ModelError(f"checkpoint {directory}: part '{relative}' cannot be loaded: {exc}") from exc

        from transformers import AutoModelForCausalLM

        def load_llm(source: Path | str) -> Any:
            kwargs = {"dtype": dtype} if dtype is not None else {}
            return AutoModelForCausalLM.from_pretrained(str(source), local_files_only=True, **kwargs)

        if (directory / config.llm_path).exists() or config.llm_path == "llm":
            llm = load_part(config.llm_path, load_llm)
        else:  # a hub id, which must already be in the local cache
            try:
                llm = load_llm(config.llm_path)
            except Exception as exc:
                raise ModelNotFoundError(
                    f"checkpoint {directory}: its LLM '{config.llm_path}' is neither a sub-folder nor in the local "
                    f"hub cache (nothing is downloaded): {exc}"
                ) from exc
        tokenizer = load_part("tokenizer", load_tokenizer)
        if len(tokenizer) > llm.get_input_embeddings().num_embeddings:
            raise ModelError(
                f"checkpoint {directory}: part 'tokenizer' has {len(tokenizer)} tokens but the LLM embeds only "
                f"{llm.get_input_embeddings().num_embeddings}"
            )
        decoders: dict[str, Any] = {
            m: load_part(f"decoders/{m}", lambda p, s=s: load_kind("decoder", s.kind, p))
            for m, s in config.decoders.items()
        }
        encoders = cls._load_encoders(config, decoders, load_part)
        model = cls(config.model_copy(update={"lora": None}), llm, tokenizer, encoders, decoders)
        model._load_projectors(load_part(PROJECTORS_FILE, lambda p: load_file(str(p))), directory)
        if config.lora is not None:
            from peft import PeftModel

            model.llm = load_part("adapter", lambda p: PeftModel.from_pretrained(llm, str(p)))
            model.config = config
        model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)
        return model.eval()


def _readable_as_umask_allows(files: Sequence[Path]) -> None:
    """Give weight files the mode a new file gets (``0o666`` less the umask), as the checkpoint's other files have:
    safetensors 0.8 writes through a temporary file created ``0o600`` (safetensors issue #782), which would leave a
    checkpoint unreadable to the user or container that serves it."""
    if os.name != "posix":
        return
    umask = os.umask(0)
    os.umask(umask)
    for path in files:
        with contextlib.suppress(OSError):  # not ours to change (another owner): leave it
            path.chmod(0o666 & ~umask)


def _read_config(directory: Path) -> CoDi2Config:
    path = directory / CONFIG_FILE
    if not path.exists():
        raise ModelNotFoundError(f"checkpoint {directory} is missing its part '{CONFIG_FILE}'")
    try:
        return CoDi2Config.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ModelError(f"checkpoint {directory}: part '{CONFIG_FILE}' is invalid: {exc}") from exc


class FeatureWhitening(nn.Module):
    """ZCA whitening of one modality's pooled features: the space the output head regresses in.

    Encoder features can hold an attribute in a direction of small variance (codi2-mini's image encoder
    puts size there: two items that differ only in size have cosine 0.975, against 0.46 for colour), and
    a cosine loss then hardly sees it. In whitened space every direction weighs alike; ``eps`` (a share
    of the largest eigenvalue) keeps render-to-render noise from being blown up.
    """

    mean: torch.Tensor
    matrix: torch.Tensor
    inverse: torch.Tensor
    norm: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("matrix", torch.eye(dim))
        self.register_buffer("inverse", torch.eye(dim))
        self.register_buffer("norm", torch.ones(()))

    @classmethod
    def fit(cls, features: torch.Tensor, *, eps: float = 0.02) -> FeatureWhitening:
        """Fit to pooled features ``(samples, dim)`` of many media."""
        features = features.double()
        mean = features.mean(0)
        centered = features - mean
        values, vectors = torch.linalg.eigh(centered.T @ centered / (len(features) - 1))
        # identical media can differ by float32 rounding in a batched forward: that is no variation
        if float(values.max()) <= 1e-10 * float(mean.square().mean()):
            raise ValueError("cannot fit a whitening to features that do not vary")
        values = values.clamp(min=0) + eps * values.max()
        whitening = cls(features.shape[1])
        whitening.mean.copy_(mean)
        whitening.matrix.copy_(vectors @ torch.diag(values.rsqrt()) @ vectors.T)
        whitening.inverse.copy_(vectors @ torch.diag(values.sqrt()) @ vectors.T)
        whitening.norm.copy_((centered @ whitening.matrix.double().T).norm(dim=-1).mean())
        return whitening

    def whiten(self, feature: torch.Tensor) -> torch.Tensor:
        return (feature - self.mean) @ self.matrix.T

    def unwhiten(self, whitened: torch.Tensor) -> torch.Tensor:
        return whitened @ self.inverse.T + self.mean
