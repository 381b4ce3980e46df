"""The autoencoders VOSR works in, behind one interface (``docs/vosr-reference.md``, "3. Autoencoders").

``Autoencoder.encode(images, generator)`` maps (B, 3, H, W) images in [0, 1] (H, W multiples
of 8) to the latent the backbone was trained on, (B, C, H/8, W/8); ``decode`` maps back to
[0, 1]. Both accept ``tile`` (image pixels) for large images: overlapping tiles are processed one
at a time and blended with linear ramps over the overlap (``vosr.tiling.blend_tiles``).

``AUTOENCODERS`` is the registry (one frozen :class:`AutoencoderSpec` per name, ``get_autoencoder``);
the entry says which family loads it, its folder, its light decoder and its published files.

* ``sd21``: Stable Diffusion 2.1's KL VAE through diffusers ``AutoencoderKL`` (C = 4,
  latent = posterior sample * 0.18215), decoded by the full VAE decoder or by the
  **light decoder** (``sd21_lwdecoder.pth``, a half-width diffusers ``Decoder`` that the official
  0.5B inference uses; input latent / 0.18215, no post_quant_conv).
* ``qwen-image``: the Qwen-Image VAE (C = 16) through diffusers ``AutoencoderKLQwenImage``
  (a causal 3-D VAE run on single frames), latents normalised per channel with the folder's
  ``latents_mean`` / ``latents_std``. The released folder is the image-only 2-D variant
  (``AutoencoderKLQwenImage2D.save_pretrained``): 4-D conv kernels and no temporal convolutions
  (``time_conv`` of the two temporal down- and the two temporal up-samplers). On load the 4-D
  kernels are inflated (for one frame a causal 3-D conv only uses its last temporal tap, so the
  2-D kernel goes there) and the ``time_conv`` weights are removed from the model, since diffusers
  runs them only from the second frame on; the load stays strict over every other key and the
  key report (``QwenImageAutoencoder.key_report``) names the removed ones and why.
* ``tiny-kl``: a tiny ``AutoencoderKL`` folder (random weights) for CPU tests, through the same
  code as ``sd21``.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import torch
from torch import nn

from core.config import from_dict
from core.errors import MissingFileError, UserError
from vosr.config import ConfigError, UnknownEntryError
from vosr.paths import find_path, vosr_home
from vosr.statedict import KeyReport, load_state_dict_strict
from vosr.tiling import blend_tiles

__all__ = [
    "AUTOENCODERS",
    "AutoencoderSpec",
    "PublishedFile",
    "get_autoencoder",
    "Autoencoder",
    "KLAutoencoder",
    "QwenImageAutoencoder",
    "AutoencoderError",
    "load_autoencoder",
    "import_diffusers",
    "autoencoder_dir",
    "autoencoder_files",
    "light_decoder_path",
    "load_light_decoder",
    "build_light_decoder",
    "tiny_kl_config",
    "DECODERS",
]

SD21_SCALING = 0.18215
LIGHT_DECODER_FILE = "sd21_lwdecoder.pth"
DIFFUSERS_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
#: ``--decoder`` choices: the autoencoder's default, the light decoder, the full VAE decoder.
DECODERS = ("default", "light", "vae")


class AutoencoderError(UserError, ValueError):
    """Autoencoder files that cannot be read, or that do not match their registry entry."""


@dataclass(frozen=True)
class PublishedFile:
    """A file of an autoencoder as published: path relative to ``$SCREENSR_HOME/vosr``, source."""

    name: str
    url: str
    description: str


def tiny_kl_config() -> dict[str, Any]:
    """The ``tiny-kl`` AutoencoderKL config: 8x downscale, 4 channels, width 8 (for tests)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [8, 8, 8, 8],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 4,
        "sample_size": 64,
        "scaling_factor": SD21_SCALING,
    }


@dataclass(frozen=True)
class AutoencoderSpec:
    """One registered autoencoder.

    Attributes:
        name: the registry name (``ModelConfig.autoencoder``).
        family: ``kl`` (diffusers ``AutoencoderKL``) or ``qwen-image``
            (``AutoencoderKLQwenImage`` on single frames); selects the loader.
        folder: the diffusers folder under ``$SCREENSR_HOME/vosr`` (or ``--weights-dir``).
        latent_channels: C, checked against the loaded folder.
        light_decoder_file: a light decoder beside the folder that is used by default
            (``sd21_lwdecoder.pth`` for SD2.1), or None. Other ``kl`` autoencoders use a light
            decoder inside their folder only on request (``decoder="light"``); ``qwen-image`` has
            none.
        random_config: for a CPU test size without trained weights, the diffusers config its
            random-init folder is created from (``vosr.components``); None for trained ones.
        files: the published files (for ``screensr weights``).
        description: one line for listings.
    """

    name: str
    family: Literal["kl", "qwen-image"]
    folder: str
    latent_channels: int
    light_decoder_file: str | None = None
    random_config: Callable[[], dict[str, Any]] | None = None
    files: tuple[PublishedFile, ...] = ()
    description: str = ""

    @property
    def random_init(self) -> bool:
        """Whether this is a random-weight test size (no trained weights exist)."""
        return self.random_config is not None

    @property
    def has_light_decoder(self) -> bool:
        """Whether a light decoder can be used with it at all."""
        return self.family == "kl"


