"""The autoencoders VOSR works in, behind one interface (vosr-reference.md section 3).

``Autoencoder.encode(images, generator)`` maps (B, 3, H, W) images in [0, 1] (H, W multiples
of 8) to the latent the backbone was trained on, (B, C, H/8, W/8); ``decode`` maps back to
[0, 1]. Both accept ``tile`` (image pixels) for large images: overlapping tiles are processed one
at a time and blended with linear ramps over the overlap (``blend_tiles``).

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
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from vosr.config import ConfigError, did_you_mean

__all__ = [
    "AUTOENCODERS",
    "AUTOENCODER_FILES",
    "Autoencoder",
    "KLAutoencoder",
    "QwenImageAutoencoder",
    "load_autoencoder",
    "import_diffusers",
    "autoencoder_files",
    "light_decoder_path",
    "load_light_decoder",
    "build_light_decoder",
    "blend_tiles",
    "tiny_kl_config",
]

SD21_SCALING = 0.18215

# name -> (folder under $SCREENSR_HOME/vosr, latent channels)
AUTOENCODERS: dict[str, tuple[str, int]] = {
    "sd21": ("sd21-vae", 4),
    "qwen-image": ("Qwen-Image-vae-2d", 16),
    "tiny-kl": ("tiny-kl-vae", 4),
}
LIGHT_DECODER_FILE = "sd21_lwdecoder.pth"

# what ``vosr.weights.weight_files`` lists for the autoencoders (path = $SCREENSR_HOME/vosr/name)
AUTOENCODER_FILES = (
    [
        {
            "name": f"sd21-vae/{f}",
            "url": f"https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/vae/{f}",
            "used_by": ["vosr-0.5b-ms", "vosr-0.5b-os"],
            "description": "SD2.1 KL VAE (diffusers folder): structural latent of VOSR-0.5B",
        }
        for f in ("config.json", "diffusion_pytorch_model.safetensors")
    ]
    + [
        {
            "name": LIGHT_DECODER_FILE,
            "url": f"https://huggingface.co/CSWRY/VOSR/resolve/main/{LIGHT_DECODER_FILE}",
            "used_by": ["vosr-0.5b-ms", "vosr-0.5b-os"],
            "description": "VOSR light decoder for SD2.1 latents (the official 0.5B inference decoder)",
        }
    ]
    + [
        {
            "name": f"Qwen-Image-vae-2d/{f}",
            "url": f"https://huggingface.co/CSWRY/VOSR/resolve/main/Qwen-Image-vae-2d/{f}",
            "used_by": ["vosr-1.4b-ms", "vosr-1.4b-os"],
            "description": "Qwen-Image VAE, image-only 2-D variant (diffusers folder): latent of VOSR-1.4B",
        }
        for f in ("config.json", "diffusion_pytorch_model.safetensors")
    ]
)


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


# --- tiling ---------------------------------------------------------------------------------


def _axis_weights(starts: list[int], tile: int, scale: float) -> list[torch.Tensor]:
    """Per tile, 1-D output weights: linear ramps over the overlaps with its neighbours, else 1.

    Every weight is positive, so the normalised blend is a convex combination everywhere.
    """
    n = round(tile * scale)
    out = []
    for i, s in enumerate(starts):
        w = torch.ones(n)
        if i > 0:
            ov = min(n, round((starts[i - 1] + tile - s) * scale))
            if ov > 0:
                w[:ov] = torch.minimum(w[:ov], (torch.arange(ov, dtype=torch.float32) + 0.5) / ov)
        if i + 1 < len(starts):
            ov = min(n, round((s + tile - starts[i + 1]) * scale))
            if ov > 0:
                ramp = ((torch.arange(ov, dtype=torch.float32) + 0.5) / ov).flip(0)
                w[n - ov :] = torch.minimum(w[n - ov :], ramp)
        out.append(w)
    return out


def blend_tiles(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    overlap: int,
    scale: float,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping spatial tiles of ``x`` and blend the outputs.

    Args:
        fn: (B, Cin, h, w) -> (B, Cout, h*scale, w*scale), e.g. an encoder (scale 1/8) or a
            decoder (scale 8).
        x: (B, Cin, H, W).
        tile: tile side in ``x``'s pixels; overlap: pixels shared by neighbours (keep both
            multiples of 1/scale when scale < 1).
    Returns:
        (B, Cout, H*scale, W*scale); exactly ``fn(x)`` when one tile covers ``x``.
    """
    from vosr.sampling import tile_boxes

    H, W = x.shape[-2:]
    th, tw = min(tile, H), min(tile, W)
    ys, xs = tile_boxes(H, tile, overlap), tile_boxes(W, tile, overlap)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x)
    wys, wxs = _axis_weights(ys, th, scale), _axis_weights(xs, tw, scale)
    out = norm = None
    for y, wy in zip(ys, wys, strict=True):
        for x0, wx in zip(xs, wxs, strict=True):
            y_out = fn(x[:, :, y : y + th, x0 : x0 + tw]).float()  # (B, Cout, oh, ow)
            oh, ow = y_out.shape[-2:]
            oy, ox = round(y * scale), round(x0 * scale)
            if out is None:
                out = torch.zeros(*y_out.shape[:2], round(H * scale), round(W * scale), device=y_out.device)
                norm = torch.zeros(out.shape[-2:], device=y_out.device)
            wgt = (wy[:, None] * wx[None, :]).to(y_out.device)
            out[:, :, oy : oy + oh, ox : ox + ow] += y_out * wgt
            norm[oy : oy + oh, ox : ox + ow] += wgt
    return (out / norm).to(x.dtype)


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

    def __init__(self, vae: nn.Module, light_decoder: nn.Module | None = None) -> None:
        super().__init__()
        self.vae = vae
        self.light_decoder = light_decoder
        self.latent_channels = int(vae.config.latent_channels)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.downscale = 2 ** (len(vae.config.block_out_channels) - 1)

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

    def __init__(self, vae: nn.Module, key_report=None) -> None:
        super().__init__()
        self.vae = vae
        self.key_report = key_report  # vosr.checkpoints.KeyReport of the load (absent keys and why)
        cfg = vae.config
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


