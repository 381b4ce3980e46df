"""Image in, image out: ``VOSRUpscaler`` (``docs/vosr-reference.md``, "7. Official inference
behaviour (match it where it defines outputs)", with "10. Do better than the official code").

LR (uint8 H x W x 3) -> PIL bicubic x upscale -> pad to a multiple of 8 -> autoencoder latent
c_str -> DINOv2 tokens of the same upsampled image (per latent tile when tiling) -> sample
(multi-step guided Euler, or one/few-step for distilled checkpoints) -> decode -> crop -> 8-bit
conversion and colour fix against the bicubic image (``vosr.colorfix``) -> uint8 (H*u) x (W*u) x 3.

Defaults reproduce the released inference scripts where they define the outputs: truncating
8-bit conversion and the released AdaIN / "wavelet" formulas (``quantize="release"``), the
released tile layout (``tile_layout="release"``). Unlike the official scripts: any size (not only
square), latent and VAE tiling, every setting a real parameter, ``args.json`` never silently
overridden (explicit arguments win and are recorded in ``settings``), and by default each image's
noise seeded from (seed, name) so results do not depend on file order (``noise="release"``
replays the released script's one global generator instead).

``settings`` (and ``plan_pipeline(...).settings()`` without loading anything) is every option
after defaults are applied plus the content hash of each weight file read: equal settings mean
equal outputs.

Options are typed: ``VOSRUpscaler(checkpoint, SamplingConfig(...), device=..., dtype=...,
weights_dir=..., decoder=..., tile_batch=...)``; ``vosr.config.upscaler_options`` builds them
from the flat ``key=value`` form of method specs and the command line.

Example:
    >>> up = VOSRUpscaler("vosr-0.5b-ms", SamplingConfig(steps=8), device="cuda")  # doctest: +SKIP
    >>> sr = up(lr_uint8, upscale=4, name="0001.png")                             # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import UserError
from vosr.autoencoders import autoencoder_files, light_decoder_path, load_autoencoder, load_light_decoder
from vosr.checkpoints import CheckpointError, CheckpointInfo, load_checkpoint, read_checkpoint_config
from vosr.colorfix import finish
from vosr.components import run_weights_dir
from vosr.config import ConfigError, SamplingConfig
from vosr.sampling import ConditionalVelocity, GuidedVelocity, Velocity, sample_euler, sample_two_time, tiled
from vosr.semantic import get_semantic_encoder, load_semantic_encoder, semantic_weights_path
from vosr.tiling import tile_grid
from vosr.weights import file_sha256, resolve_checkpoint

__all__ = [
    "VOSRUpscaler",
    "PipelinePlan",
    "ImageInputError",
    "plan_pipeline",
    "seed_for",
    "check_image",
    "upsampled_size",
]


class ImageInputError(UserError, ValueError):
    """An input image VOSR cannot take as it is (the message names the image and the fix)."""


_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def seed_for(seed: int, name: str | None, stream: str) -> int:
    """A 63-bit seed from (seed, image name, stream): independent of the order images come in."""
    digest = hashlib.sha256(f"{int(seed)}\0{name or ''}\0{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def check_image(image: Any, what: str = "image") -> np.ndarray:
    """Validate an 8-bit RGB array (H, W, 3); the error names the problem and the fix."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what}: expected a numpy uint8 array (H, W, 3), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageInputError(
            f"{what}: dtype {image.dtype}, expected uint8; convert 16-bit / float images to 8-bit RGB first"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        kind = (
            "grayscale"
            if image.ndim == 2 or image.shape[-1] == 1
            else ("RGBA" if image.shape[-1] == 4 else "")
        )
        raise ImageInputError(
            f"{what}: shape {image.shape}{' (' + kind + ')' if kind else ''}, expected (H, W, 3) RGB; "
            "convert it to 3-channel RGB first"
        )
    if min(image.shape[:2]) < 2:
        raise ImageInputError(f"{what}: {image.shape[1]}x{image.shape[0]} is too small (at least 2x2 pixels)")
    return image


def upsampled_size(h: int, w: int, upscale: float) -> tuple[int, int]:
    """(H, W) of the bicubic-upsampled image for an h x w input (round(h * u), round(w * u))."""
    if not upscale or float(upscale) <= 0:
        raise ConfigError(f"upscale must be positive, got {upscale!r}")
    return round(h * float(upscale)), round(w * float(upscale))


# --- the plan: every setting and weight file, resolved without loading a network -------------