_HF_SD21 = "https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/vae/{}"
_HF_VOSR = "https://huggingface.co/CSWRY/VOSR/resolve/main/{}"

AUTOENCODERS: dict[str, AutoencoderSpec] = {
    "sd21": AutoencoderSpec(
        "sd21", "kl", "sd21-vae", 4, light_decoder_file=LIGHT_DECODER_FILE,
        files=(
            *(PublishedFile(f"sd21-vae/{f}", _HF_SD21.format(f),
                            "SD2.1 KL VAE (diffusers folder): structural latent of VOSR-0.5B") for f in DIFFUSERS_FILES),
            PublishedFile(LIGHT_DECODER_FILE, _HF_VOSR.format(LIGHT_DECODER_FILE),
                          "VOSR light decoder for SD2.1 latents (the official 0.5B inference decoder)"),
        ),
        description="Stable Diffusion 2.1 KL VAE (C = 4)",
    ),
    "qwen-image": AutoencoderSpec(
        "qwen-image", "qwen-image", "Qwen-Image-vae-2d", 16,
        files=tuple(
            PublishedFile(f"Qwen-Image-vae-2d/{f}", _HF_VOSR.format(f"Qwen-Image-vae-2d/{f}"),
                          "Qwen-Image VAE, image-only 2-D variant (diffusers folder): latent of VOSR-1.4B")
            for f in DIFFUSERS_FILES
        ),
        description="Qwen-Image VAE, image-only 2-D variant (C = 16)",
    ),
    "tiny-kl": AutoencoderSpec(
        "tiny-kl", "kl", "tiny-kl-vae", 4, random_config=tiny_kl_config,
        description="tiny random-init AutoencoderKL of the vosr-tiny CPU test size",
    ),
}  # fmt: skip


def get_autoencoder(name: str) -> AutoencoderSpec:
    """The registry entry ``name`` (a "did you mean" error for unknown names)."""
    if name not in AUTOENCODERS:
        raise UnknownEntryError("autoencoder", name, AUTOENCODERS)
    return AUTOENCODERS[name]


def import_diffusers():
    """``import diffusers`` (the one place the vosr package imports it), without bitsandbytes.

    diffusers' quantizer registry, imported with its model classes, runs ``import bitsandbytes``
    at module level whenever bitsandbytes is installed (``diffusers.quantizers.bitsandbytes.utils``);
    bitsandbytes 0.4x then logs "Failed to load CPU gemm_4bit_forward from kernels-community" on
    every CPU-only start and imports ``torch._inductor`` (about a second). VOSR never loads
    bitsandbytes-quantised weights, so the availability flag that guard reads is off while the
    model modules are first imported, and restored right after (a later bitsandbytes
    quantisation through diffusers in the same process is then not supported).
    """
    try:
        import diffusers
        from diffusers.utils import import_utils
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("VOSR autoencoders need diffusers: pip install 'screensr[vosr]'") from exc
    if (
        "diffusers.models.modeling_utils" not in sys.modules
        and "bitsandbytes" not in sys.modules
        and getattr(import_utils, "_bitsandbytes_available", False)
    ):
        import_utils._bitsandbytes_available = False
        try:
            import diffusers.models.modeling_utils  # noqa: F401  (pulls in the quantizer registry)
        finally:
            import_utils._bitsandbytes_available = True
    return diffusers


# --- the interface ---------------------------------------------------------------------------


