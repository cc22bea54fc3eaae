"""ImageBind-H's audio tower in plain torch (no ``imagebind`` package: it is non-commercially licensed,
pulls torchvision/torchaudio/pytorchvideo and downloads weights), and the official checkpoint's audio
weights loaded by renaming keys.

The recipe, as the official code runs it: 16 kHz mono; three 2 s clips spread evenly over the clip (the
whole clip when it is shorter); each clip a Kaldi filterbank (128 mel bins, 25 ms Hanning windows every
10 ms, dither 0, pre-emphasis 0.97, power spectrum, log) cut or zero-padded to 204 frames and normalised with
mean -4.268 and std 9.138; patches by ``Conv2d(1, 768, 16, stride 10)`` and a LayerNorm, a CLS token and
learned positions; 12 pre-norm blocks of 768 with 12 heads (``nn.MultiheadAttention(add_bias_kv=True)``);
LayerNorm, the CLS token, ``Linear(768, 1024)``; L2-normalised and scaled by 20; the mean over the clips.

:func:`kaldi_fbank` is a port of Kaldi's ``compute-fbank-feats`` for those settings (torchaudio does not import
beside the torch this project targets); the tests check it against an independent numpy computation.

The weights are CC-BY-NC-SA (the user supplies ``imagebind_huge.pth``; nothing here downloads it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn import functional as F

from ...content import Audio
from ...errors import ModelError, ModelNotFoundError
from ..media_io import audio_to_tensor

__all__ = [
    "ImageBindAudioEncoder",
    "kaldi_fbank",
    "kaldi_mel_banks",
    "load_imagebind_audio",
    "load_official_weights",
    "official_key",
    "official_name",
    "read_checkpoint",
]


_FLOAT_EPS = float(torch.finfo(torch.float32).eps)
#: The name of ImageBind's published checkpoint (its code saves it as ``.checkpoints/imagebind_huge.pth``).
OFFICIAL_FILE = "imagebind_huge.pth"


def _mel(hz: torch.Tensor | float) -> Any:
    return 1127.0 * (torch.log1p(hz / 700.0) if isinstance(hz, torch.Tensor) else math.log1p(hz / 700.0))


def kaldi_mel_banks(
    num_bins: int, padded_window: int, sample_rate: float, low_freq: float = 20.0, high_freq: float = 0.0
) -> torch.Tensor:
    """Kaldi's triangular mel filters (mel = 1127 ln(1 + f/700)), shape ``(num_bins, padded_window // 2 + 1)``,
    float64; ``high_freq <= 0`` counts down from the Nyquist frequency."""
    nyquist = sample_rate / 2
    high = high_freq if high_freq > 0 else nyquist + high_freq
    delta = (_mel(high) - _mel(low_freq)) / (num_bins + 1)
    left = _mel(low_freq) + torch.arange(num_bins, dtype=torch.float64)[:, None] * delta
    center, right = left + delta, left + 2 * delta
    mel = _mel(torch.arange(padded_window // 2, dtype=torch.float64) * sample_rate / padded_window)[None]
    banks = torch.clamp(torch.minimum((mel - left) / (center - left), (right - mel) / (right - center)), min=0.0)
    return F.pad(banks, (0, 1))  # the Nyquist bin has no filter


def kaldi_fbank(
    wave: torch.Tensor,
    *,
    sample_rate: int = 16_000,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    preemphasis: float = 0.97,
    low_freq: float = 20.0,
) -> torch.Tensor:
    """Log mel filterbank energies of a mono waveform ``(samples,)``, shape ``(frames, num_mel_bins)``, as
    Kaldi computes them with a Hanning window, no dither, no energy term and edges snipped (in float32, or in
    float64 for a float64 waveform)."""
    size = int(sample_rate * frame_length_ms / 1000)
    shift = int(sample_rate * frame_shift_ms / 1000)
    padded = 1 << (size - 1).bit_length()
    if wave.numel() < size:
        return wave.new_zeros((0, num_mel_bins))
    wave = wave if wave.dtype == torch.float64 else wave.float()  # float32 as Kaldi, unless given float64
    frames = wave.unfold(0, size, shift)  # (frames, size), only frames that fit
    frames = frames - frames.mean(dim=1, keepdim=True)  # DC offset
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = (frames - preemphasis * previous) * torch.hann_window(size, periodic=False, dtype=frames.dtype)
    power = torch.fft.rfft(F.pad(frames, (0, padded - size))).abs().pow(2)
    banks = kaldi_mel_banks(num_mel_bins, padded, sample_rate, low_freq).to(power)
    return torch.clamp(power @ banks.T, min=_FLOAT_EPS).log()


class _Block(nn.Module):
    """A pre-norm transformer block as ImageBind's ``BlockWithMasking`` (same parameter names); the audio trunk's
    attention has learned key and value biases (``add_bias_kv``), the vision trunk's has none."""

    def __init__(self, dim: int, heads: int, add_bias_kv: bool = True) -> None:
        super().__init__()
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, bias=True, add_bias_kv=add_bias_kv, batch_first=True)
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.ModuleDict({"fc1": nn.Linear(dim, 4 * dim), "fc2": nn.Linear(4 * dim, dim)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp["fc2"](F.gelu(self.mlp["fc1"](self.norm_2(x))))


class ImageBindAudioEncoder(ModelMixin, ConfigMixin):
    """ImageBind's audio tower: audio clips in, one 1024-d feature each (its CLIP-space embedding, norm 20)."""

    kind = "imagebind_audio"
    modality = "audio"

    @register_to_config
    def __init__(
        self,
        embed_dim: int = 768,
        num_blocks: int = 12,
        num_heads: int = 12,
        out_dim: int = 1024,
        num_mel_bins: int = 128,
        target_length: int = 204,
        kernel_size: int = 16,
        stride: int = 10,
        sample_rate: int = 16_000,
        clip_seconds: float = 2.0,
        clips: int = 3,
        mean: float = -4.268,
        std: float = 9.138,
        logit_scale: float = 20.0,
    ) -> None:
        super().__init__()
        self.stem = nn.ModuleDict(
            {
                "proj": nn.Conv2d(1, embed_dim, kernel_size, stride=stride, bias=False),
                "norm": nn.LayerNorm(embed_dim),
            }
        )
        grid = [(n - kernel_size) // stride + 1 for n in (num_mel_bins, target_length)]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid[0] * grid[1], embed_dim))
        nn.init.normal_(self.cls_token, std=embed_dim**-0.5)
        nn.init.normal_(self.pos_embed, std=embed_dim**-0.5)
        self.blocks = nn.ModuleList(_Block(embed_dim, num_heads) for _ in range(num_blocks))
        self.head_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_proj = nn.Linear(embed_dim, out_dim, bias=False)
        self.register_buffer("log_logit_scale", torch.tensor(math.log(logit_scale)))

    @classmethod
    def build(cls, **args: Any) -> ImageBindAudioEncoder:
        return cls(**args)

    @property
    def width(self) -> int:
        return int(self.config["out_dim"])

    @property
    def tokens_per_item(self) -> int:
        return 1

    # -- input --------------------------------------------------------------------------------------

    def clip_spans(self, samples: int) -> list[tuple[int, int]]:
        """Where the clips lie in a waveform of ``samples`` samples (the official sampler's even spread)."""
        rate, length = int(self.config["sample_rate"]), float(self.config["clip_seconds"])
        duration, count = samples / rate, int(self.config["clips"])
        starts = [max(duration - length, 0.0) * i / max(count - 1, 1) for i in range(count)]
        return [(int(start * rate), int((start + length) * rate)) for start in starts]

    def melspec(self, wave: torch.Tensor) -> torch.Tensor:
        """One clip's normalised filterbank, ``(1, num_mel_bins, target_length)``."""
        rate, bins = int(self.config["sample_rate"]), int(self.config["num_mel_bins"])
        fbank = kaldi_fbank(wave - wave.mean(), sample_rate=rate, num_mel_bins=bins).T
        target = int(self.config["target_length"])
        fbank = F.pad(fbank, (0, max(target - fbank.shape[1], 0)))[:, :target]
        return ((fbank - float(self.config["mean"])) / float(self.config["std"]))[None]

    def preprocess(self, parts: list[Audio]) -> torch.Tensor:
        """Clips to ``(batch, clips, 1, num_mel_bins, target_length)``."""
        rate = int(self.config["sample_rate"])
        out = []
        for part in parts:
            wave = audio_to_tensor([part], rate, max(1, round(part.duration * rate)))[0]  # mono, resampled
            out.append(torch.stack([self.melspec(wave[a:b]) for a, b in self.clip_spans(len(wave))]))
        return torch.stack(out)

    # -- network ------------------------------------------------------------------------------------

    def embed_clips(self, mels: torch.Tensor) -> torch.Tensor:
        """Filterbanks ``(n, 1, mel, frames)`` to L2-normalised, scaled embeddings ``(n, out_dim)``."""
        tokens = self.stem["proj"](mels.to(self.dtype)).flatten(2).transpose(1, 2)
        tokens = self.stem["norm"](tokens)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        feature = self.head_proj(self.head_norm(tokens)[:, 0])
        return F.normalize(feature, dim=-1) * self.log_logit_scale.exp().clamp(max=100)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """``(batch, clips, 1, mel, frames)`` to ``(batch, 1, out_dim)``: the mean of the clips' embeddings."""
        batch, clips = mels.shape[:2]
        embedded = self.embed_clips(mels.flatten(0, 1)).view(batch, clips, -1)
        return embedded.mean(dim=1, keepdim=True)


_HEAD = {"modality_heads.audio.0.": "head_norm.", "modality_heads.audio.2.": "head_proj."}


_PREFIXES = {
    "modality_preprocessors.audio.rgbt_stem.proj.": "stem.proj.",
    "modality_preprocessors.audio.rgbt_stem.norm_layer.": "stem.norm.",
    "modality_preprocessors.audio.pos_embedding_helper.pos_embed": "pos_embed",
    "modality_preprocessors.audio.cls_token": "cls_token",
    "modality_trunks.audio.blocks.": "blocks.",
    "modality_postprocessors.audio.1.log_logit_scale": "log_logit_scale",
    **_HEAD,
}


def official_key(key: str) -> str:
    """The official checkpoint's name for one of this module's parameters."""
    return official_name(key, _PREFIXES)


def official_name(key: str, prefixes: dict[str, str]) -> str:
    """A parameter's name in the official checkpoint, by the tower's ``{official prefix: our prefix}`` table."""
    for official, ours in prefixes.items():
        if key.startswith(ours):
            return official + key[len(ours) :]
    raise KeyError(key)


def read_checkpoint(path: str | Path | dict[str, Any]) -> dict[str, Any]:
    """An ImageBind checkpoint's state dict (the official ``imagebind_huge.pth``, or one saved under ``"model"``);
    a state dict already read is returned as it is.

    A folder holding ``imagebind_huge.pth`` (where ImageBind's own code saves it: ``.checkpoints/``) stands for
    that file. The file is read as tensors only (``weights_only``): it runs no code, whoever made it.

    Raises:
        ModelNotFoundError: no file at ``path``.
        ModelError: the file is no torch checkpoint of tensors (corrupt, truncated, or pickled code).
    """
    if isinstance(path, dict):
        return path
    path = Path(path)
    if path.is_dir() and (path / OFFICIAL_FILE).is_file():
        path = path / OFFICIAL_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"no ImageBind checkpoint at {path} (the official file is {OFFICIAL_FILE})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's own message would advise weights_only=False, i.e. running the file's code
        cause = exc.__context__ or exc  # the unpickler's own words ("Unsupported operand 141")
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]
        raise ModelError(f"{path} is not an ImageBind checkpoint (a torch file of tensors): {first}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelError(f"{path} holds a {type(state).__name__}, not an ImageBind state dict")
    return dict(state)


def load_official_weights(
    encoder: nn.Module, prefixes: dict[str, str], path: str | Path | dict[str, Any], what: str
) -> Any:
    """``encoder`` with its weights from an ImageBind checkpoint (a path, or its state dict already read), by the
    ``{official prefix: our prefix}`` table; ``what`` names the tower in errors.

    Raises:
        ModelNotFoundError: no file at ``path``.
        ModelError: the checkpoint lacks the tower's weights, or they do not fit (the message names the keys).
    """
    state = read_checkpoint(path)
    where = "the ImageBind checkpoint" if isinstance(path, dict) else str(path)
    wanted = {official_name(k, prefixes): k for k in encoder.state_dict()}
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise ModelError(
            f"{where} lacks ImageBind {what} weights: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    try:
        encoder.load_state_dict({ours: state[official] for official, ours in wanted.items()}, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{where}: the ImageBind {what} weights do not fit this tower: {exc}") from exc
    return encoder.eval()


def load_imagebind_audio(path: str | Path | dict[str, Any], **config: Any) -> ImageBindAudioEncoder:
    """The audio tower with the weights of an official ImageBind checkpoint (``imagebind_huge.pth``, any state
    dict with the official key names, or that state dict already read); ``config`` overrides the huge model's shape
    (tests use tiny ones).

    Raises:
        ModelNotFoundError: no file at ``path``.
        ModelError: the file lacks audio weights, or they do not fit (the message names the keys).
    """
    return load_official_weights(ImageBindAudioEncoder(**config), _PREFIXES, path, "audio")  # type: ignore[no-any-return]
