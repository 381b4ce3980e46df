"""The two conditions of VOSR and their partial (weak) form (vosr-reference.md section 2).

* **Structural condition** c_str: the autoencoder latent of the LR image upsampled to the HR
  size (``structural_latent``); it enters the backbone by channel concatenation.
* **Semantic condition**: DINOv2 tokens of the same upsampled image, taken from one block's
  output before the final norm, CLS dropped (``SemanticEncoder``). The ViT is timm's
  ``VisionTransformer`` (no rewrite); the released weights are the torch-hub DINOv2 files,
  converted by timm's own checkpoint filter. Their 37x37 position embedding is resampled to the
  448 px grid **the hub's way** (bicubic by scale factor (grid + 0.1) / 37, no antialias),
  because timm's default resampling (``size=``, antialias) gives numerically different features.
* **Partial condition**: w * c_str and zero semantic tokens (``partial_condition``).

Training helpers for the other side of the package live here too, so both sides build the
conditions the same way: ``noisy_structure`` (c_str noise augmentation) and
``drop_conditions`` (per-sample condition dropout to the partial condition).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vosr.config import ConfigError, did_you_mean

__all__ = [
    "SemanticEncoderSpec",
    "SEMANTIC_ENCODERS",
    "SemanticEncoder",
    "load_semantic_encoder",
    "build_semantic_encoder",
    "resample_pos_embed_hub",
    "preprocess_for_semantic",
    "structural_latent",
    "partial_condition",
    "noisy_structure",
    "drop_conditions",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/{0}/{0}_pretrain.pth"


@dataclass(frozen=True)
class SemanticEncoderSpec:
    """A DINOv2-style ViT: architecture, the grid its position embedding was trained on, weights."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 14
    pretrain_grid: int = 37  # 518 px / 14: the grid of the checkpoint's pos_embed
    weights_file: str = ""  # file name in $TORCH_HOME/hub/checkpoints (the hub's cache layout)
    url: str | None = None
    description: str = ""


SEMANTIC_ENCODERS: dict[str, SemanticEncoderSpec] = {
    "dinov2_vits14": SemanticEncoderSpec(
        "dinov2_vits14", 384, 12, 6, weights_file="dinov2_vits14_pretrain.pth",
        url=DINOV2_URL.format("dinov2_vits14"), description="DINOv2 ViT-S/14 (not used by a release)",
    ),
    "dinov2_vitb14": SemanticEncoderSpec(
        "dinov2_vitb14", 768, 12, 12, weights_file="dinov2_vitb14_pretrain.pth",
        url=DINOV2_URL.format("dinov2_vitb14"), description="DINOv2 ViT-B/14, semantic encoder of VOSR-0.5B",
    ),
    "dinov2_vitl14": SemanticEncoderSpec(
        "dinov2_vitl14", 1024, 24, 16, weights_file="dinov2_vitl14_pretrain.pth",
        url=DINOV2_URL.format("dinov2_vitl14"), description="DINOv2 ViT-L/14, semantic encoder of VOSR-1.4B",
    ),
    # CPU test size: same classes and checkpoint format, a 5x5 "pretraining" grid (70 px)
    "dinov2_tiny": SemanticEncoderSpec(
        "dinov2_tiny", 64, 2, 2, pretrain_grid=5, weights_file="dinov2_tiny_pretrain.pth",
        url=None, description="tiny random DINOv2-style ViT for tests (vosr-tiny)",
    ),
}  # fmt: skip


def semantic_encoder_spec(name: str) -> SemanticEncoderSpec:
    if name not in SEMANTIC_ENCODERS:
        raise ConfigError(f"unknown semantic encoder {name!r}{did_you_mean(name, list(SEMANTIC_ENCODERS))}")
    return SEMANTIC_ENCODERS[name]