class Autoencoder(nn.Module):
    """Images in [0, 1] <-> backbone latents. Subclasses implement the moments and decode."""

    latent_channels: int = 4
    downscale: int = 8

    def moments(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 2C, H/8, W/8) posterior mean and log-variance."""
        raise NotImplementedError

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) backbone latent -> (B, 3, 8h, 8w) in [-1, 1]."""
        raise NotImplementedError

    def to_backbone(self, sample: torch.Tensor) -> torch.Tensor:
        """Posterior sample -> the latent the backbone sees (scaled / normalised)."""
        raise NotImplementedError

    def encode(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        sample: bool = True,
        tile: int | None = None,
        overlap: int = 64,
    ) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, C, H/8, W/8) backbone latent.

        Samples the posterior (the official behaviour) unless ``sample=False`` (its mean).
        With ``tile``, the posterior moments are computed tile by tile and blended, then one
        global sample is drawn, so tiling does not change the noise.
        """
        if images.shape[-1] % self.downscale or images.shape[-2] % self.downscale:
            raise ValueError(f"image size {tuple(images.shape[-2:])} must be a multiple of {self.downscale}")
        x = images * 2 - 1
        if tile is None:
            moments = self.moments(x)
        else:
            tile = max(self.downscale, tile // self.downscale * self.downscale)
            # overlap: a multiple of the downscale, at most a quarter of the tile
            overlap = max(0, min(overlap, tile // 4) // self.downscale * self.downscale)
            moments = blend_tiles(self.moments, x, tile, overlap, 1 / self.downscale)
        mean, logvar = moments.float().chunk(2, dim=1)
        if sample:
            # DiagonalGaussianDistribution: clamp(logvar, -30, 20), std = exp(logvar / 2)
            std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
            # drawn on the generator's device (CPU in the pipeline) so results are device independent
            gen_device = generator.device if generator is not None else mean.device
            noise = torch.randn(mean.shape, generator=generator, device=gen_device, dtype=mean.dtype)
            mean = mean + std * noise.to(mean.device)
        return self.to_backbone(mean)

    def decode(self, z: torch.Tensor, *, tile: int | None = None, overlap: int = 8) -> torch.Tensor:
        """(B, C, h, w) backbone latent -> (B, 3, 8h, 8w) in [0, 1]; ``tile`` in latent pixels."""
        if tile is None:
            x = self.decode_raw(z)
        else:
            x = blend_tiles(self.decode_raw, z, tile, min(overlap, tile // 4), self.downscale)
        return ((x.float() + 1) / 2).clamp(0, 1)


class KLAutoencoder(Autoencoder):
    """diffusers ``AutoencoderKL`` (SD2.1 or tiny), optionally with the light decoder."""

    vae: Any  # diffusers AutoencoderKL (its config and methods are untyped)
    light_decoder: Any  # a diffusers Decoder, or None

    def __init__(self, vae: nn.Module, light_decoder: nn.Module | None = None) -> None:
        super().__init__()
        self.vae = vae
        self.light_decoder = light_decoder
        self.latent_channels = int(self.vae.config.latent_channels)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.downscale = 2 ** (len(self.vae.config.block_out_channels) - 1)

    def moments(self, x: torch.Tensor) -> torch.Tensor:
        h = self.vae.encoder(x.to(self.vae.dtype))
        if self.vae.quant_conv is not None:
            h = self.vae.quant_conv(h)
        return h

    def to_backbone(self, sample: torch.Tensor) -> torch.Tensor:
        return sample * self.scaling_factor

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        z = z / self.scaling_factor
        if self.light_decoder is not None:
            return self.light_decoder(z.to(next(self.light_decoder.parameters()).dtype))
        return self.vae.decode(z.to(self.vae.dtype)).sample


class QwenImageAutoencoder(Autoencoder):
    """diffusers ``AutoencoderKLQwenImage`` on single frames, per-channel normalised latents."""

    vae: Any  # diffusers AutoencoderKLQwenImage (its config and methods are untyped)
    mean: torch.Tensor  # (1, C, 1, 1) buffers: latents_mean / latents_std of the folder's config
    std: torch.Tensor

    def __init__(self, vae: nn.Module, key_report: KeyReport | None = None) -> None:
        super().__init__()
        self.vae = vae
        self.key_report = key_report  # the load's key report (absent keys and why)
        cfg = self.vae.config
        self.latent_channels = int(cfg.z_dim)
        self.downscale = 2 ** (len(cfg.dim_mult) - 1)
        self.register_buffer("mean", torch.tensor(cfg.latents_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.latents_std).view(1, -1, 1, 1), persistent=False)

    def moments(self, x: torch.Tensor) -> torch.Tensor:
        h = self.vae._encode(x[:, :, None].to(self.vae.dtype))  # (B, 2C, 1, h, w)
        return h[:, :, 0]

    def to_backbone(self, sample: torch.Tensor) -> torch.Tensor:
        return (sample - self.mean) / self.std

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        z = z * self.std + self.mean
        return self.vae.decode(z[:, :, None].to(self.vae.dtype)).sample[:, :, 0]


# --- the light decoder -----------------------------------------------------------------------


@dataclass(frozen=True)
class LightDecoderConfig:
    """The ``config`` stored in ``sd21_lwdecoder.pth``; the released one is (4, 3, (64, 128, 256,
    256), 2), i.e. 3 resnets per up block of a half-width SD decoder."""

    in_channels: int
    out_channels: int
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    norm_num_groups: int = 32


def build_light_decoder(config: Mapping[str, Any]) -> nn.Module:
    """A diffusers ``Decoder`` from the light decoder's stored config (unknown keys raise)."""
    cfg = from_dict(LightDecoderConfig, config, where="light decoder config")
    import_diffusers()
    from diffusers.models.autoencoders.vae import Decoder

    return Decoder(
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        up_block_types=("UpDecoderBlock2D",) * len(cfg.block_out_channels),
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        act_fn="silu",
        mid_block_add_attention=True,
    )


