"""Typed configurations of the VOSR model and its sampler, and the named model sizes.

``ModelConfig`` describes one backbone together with the autoencoder and semantic encoder it was
trained with, so a checkpoint that stores it (see ``vosr.checkpoints``) rebuilds its whole
pipeline alone. ``SamplingConfig`` holds the inference settings. Both reject unknown keys with a
"did you mean" suggestion.

The sizes are the released ones (vosr-reference.md section 1); ``vosr-tiny`` is a CPU test size
whose autoencoder and semantic encoder are tiny random-weight versions of the real classes.

Example:
    >>> cfg = model_config("vosr-0.5b", one_step=True)
    >>> cfg.hidden_size, cfg.depth, cfg.latent_channels, cfg.mlp_hidden
    (1024, 28, 4, 2730)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = [
    "ConfigError",
    "ModelConfig",
    "SamplingConfig",
    "SAMPLING_PRESETS",
    "RELEASE_SEED",
    "RELEASE_TILE_OVERLAP_PX",
    "MODEL_SIZES",
    "list_models",
    "model_config",
    "config_from_dict",
    "did_you_mean",
]


class ConfigError(ValueError):
    """A configuration value or key a user can fix (printed without a traceback by the CLI)."""

    is_user_error = True


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or a list of all of them."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (choices: {', '.join(sorted(choices))})"


T = TypeVar("T")


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys with a suggestion.

    Args:
        cls: a dataclass type.
        data: key -> value; tuples may arrive as lists (JSON/YAML) and are converted back.
        source: where ``data`` came from (a file name), for the error message.
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"{source}: unknown key {key!r} for {cls.__name__}{did_you_mean(key, names)}")
    values = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            v = data[f.name]
            values[f.name] = tuple(v) if isinstance(v, list) else v
    try:
        return cls(**values)
    except TypeError as exc:  # a wrong value type surfaces here
        raise ConfigError(f"{source}: {exc}") from exc


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
        return config_from_dict(cls, data, source=source)

    def replace(self, **overrides: Any) -> ModelConfig:
        return config_from_dict(ModelConfig, {**self.to_dict(), **overrides}, source="overrides")


ColorFix = Literal["adain", "wavelet", "none"]
Quantize = Literal["release", "round"]
NoiseMode = Literal["per-image", "release"]
TileLayout = Literal["release", "rect"]
_CHOICES: dict[str, tuple[str, ...]] = {
    "color_fix": ("adain", "wavelet", "none"),
    "quantize": ("release", "round"),
    "noise": ("per-image", "release"),
    "tile_layout": ("release", "rect"),
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
        return config_from_dict(cls, data, source=source)


def _size(**kw: Any) -> ModelConfig:
    return ModelConfig(**kw)


# name -> config; the keys are the CLI / create_model choices
MODEL_SIZES: dict[str, ModelConfig] = {
    # VOSR-0.5B: SD2.1 VAE (C = 4), DINOv2 ViT-B/14 block 8
    "vosr-0.5b": _size(name="vosr-0.5b"),
    # VOSR-1.4B: Qwen-Image 2-D VAE (C = 16), DINOv2 ViT-L/14 block 17
    "vosr-1.4b": _size(
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
    "vosr-tiny": _size(
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
        raise ConfigError(f"unknown VOSR model {name!r}{did_you_mean(name, list(MODEL_SIZES))}")
    base = MODEL_SIZES[name]
    return base.replace(**overrides) if overrides else base