def resample_pos_embed_hub(pos_embed: torch.Tensor, grid: int, offset: float = 0.1) -> torch.Tensor:
    """DINOv2 hub position-embedding resampling to a ``grid`` x ``grid`` token grid.

    As ``DinoVisionTransformer.interpolate_pos_encoding`` (facebookresearch/dinov2): bicubic
    ``F.interpolate`` by ``scale_factor = (grid + offset) / M`` with no antialias, computed in
    float32, CLS position kept.

    Args:
        pos_embed: (1, 1 + M*M, E) with M the pretraining grid.
        grid: target tokens per side.
    Returns:
        (1, 1 + grid*grid, E).
    """
    n = pos_embed.shape[1] - 1
    m = int(math.sqrt(n))
    if m * m != n:
        raise ValueError(f"pos_embed with {n} patch positions is not a square grid")
    if m == grid:
        return pos_embed
    dim = pos_embed.shape[-1]
    pe = pos_embed.float()
    cls, patches = pe[:, :1], pe[:, 1:]
    scale = (grid + offset) / m
    patches = F.interpolate(
        patches.reshape(1, m, m, dim).permute(0, 3, 1, 2),
        scale_factor=(scale, scale),
        mode="bicubic",
        antialias=False,
    )
    if patches.shape[-2:] != (grid, grid):  # the offset exists to make floor() land on grid
        raise ValueError(f"hub resampling gave {tuple(patches.shape[-2:])}, expected {(grid, grid)}")
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
    return torch.cat([cls, patches], dim=1).to(pos_embed.dtype)


def preprocess_for_semantic(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, size, size) ImageNet-normalised encoder input.

    Bicubic resize ignoring the aspect ratio, no antialias, clipped to [0, 1] (the official
    preprocessing).
    """
    x = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=False)
    x = x.clamp(0, 1)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class SemanticEncoder(nn.Module):
    """A timm ViT returning one block's raw tokens: (B, 3, H, W) in [0,1] -> (B, N, E).

    N = (image_size / patch)^2 (1024 at 448 px). Only the blocks up to ``block`` run.
    """

    def __init__(self, vit: nn.Module, block: int, image_size: int) -> None:
        super().__init__()
        if not 0 <= block < len(vit.blocks):
            raise ConfigError(
                f"semantic block {block} out of range: the encoder has {len(vit.blocks)} blocks"
            )
        self.vit = vit
        self.block = block
        self.image_size = image_size

    @property
    def embed_dim(self) -> int:
        return int(self.vit.embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess_for_semantic(images, self.image_size).to(self.vit.patch_embed.proj.weight.dtype)
        feats = self.vit.forward_intermediates(
            x, indices=[self.block], norm=False, stop_early=True, output_fmt="NLC", intermediates_only=True
        )
        return feats[0]  # (B, N, E), CLS (prefix) tokens dropped by timm


def build_semantic_encoder(spec: SemanticEncoderSpec | str, block: int, image_size: int) -> SemanticEncoder:
    """The encoder with random weights (timm init): for tests and for shape-only use."""
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the VOSR semantic encoder needs timm: pip install 'screensr[vosr]'") from exc
    spec = semantic_encoder_spec(spec) if isinstance(spec, str) else spec
    if image_size % spec.patch_size:
        raise ConfigError(
            f"semantic image size {image_size} is not a multiple of the patch {spec.patch_size}"
        )
    vit = VisionTransformer(
        img_size=image_size,
        patch_size=spec.patch_size,
        embed_dim=spec.embed_dim,
        depth=spec.depth,
        num_heads=spec.num_heads,
        mlp_ratio=4.0,
        init_values=1e-5,  # LayerScale (ls1, ls2), part of every DINOv2 block
        num_classes=0,
        global_pool="token",
        dynamic_img_size=False,
    )
    return SemanticEncoder(vit, block, image_size)


def semantic_weights_path(
    spec: SemanticEncoderSpec, weights_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where the encoder's checkpoint is looked for (first existing, else the default path).

    Search order: ``weights_dir/<file>``, ``weights_dir/hub/checkpoints/<file>``,
    ``weights_dir/<name>.safetensors``, then ``$TORCH_HOME/hub/checkpoints/<file>`` (the
    torch-hub cache the official code uses).
    """
    from vosr.weights import torch_hub_checkpoints

    candidates = []
    if weights_dir is not None:
        wd = Path(weights_dir).expanduser()
        candidates += [wd / spec.weights_file, wd / "hub" / "checkpoints" / spec.weights_file]
        # the same tensors converted to safetensors (as some VOSR bundles ship them)
        candidates.append(wd / f"{spec.name}.safetensors")
    default = torch_hub_checkpoints() / spec.weights_file
    candidates.append(default)
    for c in candidates:
        if c.is_file():
            return c
    return default


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path}: cannot read the semantic encoder weights ({exc}); re-download the file"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def load_semantic_encoder(
    name: str,
    block: int,
    image_size: int = 448,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
    weights_path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> SemanticEncoder:
    """Load a DINOv2 encoder from its hub checkpoint (``.pth``; ``.safetensors`` also read).

    Args:
        name: a key of ``SEMANTIC_ENCODERS``.
        block: index of the block whose output is returned (8 for ViT-B, 17 for ViT-L).
        image_size: input side in pixels (448).
        weights_dir: an extra folder searched first (see ``semantic_weights_path``).
        weights_path: an explicit checkpoint file (overrides the search).

    Raises:
        FileNotFoundError: naming the missing file, where it must go, and the fix.
    """
    spec = semantic_encoder_spec(name)
    path = Path(weights_path).expanduser() if weights_path else semantic_weights_path(spec, weights_dir)
    if not path.is_file():
        src = f"download {spec.url}" if spec.url else "write it (tests create random weights there)"
        raise FileNotFoundError(
            f"semantic encoder weights {spec.weights_file} not found at {path}: {src} into "
            f"{path.parent}, or pass --weights-dir DIR holding {spec.weights_file} "
            "(`screensr weights --from DIR` installs it)"
        )
    from timm.models.vision_transformer import checkpoint_filter_fn

    encoder = build_semantic_encoder(spec, block, image_size)
    state = _read_state_dict(path)
    if "pos_embed" not in state:
        raise ValueError(f"{path}: no 'pos_embed' tensor; not a DINOv2 hub checkpoint")
    state = dict(state)
    state["pos_embed"] = resample_pos_embed_hub(state["pos_embed"], image_size // spec.patch_size)
    state = checkpoint_filter_fn(state, encoder.vit)  # hub names -> timm names (drops mask_token)
    from vosr.checkpoints import load_state_dict_strict

    load_state_dict_strict(encoder.vit, state, source=str(path))
    return encoder.to(device=device, dtype=dtype).eval()


# --- condition builders ----------------------------------------------------------------------


def structural_latent(
    encode: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor],
    upsampled: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """c_str: the latent of the upsampled LR image (B, 3, H, W) in [0, 1] -> (B, C, H/8, W/8).

    ``encode`` is an autoencoder's ``encode(images, generator)`` (``vosr.autoencoders``), which
    scales the latent the way the backbone was trained.
    """
    if upsampled.ndim != 4 or upsampled.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, H, W), got {tuple(upsampled.shape)}")
    return encode(upsampled, generator)