@dataclass(frozen=True)
class PipelinePlan:
    """What an upscaler will do: the checkpoint, resolved sampling settings and weight files."""

    info: CheckpointInfo  # config read from the header only
    sampling: SamplingConfig  # resolved (no None defaults left)
    decoder: str  # "light" or "vae"
    dtype: torch.dtype
    tile_batch: int
    device: torch.device
    weights_dir: Path | None
    files: dict[str, Path] = field(default_factory=dict)  # role -> weight file read

    def settings(self) -> dict[str, Any]:
        """Every output-defining option after defaults, plus each weight file's sha256.

        Paths are left out (moving a file changes nothing); the noise device is recorded only for
        ``noise="release"``, whose draws come from the device's own generator.
        """
        out: dict[str, Any] = {
            "model": self.info.config.to_dict(),
            "sampling": self.sampling.to_dict(),
            "decoder": self.decoder,
            "dtype": str(self.dtype).replace("torch.", ""),
            # tiles per pass change the numbers by float rounding only, and nothing without tiles
            "tile_batch": self.tile_batch if self.sampling.tile is not None else 1,
            "files": {role: file_sha256(path) for role, path in sorted(self.files.items())},
        }
        if self.sampling.noise == "release":
            out["noise_device"] = self.device.type
        return out


T = TypeVar("T")


def _resolved(value: T | None, name: str) -> T:
    """A field of a resolved ``SamplingConfig`` (``resolved()`` fills every default)."""
    if value is None:
        raise RuntimeError(f"sampling.{name} is unset: the upscaler's SamplingConfig must come from resolved()")
    return value


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype {dtype!r} unknown (choices: fp32, bf16, fp16)")
    return _DTYPES[dtype]


def plan_pipeline(
    checkpoint: str | os.PathLike[str],
    sampling: SamplingConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "fp32",
    weights_dir: str | os.PathLike[str] | None = None,
    decoder: str = "default",
    tile_batch: int = 1,
) -> PipelinePlan:
    """Resolve a checkpoint and options into a ``PipelinePlan`` (reads headers and configs only).

    Arguments as ``VOSRUpscaler``; ``plan_pipeline(...).settings()`` is the upscaler's
    ``settings`` without loading any network (the benchmark's method identity). Raises the
    loaders' errors for missing weight files, and ``ConfigError`` for bad options.
    """
    sampling = SamplingConfig() if sampling is None else sampling
    torch_dtype = _dtype(dtype)
    if isinstance(tile_batch, bool) or int(tile_batch) < 1:
        raise ConfigError(f"tile_batch must be >= 1, got {tile_batch}")
    if not isinstance(sampling.sample_posterior, bool):  # a string such as "False" must not read as true
        raise ConfigError(f"sample_posterior must be true or false, got {sampling.sample_posterior!r}")
    path = resolve_checkpoint(checkpoint, weights_dir)
    weights_dir = run_weights_dir(path, weights_dir)  # a training run's recorded components folder
    info = read_checkpoint_config(path)
    cfg = info.config
    if cfg.one_step and sampling.guidance is not None and float(sampling.guidance) != 1.0:
        raise ConfigError(
            f"guidance={sampling.guidance}: {info.path} is a one-step (distilled) checkpoint, whose "
            "guidance is distilled in; leave --guidance unset (or use a multi-step checkpoint)"
        )
    resolved = sampling.resolved(one_step=cfg.one_step, patch_size=cfg.patch_size)
    files: dict[str, Path] = {"backbone": info.path}
    files["autoencoder_config"], files["autoencoder"] = autoencoder_files(cfg.autoencoder, weights_dir)
    light = light_decoder_path(cfg.autoencoder, decoder, weights_dir)
    if light is not None:
        if not light.is_file():
            load_light_decoder(light)  # raises its MissingFileError naming the file and the fix
        files["light_decoder"] = light
    spec = get_semantic_encoder(cfg.semantic_encoder)
    sem = semantic_weights_path(spec, weights_dir)
    if not sem.is_file():  # the loader's own message: file, place and fix (it fails before loading)
        load_semantic_encoder(
            cfg.semantic_encoder, cfg.semantic_block, cfg.semantic_size, weights_dir=weights_dir
        )
    files["semantic_encoder"] = sem
    return PipelinePlan(
        info=info,
        sampling=resolved,
        decoder="light" if light is not None else "vae",
        dtype=torch_dtype,
        tile_batch=int(tile_batch),
        device=torch.device(device),
        weights_dir=Path(weights_dir).expanduser() if weights_dir is not None else None,
        files=files,
    )


