"""Typed configurations of the VOSR model and its sampler, and the named model sizes.

``ModelConfig`` describes one backbone together with the autoencoder and semantic encoder it was
trained with, so a checkpoint that stores it (see ``vosr.checkpoints``) rebuilds its whole
pipeline alone. ``SamplingConfig`` holds the inference settings. Both are loaded through
``core.config`` (unknown keys rejected with a "did you mean", values type-checked).

The sizes are the released ones (``docs/vosr-reference.md``, "1. Backbone (a LightningDiT
variant)"); ``vosr-tiny`` is a CPU test size whose autoencoder and semantic encoder are tiny
random-weight versions of the real classes.

Example:
    >>> cfg = model_config("vosr-0.5b", one_step=True)
    >>> cfg.hidden_size, cfg.depth, cfg.latent_channels, cfg.mlp_hidden
    (1024, 28, 4, 2730)
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.config import from_dict, merge
from core.errors import ConfigError, UnknownNameError, did_you_mean

__all__ = [
    "ConfigError",
    "UnknownEntryError",
    "ModelConfig",
    "SamplingConfig",
    "SAMPLING_PRESETS",
    "SAMPLING_FIELDS",
    "UpscalerOptions",
    "upscaler_options",
    "RELEASE_SEED",
    "RELEASE_TILE_OVERLAP_PX",
    "MODEL_SIZES",
    "list_models",
    "model_config",
]


class UnknownEntryError(UnknownNameError, ConfigError):
    """A name no ``vosr`` registry holds (model size, autoencoder, semantic encoder, release, recipe).

    A ``KeyError`` like every registry lookup (``core.errors.UnknownNameError``) and the
    ``ConfigError`` (``ValueError``) that vosr's lookups always raised, so callers catching
    either keep working. The message ends in a "did you mean" or the list of choices.
    """


@dataclass(frozen=True)
class ModelConfig:
    """One VOSR backbone plus the autoencoder and semantic encoder it pairs with.

    The backbone maps ``x`` (B, 2C, H, W) = [c_str, z_t] to a velocity (B, C, H, W) in the latent
    space of ``autoencoder``; H and W are latent pixels (image pixels / 8).
    """

    name: str = "vosr-0.5b"
    hidden_size: int = 1024  # D
    depth: int = 28
    num_heads: int = 16  # head_dim = D / heads = 64 in every released size
    patch_size: int = 2
    latent_channels: int = 4  # C; the model reads 2C channels ([c_str, z_t]) and returns C
    semantic_dim: int = 768  # E, width of the semantic tokens (DINOv2 embed dim)
    mlp_ratio: float = 4.0  # SwiGLU hidden = int(2/3 * mlp_ratio * D), LLaMA's parameter-matching rule
    encdim_ratio: int = 3  # mlp_ca hidden = encdim_ratio * D
    # Latent side of the training resolution (512 px / 8 = 64); it fixes the RoPE buffer grid
    # (input_size / patch_size = 32 tokens a side) that the released checkpoints store.
    input_size: int = 64
    one_step: bool = False  # adds the second-time embedder r_embedder (distilled student)
    grad_checkpointing: bool = False  # recompute blocks in backward (training memory)
    autoencoder: str = "sd21"  # a name in vosr.autoencoders.AUTOENCODERS
    semantic_encoder: str = "dinov2_vitb14"  # a name in vosr.conditions.SEMANTIC_ENCODERS
    semantic_block: int = 8  # index of the encoder block whose (un-normalised) output is used
    semantic_size: int = 448  # the encoder's input side in pixels

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.head_dim % 4:
            raise ConfigError(f"head_dim {self.head_dim} must be a multiple of 4 for the 2-D RoPE")
        if self.input_size % self.patch_size:
            raise ConfigError(
                f"input_size {self.input_size} is not a multiple of patch_size {self.patch_size}"
            )
        for key in ("hidden_size", "depth", "num_heads", "patch_size", "latent_channels", "semantic_dim"):
            if int(getattr(self, key)) <= 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        # int(2/3 * 4D): 2730 for D = 1024, 4096 for D = 1536, 341 for D = 128
        return int(2 / 3 * self.mlp_ratio * self.hidden_size)

    @property
    def grid_size(self) -> int:
        """Tokens per side of the trained grid (the RoPE buffers hold grid_size**2 positions)."""
        return self.input_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "model config") -> ModelConfig:
        """The config of ``data`` (unknown keys and wrong types raise ``ConfigError``)."""
        return from_dict(cls, data, where=source)

    def replace(self, **overrides: Any) -> ModelConfig:
        """A copy with ``overrides`` applied, checked like file values."""
        return merge(self, overrides, where="overrides")


ColorFix = Literal["adain", "wavelet", "none"]
Quantize = Literal["release", "round"]
NoiseMode = Literal["per-image", "release"]
TileLayout = Literal["release", "rect"]
# the Literal choices, checked again in __post_init__ for direct construction
_CHOICES: dict[str, tuple[str, ...]] = {
    "color_fix": typing.get_args(ColorFix),
    "quantize": typing.get_args(Quantize),
    "noise": typing.get_args(NoiseMode),
    "tile_layout": typing.get_args(TileLayout),
}

# The released scripts' --tile_overlap defaults in image pixels: inference_vosr.py (multi-step)
# and inference_vosr_onestep.py (one-step).
RELEASE_TILE_OVERLAP_PX = {False: 4, True: 32}
# The released scripts' --seed default (one global torch.manual_seed for the whole run).
RELEASE_SEED = 42
# Named guidance presets: the omega of the paper's benchmark settings (multi-step only).
SAMPLING_PRESETS: dict[str, dict[str, float]] = {"screensr": {"guidance": 0.5}, "realsr": {"guidance": -0.5}}


@dataclass(frozen=True)
class SamplingConfig:
    """Inference settings. ``None`` means "the checkpoint's default" (see ``resolved``).

    Multi-step checkpoints default to 25 Euler steps with guidance omega = 0.5 and weak
    structural strength 0.15 (the official code's value); one-step checkpoints default to 1 step
    without guidance. omega = 0.5 is the released README's practical default (and the ScreenSR
    benchmark preset; RealSR used -0.5); the released script's own ``--cfg_scale`` default, 2.0,
    is not what its README recommends.

    The defaults of ``tile_layout``, ``quantize`` and ``color_fix`` reproduce the released
    inference scripts; ``noise`` defaults to per-image seeding (order independent), ``release``
    replays the released script's single global generator.
    """

    steps: int | None = None
    guidance: float | None = None  # omega in v = v_p + omega (v_c - v_p); 1 = plain conditional
    weak_strength: float | None = None  # w in the partial condition (w * c_str, zero semantics)
    preset: str | None = None  # a SAMPLING_PRESETS name: fills guidance when it is not given
    tile: int | None = None  # latent tile side (pixels / 8); None = no tiling
    # latent pixels shared by tiles; None = the layout's default (see ``resolved``)
    tile_overlap: int | None = None
    tile_layout: TileLayout = "release"  # release: square tiles as released; rect: per-axis tiles
    vae_tile: int | None = None  # image-space tile side for VAE encode/decode; None = whole image
    color_fix: ColorFix = "adain"
    quantize: Quantize = "release"  # release: truncate to 8 bits before and after the colour fix
    noise: NoiseMode = "per-image"
    seed: int | None = None  # None = 0 (per-image noise) or 42 (release noise, the released default)
    sample_posterior: bool = True  # the official code samples the VAE posterior, not its mode

    def __post_init__(self) -> None:
        if self.steps is not None and int(self.steps) < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        for key, choices in _CHOICES.items():
            value = getattr(self, key)
            if value not in choices:
                raise ConfigError(f"{key} {value!r} unknown{did_you_mean(str(value), list(choices))}")
        if self.preset is not None and self.preset not in SAMPLING_PRESETS:
            raise ConfigError(
                f"preset {self.preset!r} unknown{did_you_mean(str(self.preset), list(SAMPLING_PRESETS))}"
            )
        if self.tile is not None and int(self.tile) < 2:
            raise ConfigError(f"tile must be at least 2 latent pixels, got {self.tile}")
        if self.tile_overlap is not None:
            if self.tile is None:
                raise ConfigError(
                    "tile_overlap is set but tiling is off: give tile too (or drop tile_overlap)"
                )
            if not 0 <= int(self.tile_overlap) < int(self.tile):
                raise ConfigError(f"tile_overlap {self.tile_overlap} must be in [0, tile={self.tile})")
        if self.vae_tile is not None and self.vae_tile < 64:
            raise ConfigError(f"vae_tile must be at least 64 pixels, got {self.vae_tile}")

    def resolved(self, one_step: bool, patch_size: int = 2) -> SamplingConfig:
        """A copy with every default filled in for a multi- or one-step checkpoint.

        Values get canonical types (``steps=25`` and ``steps=25.0`` resolve alike) and the preset
        is folded into ``guidance``, so equal resolved configs mean equal outputs.

        Tiles (latent pixels; the released scripts take pixels T and use T // 8):

        * ``release``: tile = max(tile // patch * patch, patch); overlap = max(tile_overlap,
          tile // 8) with tile_overlap defaulting to the released ``--tile_overlap`` // 8
          (4 px multi-step -> 0, 32 px one-step -> 4). Per image, ``vosr.sampling.tile_grid``
          then uses square tiles of min(tile, h, w) and overlap min(overlap, tile - 1).
        * ``rect``: tile as given, overlap = tile_overlap or min(16, tile // 4), tiles of
          min(tile, h) x min(tile, w).
        """
        if one_step:
            defaults: dict[str, Any] = {"steps": 1, "guidance": 1.0, "weak_strength": 0.15}
        else:
            defaults = {"steps": 25, "guidance": 0.5, "weak_strength": 0.15}
        if self.preset is not None:
            if one_step:
                raise ConfigError(
                    f"preset {self.preset!r} sets the guidance of multi-step sampling; a one-step "
                    "(distilled) checkpoint has its guidance distilled in: drop the preset"
                )
            defaults.update(SAMPLING_PRESETS[self.preset])
        values = {k: (getattr(self, k) if getattr(self, k) is not None else v) for k, v in defaults.items()}
        values = {
            "steps": int(values["steps"]),
            "guidance": float(values["guidance"]),
            "weak_strength": float(values["weak_strength"]),
            "preset": None,
            "seed": int(
                self.seed if self.seed is not None else (RELEASE_SEED if self.noise == "release" else 0)
            ),
        }
        if self.tile is not None:
            tile = int(self.tile)
            if self.tile_layout == "release":
                tile = max(tile // patch_size * patch_size, patch_size)
                given = (
                    self.tile_overlap
                    if self.tile_overlap is not None
                    else RELEASE_TILE_OVERLAP_PX[one_step] // 8
                )
                overlap = max(int(given), tile // 8)
            else:
                overlap = int(self.tile_overlap) if self.tile_overlap is not None else min(16, tile // 4)
            values.update(tile=tile, tile_overlap=min(overlap, tile - 1))
        if self.vae_tile is not None:
            values["vae_tile"] = int(self.vae_tile)
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "sampling config") -> SamplingConfig:
        """The config of ``data`` (unknown keys and wrong types raise ``ConfigError``)."""
        return from_dict(cls, data, where=source)


#: The option names of :class:`SamplingConfig` (``--steps``, ``vosr-0.5b-ms@steps=8``).
SAMPLING_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SamplingConfig))


DType = Literal["fp32", "float32", "bf16", "fp16"]
Decoder = Literal["default", "light", "vae"]


@dataclass(frozen=True)
class UpscalerOptions:
    """Every option of ``vosr.pipeline.VOSRUpscaler`` but the checkpoint, device and progress bar.

    ``sampling`` defines the outputs together with the checkpoint; the others say how the
    networks run (``dtype``, ``tile_batch``), where weight files are looked for first
    (``weights_dir``) and which decoder the SD2.1 autoencoder uses (``decoder``).
    """

    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    dtype: DType = "fp32"  # network precision
    weights_dir: Path | None = None  # a folder searched first for every weight file
    decoder: Decoder = "default"  # SD2.1: light decoder (default, as released) or the full VAE decoder
    tile_batch: int = 1  # latent tiles per network pass when tiling

    def __post_init__(self) -> None:
        if int(self.tile_batch) < 1:
            raise ConfigError(f"tile_batch must be >= 1, got {self.tile_batch}")


#: The flat option names of ``name@key=value`` method specs: the sampling fields, then the rest.
UPSCALER_OPTION_NAMES: tuple[str, ...] = SAMPLING_FIELDS + tuple(
    f.name for f in dataclasses.fields(UpscalerOptions) if f.name != "sampling"
)


def upscaler_options(flat: Mapping[str, Any], *, where: str = "VOSR options") -> UpscalerOptions:
    """Typed options from one flat mapping (``{"steps": 8, "dtype": "bf16"}``), as method specs
    (``vosr-0.5b-ms@steps=8@dtype=bf16``) and ``screensr vosr infer`` give them.

    Sampling keys go to ``sampling``; every value is checked by ``core.config``.

    Raises:
        ConfigError: an unknown option (``unknown option 'stpes' (did you mean 'steps'?)``) or a
            value of the wrong type or range, prefixed by ``where``.
    """
    for key in flat:
        if key not in UPSCALER_OPTION_NAMES:
            raise ConfigError(f"{where}: unknown option {key!r}{did_you_mean(str(key), UPSCALER_OPTION_NAMES)}")
    # the sampling part first, so an error names the option as written (where.steps)
    sampling = from_dict(SamplingConfig, {k: v for k, v in flat.items() if k in SAMPLING_FIELDS}, where=where)
    rest: dict[str, Any] = {k: v for k, v in flat.items() if k not in SAMPLING_FIELDS}
    return from_dict(UpscalerOptions, {**rest, "sampling": sampling}, where=where)


# name -> config; the keys are the CLI / create_model choices
MODEL_SIZES: dict[str, ModelConfig] = {
    # VOSR-0.5B: SD2.1 VAE (C = 4), DINOv2 ViT-B/14 block 8
    "vosr-0.5b": ModelConfig(name="vosr-0.5b"),
    # VOSR-1.4B: Qwen-Image 2-D VAE (C = 16), DINOv2 ViT-L/14 block 17
    "vosr-1.4b": ModelConfig(
        name="vosr-1.4b",
        hidden_size=1536,
        depth=36,
        num_heads=24,
        latent_channels=16,
        semantic_dim=1024,
        autoencoder="qwen-image",
        semantic_encoder="dinov2_vitl14",
        semantic_block=17,
    ),
    # CPU test size: the golden tiny shape (D 128, 2 blocks, 8x8 trained token grid) with a tiny
    # KL autoencoder and a tiny DINOv2-style ViT (embed 64) that run through the real code paths.
    "vosr-tiny": ModelConfig(
        name="vosr-tiny",
        hidden_size=128,
        depth=2,
        num_heads=2,
        latent_channels=4,
        semantic_dim=64,
        input_size=16,
        autoencoder="tiny-kl",
        semantic_encoder="dinov2_tiny",
        semantic_block=1,
        semantic_size=56,
    ),
}


def list_models() -> list[str]:
    """Names accepted by ``model_config`` and ``vosr.create_model``."""
    return sorted(MODEL_SIZES)


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of size ``name`` with ``overrides`` applied (unknown keys rejected)."""
    if name not in MODEL_SIZES:
        raise UnknownEntryError("VOSR model", name, MODEL_SIZES)
    base = MODEL_SIZES[name]
    return base.replace(**overrides) if overrides else base