def load_light_decoder(path: str | os.PathLike[str]) -> nn.Module:
    """Load ``sd21_lwdecoder.pth`` (``{config, model_state_dict}`` torch pickle), strictly."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"light decoder {LIGHT_DECODER_FILE} not found at {path}: download "
            f"{_HF_VOSR.format(LIGHT_DECODER_FILE)} there, pass --weights-dir DIR holding it, "
            "or use --decoder vae (the full SD2.1 decoder)"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        raise AutoencoderError(f"{path}: cannot read the light decoder ({exc}); re-download it") from exc
    if not isinstance(blob, dict) or "config" not in blob or "model_state_dict" not in blob:
        raise AutoencoderError(
            f"{path}: expected a dict with 'config' and 'model_state_dict' (the released layout)"
        )
    decoder = build_light_decoder(dict(blob["config"]))
    load_state_dict_strict(decoder, blob["model_state_dict"], source=str(path))
    return decoder.eval()


# --- loading ---------------------------------------------------------------------------------


def autoencoder_dir(name: str, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The diffusers folder of autoencoder ``name``: in ``weights_dir`` when there, else the cache."""
    folder = get_autoencoder(name).folder
    return find_path(folder, vosr_home() / folder, weights_dir)


def autoencoder_files(name: str, weights_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """(config.json, diffusion_pytorch_model.safetensors) of autoencoder ``name``; both must exist.

    Raises:
        MissingFileError: naming the missing file and where it goes.
    """
    folder = autoencoder_dir(name, weights_dir)
    cfg_path, weights = (folder / f for f in DIFFUSERS_FILES)
    for p in (cfg_path, weights):
        if not p.is_file():
            raise MissingFileError(
                f"autoencoder file {p} is missing: the folder {folder} needs config.json and "
                "diffusion_pytorch_model.safetensors (see `screensr weights --group vosr`), or pass "
                f"--weights-dir DIR containing {folder.name}/"
            )
    return cfg_path, weights


def light_decoder_path(
    name: str, decoder: str = "default", weights_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """Where the light decoder of autoencoder ``name`` is read from, or None when it is not used.

    An autoencoder with a ``light_decoder_file`` (SD2.1) uses it unless ``decoder == "vae"``;
    other KL autoencoders use one only on request (``decoder == "light"``, the file inside their
    folder); ``qwen-image`` has none. The path may not exist (``load_light_decoder`` names it then).
    """
    if decoder not in DECODERS:
        raise ConfigError(f"decoder {decoder!r} unknown (choices: light, vae)")
    spec = get_autoencoder(name)
    if not spec.has_light_decoder:
        if decoder == "light":
            raise ConfigError(f"the {name} autoencoder has no light decoder (it exists for the SD2.1 VAE only); use --decoder vae")
        return None
    if spec.light_decoder_file is not None and decoder in ("default", "light"):
        return find_path(spec.light_decoder_file, vosr_home() / spec.light_decoder_file, weights_dir)
    if decoder == "light":
        return autoencoder_dir(name, weights_dir) / LIGHT_DECODER_FILE
    return None


def _inflate_2d_to_3d(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """4-D conv kernels of a 2-D checkpoint -> 5-D causal kernels (2-D kernel at the last tap)."""
    own = model.state_dict()
    out = {}
    for key, value in state.items():
        target = own.get(key)
        if (
            target is not None
            and value.ndim == 4
            and target.ndim == 5
            and value.shape[:2] == target.shape[:2]
            and value.shape[2:] == target.shape[3:]
        ):
            kernel = torch.zeros(target.shape, dtype=value.dtype)
            kernel[:, :, -1] = value
            value = kernel
        elif target is not None and value.ndim == target.ndim - 1 and value.numel() == target.numel():
            value = value.reshape(target.shape)  # e.g. RMS-norm gammas stored without a time axis
        out[key] = value
    return out


# Why the image-only checkpoint lacks the temporal convolutions (shown in the key report).
QWEN_2D_ABSENT_REASON = (
    "the image-only 2-D Qwen-Image VAE has no temporal convolutions (time_conv of the temporal "
    "down/up-samplers); diffusers' 3-D class runs them only from the second frame on, so a single "
    "image never uses them; they were removed from the model, not filled in"
)


def _refuse_temporal(module: nn.Module, args: tuple[Any, ...]) -> None:
    raise RuntimeError(
        "this Qwen-Image VAE was loaded from the image-only 2-D checkpoint, which has no temporal "
        "convolution weights: encode and decode single frames only"
    )


def _remove_temporal_convs(vae: nn.Module) -> list[str]:
    """Remove the weights of every ``time_conv`` (the 2-D checkpoint has none); returns their keys.

    The modules stay (diffusers sizes its causal-conv feature cache by counting them) but hold no
    parameters, and calling one raises: only a second frame would, which VOSR never encodes.
    """
    removed = []
    for name, module in vae.named_modules():
        if name.rpartition(".")[2] != "time_conv":
            continue
        for p in ("weight", "bias"):
            if getattr(module, p, None) is not None:
                removed.append(f"{name}.{p}")
                setattr(module, p, None)  # nn.Module turns this into an unregistered (None) parameter
        module.register_forward_pre_hook(_refuse_temporal)
    return removed


def _read_folder(
    name: str, weights_dir: str | os.PathLike[str] | None
) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]]:
    cfg_path, weights = autoencoder_files(name, weights_dir)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        config = json.loads(cfg_path.read_text())
        state = load_file(str(weights))
    except (OSError, ValueError, SafetensorError) as exc:  # ValueError: json.JSONDecodeError
        raise AutoencoderError(f"{cfg_path.parent}: unreadable autoencoder files ({exc})") from exc
    return weights, config, state


def _load_kl(
    diffusers: ModuleType, config: dict[str, Any], state: dict[str, torch.Tensor], weights: Path, light: Path | None
) -> Autoencoder:
    # diffusers drops (with a warning) bookkeeping keys such as _class_name / _diffusers_version
    vae = diffusers.AutoencoderKL.from_config(config)
    load_state_dict_strict(vae, state, source=str(weights))
    return KLAutoencoder(vae.eval(), load_light_decoder(light) if light is not None else None)


def _load_qwen_image(
    diffusers: ModuleType, config: dict[str, Any], state: dict[str, torch.Tensor], weights: Path, light: Path | None
) -> Autoencoder:
    vae = diffusers.AutoencoderKLQwenImage.from_config(config)
    temporal = [k for k in vae.state_dict() if k.rpartition(".")[0].endswith(".time_conv")]
    absent: list[str] = []
    if temporal and not any(k in state for k in temporal):  # the image-only 2-D layout
        absent = _remove_temporal_convs(vae)
    state = _inflate_2d_to_3d(state, vae)
    report = load_state_dict_strict(
        vae, state, source=str(weights), absent=absent, absent_reason=QWEN_2D_ABSENT_REASON if absent else ""
    )
    return QwenImageAutoencoder(vae.eval(), report)


# family -> loader(diffusers, config, state, weights file, light decoder path or None)
_LOADERS: dict[str, Callable[..., Autoencoder]] = {"kl": _load_kl, "qwen-image": _load_qwen_image}


def load_autoencoder(
    name: str,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    decoder: str = "default",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Autoencoder:
    """Load a registered autoencoder by name (``sd21``, ``qwen-image``, ``tiny-kl``).

    Args:
        decoder: ``"default"`` (the light decoder where the entry has one: SD2.1's
            ``sd21_lwdecoder.pth``, the official 0.5B inference decoder), ``"light"`` or
            ``"vae"`` (the full VAE decoder); see :func:`light_decoder_path`.
    """
    spec = get_autoencoder(name)
    diffusers = import_diffusers()
    light_path = light_decoder_path(name, decoder, weights_dir)
    weights, config, state = _read_folder(name, weights_dir)
    ae = _LOADERS[spec.family](diffusers, config, state, weights, light_path)
    if ae.latent_channels != spec.latent_channels:
        raise AutoencoderError(
            f"{weights.parent}: {ae.latent_channels} latent channels, expected {spec.latent_channels} for {name}"
        )
    return ae.to(device=device, dtype=dtype).eval()