def build_light_decoder(config: dict) -> nn.Module:
    """A diffusers ``Decoder`` from the light decoder's stored config.

    Args:
        config: ``{in_channels, out_channels, block_out_channels, layers_per_block}``; the
            released one is (4, 3, (64, 128, 256, 256), 2), i.e. 3 resnets per up block.
    """
    import_diffusers()
    from diffusers.models.autoencoders.vae import Decoder

    known = {"in_channels", "out_channels", "block_out_channels", "layers_per_block", "norm_num_groups"}
    unknown = set(config) - known
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"light decoder config: unknown key {key!r}{did_you_mean(key, sorted(known))}")
    blocks = tuple(config["block_out_channels"])
    return Decoder(
        in_channels=int(config["in_channels"]),
        out_channels=int(config["out_channels"]),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        block_out_channels=blocks,
        layers_per_block=int(config["layers_per_block"]),
        norm_num_groups=int(config.get("norm_num_groups", 32)),
        act_fn="silu",
        mid_block_add_attention=True,
    )


def load_light_decoder(path: str | os.PathLike[str]) -> nn.Module:
    """Load ``sd21_lwdecoder.pth`` (``{config, model_state_dict}`` torch pickle), strictly."""
    from vosr.checkpoints import load_state_dict_strict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"light decoder {LIGHT_DECODER_FILE} not found at {path}: download "
            f"{AUTOENCODER_FILES[2]['url']} there, pass --weights-dir DIR holding it, "
            "or use --decoder vae (the full SD2.1 decoder)"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the light decoder ({exc})") from exc
    if not isinstance(blob, dict) or "config" not in blob or "model_state_dict" not in blob:
        raise ValueError(
            f"{path}: expected a dict with 'config' and 'model_state_dict' (the released layout)"
        )
    decoder = build_light_decoder(dict(blob["config"]))
    load_state_dict_strict(decoder, blob["model_state_dict"], source=str(path))
    return decoder.eval()


# --- loading ---------------------------------------------------------------------------------


def tiny_kl_config() -> dict:
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