# --- the upscaler ----------------------------------------------------------------------------


class VOSRUpscaler:
    """VOSR super-resolution of 8-bit RGB arrays.

    Args:
        checkpoint: a release tag (``vosr-0.5b-os``, ``vosr-1.4b-ms``, ...), a run folder
            (``args.json`` + ``checkpoints/ema_model.safetensors``) or a ``.safetensors`` file.
        sampling: the sampling settings (``vosr.config.SamplingConfig``: steps, guidance, weak
            strength, preset, tiling, colour fix, quantisation, noise, seed, posterior); None
            means every default, filled in for the checkpoint (25 guided Euler steps with omega
            0.5 for multi-step checkpoints, 1 step for one-step ones).
        device: torch device.
        dtype: ``fp32`` (default), ``bf16`` or ``fp16`` for the networks.
        weights_dir: extra folder searched first for every weight file.
        decoder: SD2.1 checkpoints: ``light`` (default; the official decoder) or ``vae``.
        tile_batch: latent tiles per network pass when tiling (more is faster on a GPU).
        progress: show a tqdm bar over sampling steps.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        sampling: SamplingConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "fp32",
        weights_dir: str | os.PathLike[str] | None = None,
        decoder: str = "default",
        tile_batch: int = 1,
        progress: bool = False,
    ) -> None:
        plan = plan_pipeline(
            checkpoint, sampling, device=device, dtype=dtype, weights_dir=weights_dir, decoder=decoder,
            tile_batch=tile_batch,
        )  # fmt: skip
        self.plan = plan
        self.device = plan.device
        self.dtype = plan.dtype
        self.progress = progress
        self.sampling = plan.sampling
        self.tile_batch = plan.tile_batch
        self.model, self.info = load_checkpoint(plan.files["backbone"], device=self.device, dtype=self.dtype)
        cfg = self.info.config
        self.autoencoder = load_autoencoder(
            cfg.autoencoder,
            weights_dir=plan.weights_dir,
            decoder=plan.decoder,
            device=self.device,
            dtype=self.dtype,
        )
        self.encoder = load_semantic_encoder(
            cfg.semantic_encoder,
            cfg.semantic_block,
            cfg.semantic_size,
            weights_path=plan.files["semantic_encoder"],
            device=self.device,
            dtype=self.dtype,
        )
        if self.encoder.embed_dim != cfg.semantic_dim:
            raise CheckpointError(
                f"{cfg.semantic_encoder} gives {self.encoder.embed_dim}-d tokens but the checkpoint expects "
                f"{cfg.semantic_dim}"
            )
        self.nfe_last = 0
        self.semantic_passes_last = 0
        self._settings: dict[str, Any] | None = None
        self._release_generator: torch.Generator | None = None
        self.reset_noise()

    @property
    def settings(self) -> dict[str, Any]:
        """Everything that defines the outputs (``PipelinePlan.settings``; computed once)."""
        if self._settings is None:
            self._settings = self.plan.settings()
        return self._settings

    # -- noise -------------------------------------------------------------------------------

    def reset_noise(self) -> None:
        """``noise="release"``: restart the global generator at ``seed`` (a new run of the script)."""
        if self.sampling.noise == "release":
            seed = _resolved(self.sampling.seed, "seed")
            self._release_generator = torch.Generator(device=self.device).manual_seed(seed)

    def _generators(self, name: str | None) -> tuple[torch.Generator, torch.Generator]:
        """(posterior generator, initial-noise generator) for one image."""
        if self._release_generator is not None:
            return self._release_generator, self._release_generator
        seed = _resolved(self.sampling.seed, "seed")
        # drawn on the CPU so results are device independent
        g_vae = torch.Generator(device="cpu").manual_seed(seed_for(seed, name, "vae"))
        g_noise = torch.Generator(device="cpu").manual_seed(seed_for(seed, name, "noise"))
        return g_vae, g_noise

    def _latent_shape(self, H: int, W: int) -> tuple[int, int, int, int]:
        down = self.autoencoder.downscale
        return (1, self.autoencoder.latent_channels, -(-H // down), -(-W // down))

    def skip_noise(self, image_hw: tuple[int, int], upscale: float = 4) -> None:
        """``noise="release"``: advance the generator past one image without computing it.

        Draws what ``__call__`` would draw for an (h, w) input (posterior sample, then initial
        noise), so a rerun that skips finished outputs gives the remaining images the noise the
        released script gives them. Nothing happens for per-image noise.
        """
        g = self._release_generator
        if g is None:
            return
        shape = self._latent_shape(*upsampled_size(*image_hw, upscale))
        if self.sampling.sample_posterior:
            torch.randn(shape, generator=g, device=g.device, dtype=torch.float32)
        torch.randn(shape, generator=g, device=g.device, dtype=torch.float32)

    # -- stages ------------------------------------------------------------------------------

    def _semantic(self, images: torch.Tensor) -> torch.Tensor:
        self.semantic_passes_last += 1
        return self.encoder(images.to(self.device))  # (B, N, E)

    @torch.no_grad()
    def upscale_tensor(
        self,
        lr_up: torch.Tensor,
        *,
        name: str | None = None,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Super-resolve an already upsampled image (1, 3, H, W) in [0, 1] -> same size in [0, 1]."""
        s = self.sampling
        H, W = lr_up.shape[-2:]
        down = self.autoencoder.downscale
        pad_h, pad_w = (-H) % down, (-W) % down
        x = lr_up.to(self.device, torch.float32)
        if pad_h or pad_w:  # arbitrary sizes: replicate the edge to the latent grid, crop after
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        g_vae, g_noise = self._generators(name)
        self.semantic_passes_last = 0
        # the released order: posterior sample first, then the initial noise (one generator in
        # release mode); the trajectory stays fp32
        c_str = self.autoencoder.encode(x, g_vae, sample=s.sample_posterior, tile=s.vae_tile)
        noise = torch.randn(c_str.shape, generator=g_noise, device=g_noise.device, dtype=torch.float32)
        noise = noise.to(self.device)
        c_str = c_str.float()
        h_lat, w_lat = c_str.shape[-2:]
        tile = s.tile
        overlap = _resolved(s.tile_overlap, "tile_overlap") if tile is not None else 0
        single = tile is None or tile_grid(h_lat, w_lat, tile, overlap, s.tile_layout)[:2] == ([0], [0])
        # whole-image DINOv2 tokens only when they are used: tiles take their own region's tokens
        semantic = self._semantic(lr_up) if single else None  # the official code encodes the unpadded image
        base: ConditionalVelocity | GuidedVelocity
        if self.info.config.one_step:
            base = ConditionalVelocity(self.model, c_str, semantic)
        else:
            base = GuidedVelocity(
                self.model, c_str, semantic, _resolved(s.guidance, "guidance"), _resolved(s.weak_strength, "weak_strength")
            )
        velocity: Velocity = base
        if tile is not None and not single:

            def semantic_for_box(y: int, x0: int, h: int, w: int) -> torch.Tensor:
                crop = x[:, :, y * down : (y + h) * down, x0 * down : (x0 + w) * down]
                return self._semantic(crop)

            velocity = tiled(base, c_str, semantic_for_box, tile, overlap, batch=self.tile_batch, layout=s.tile_layout)
        sampler = sample_two_time if self.info.config.one_step else sample_euler
        z0 = sampler(velocity, noise, _resolved(s.steps, "steps"), callback)
        self.nfe_last = int(getattr(velocity, "nfe", 0))
        out = self.autoencoder.decode(z0, tile=None if s.vae_tile is None else max(8, s.vae_tile // down))
        return out[:, :, :H, :W].float()

    def __call__(self, image: np.ndarray, upscale: float = 4, *, name: str | None = None) -> np.ndarray:
        """Super-resolve one 8-bit RGB image.

        Args:
            image: (H, W, 3) uint8.
            upscale: output / input size ratio (the official code uses integer factors).
            name: the image's identity (file name); seeds its noise (``noise="per-image"``).
        Returns:
            (round(H * upscale), round(W * upscale), 3) uint8.
        """
        from PIL import Image

        image = check_image(image, name or "image")
        h, w = image.shape[:2]
        H, W = upsampled_size(h, w, upscale)
        # PIL bicubic, as the official inference upsamples before encoding
        up = np.array(Image.fromarray(image).resize((W, H), Image.Resampling.BICUBIC))
        up_t = torch.from_numpy(up).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H, W) in [0, 1]
        callback = None
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.sampling.steps, desc=f"sampling {name or ''}".strip(), leave=False)

            def callback(i: int, n: int, z: torch.Tensor) -> None:
                bar.update(1)

        try:
            sr = self.upscale_tensor(up_t, name=name, callback=callback)
        finally:
            if bar is not None:
                bar.close()
        return finish(sr, up, self.sampling.color_fix, self.sampling.quantize)