def partial_condition(
    c_str: torch.Tensor, semantic: torch.Tensor, weak_strength: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The partial ("weak") condition: (w * c_str, zeros like semantic).

    Zeros rather than a learned null token: after the model's LayerNorm they become its bias,
    which is what the released checkpoints were trained with. ``weak_strength`` may be a float
    or a (B,) tensor.
    """
    w = weak_strength
    if isinstance(w, torch.Tensor) and w.ndim == 1:
        w = w.view(-1, 1, 1, 1).to(c_str)
    return w * c_str, torch.zeros_like(semantic)


def noisy_structure(c_str: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training augmentation c = a c_str + sqrt(1 - a^2) eps', a = sigmoid(N(5, 1)) per sample."""
    B = c_str.shape[0]
    a = torch.sigmoid(5.0 + torch.randn(B, generator=generator, device=c_str.device)).view(B, 1, 1, 1)
    eps = torch.randn(c_str.shape, generator=generator, device=c_str.device, dtype=c_str.dtype)
    return a * c_str + torch.sqrt(1 - a * a) * eps


def drop_conditions(
    c_str: torch.Tensor,
    semantic: torch.Tensor,
    weak_strength: float,
    p: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample condition dropout: with probability ``p`` both conditions become partial.

    Returns (c_str', semantic', dropped (B,) bool).
    """
    B = c_str.shape[0]
    dropped = torch.rand(B, generator=generator, device=c_str.device) < p
    weak_str, weak_sem = partial_condition(c_str, semantic, weak_strength)
    m4 = dropped.view(B, 1, 1, 1)
    m3 = dropped.view(B, 1, 1)
    return torch.where(m4, weak_str, c_str), torch.where(m3, weak_sem, semantic), dropped