def autoencoder_dir(name: str, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    from vosr.weights import find_path, vosr_home

    if name not in AUTOENCODERS:
        raise ConfigError(f"unknown autoencoder {name!r}{did_you_mean(name, list(AUTOENCODERS))}")
    folder = AUTOENCODERS[name][0]
    return find_path(folder, vosr_home() / folder, weights_dir)


def autoencoder_files(name: str, weights_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """(config.json, diffusion_pytorch_model.safetensors) of autoencoder ``name``; both must exist.

    Raises:
        FileNotFoundError: naming the missing file and where it goes.
    """
    folder = autoencoder_dir(name, weights_dir)
    cfg_path = folder / "config.json"
    weights = folder / "diffusion_pytorch_model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise FileNotFoundError(
                f"autoencoder file {p} is missing: the folder {folder} needs config.json and "
                "diffusion_pytorch_model.safetensors (see `screensr weights --group vosr`), or pass "
                f"--weights-dir DIR containing {folder.name}/"
            )
    return cfg_path, weights


def light_decoder_path(
    name: str, decoder: str = "default", weights_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """Where the light decoder of autoencoder ``name`` is read from, or None when it is not used.

    ``sd21`` uses ``sd21_lwdecoder.pth`` unless ``decoder == "vae"``; other KL autoencoders use
    one only on request (``decoder == "light"``, the file inside their folder); ``qwen-image``
    has none. The path may not exist (``load_light_decoder`` names it then).
    """
    if decoder not in ("default", "light", "vae"):
        raise ConfigError(f"decoder {decoder!r} unknown (choices: light, vae)")
    if name == "qwen-image":
        if decoder == "light":
            raise ConfigError("the light decoder exists for the SD2.1 VAE only; use --decoder vae")
        return None
    if name == "sd21" and decoder in ("default", "light"):
        from vosr.weights import find_path, vosr_home

        return find_path(LIGHT_DECODER_FILE, vosr_home() / LIGHT_DECODER_FILE, weights_dir)
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


def _refuse_temporal(module: nn.Module, args: tuple) -> None:
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
) -> tuple[Path, dict, dict[str, torch.Tensor]]:
    cfg_path, weights = autoencoder_files(name, weights_dir)
    from safetensors.torch import load_file

    try:
        config = json.loads(cfg_path.read_text())
        state = load_file(str(weights))
    except Exception as exc:
        raise ValueError(f"{cfg_path.parent}: unreadable autoencoder files ({exc})") from exc
    return weights, config, state


def _from_config(cls, config: dict):
    # diffusers drops (with a warning) the bookkeeping keys such as _class_name / _diffusers_version
    return cls.from_config(config)


def load_autoencoder(
    name: str,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    decoder: str = "default",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Autoencoder:
    """Load an autoencoder by name (``sd21``, ``qwen-image``, ``tiny-kl``).

    Args:
        decoder: for ``sd21``: ``"light"`` (``sd21_lwdecoder.pth``, the official 0.5B inference
            decoder; the default), or ``"vae"`` (the full SD2.1 decoder). Other autoencoders
            accept only ``"vae"`` / ``"default"``.
    """
    diffusers = import_diffusers()
    from vosr.checkpoints import load_state_dict_strict

    light_path = light_decoder_path(name, decoder, weights_dir)
    weights, config, state = _read_folder(name, weights_dir)
    folder = weights.parent
    if name == "qwen-image":
        vae = _from_config(diffusers.AutoencoderKLQwenImage, config)
        temporal = [k for k in vae.state_dict() if k.rpartition(".")[0].endswith(".time_conv")]
        absent: list[str] = []
        if temporal and not any(k in state for k in temporal):  # the image-only 2-D layout
            absent = _remove_temporal_convs(vae)
        state = _inflate_2d_to_3d(state, vae)
        report = load_state_dict_strict(
            vae,
            state,
            source=str(weights),
            absent=absent,
            absent_reason=QWEN_2D_ABSENT_REASON if absent else "",
        )
        ae: Autoencoder = QwenImageAutoencoder(vae.eval(), report)
    else:
        vae = _from_config(diffusers.AutoencoderKL, config)
        load_state_dict_strict(vae, state, source=str(weights))
        light = load_light_decoder(light_path) if light_path is not None else None
        ae = KLAutoencoder(vae.eval(), light)
    expected = AUTOENCODERS[name][1]
    if ae.latent_channels != expected:
        raise ValueError(f"{folder}: {ae.latent_channels} latent channels, expected {expected} for {name}")
    return ae.to(device=device, dtype=dtype).eval()
