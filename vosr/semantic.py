"""The semantic encoders of VOSR: one registry, one loader (``docs/vosr-reference.md``, "2. Conditions").

The semantic condition is ViT tokens of the upsampled LR image, taken from one block's output
before the final norm, prefix (CLS / register) tokens dropped (:class:`SemanticEncoder`). The ViT
is timm's (no rewrite). The released models use DINOv2, whose weights are the torch-hub files
converted by timm's own checkpoint filter; their 37x37 position embedding is resampled to the
448 px grid **the hub's way** (bicubic by scale factor (grid + 0.1) / 37, no antialias),
because timm's default resampling (``size=``, antialias) gives numerically different features.

``SEMANTIC_ENCODERS`` is the one registry (a frozen :class:`SemanticEncoderSpec` per name,
:func:`get_semantic_encoder`), used by training and inference alike, so a checkpoint trained with
any of them runs through :func:`load_semantic_encoder`:

* ``dinov2_*``: DINOv2 hub checkpoints (``$TORCH_HOME/hub/checkpoints``), the released models';
* ``clip_vitb16``, ``siglip2_vitb16``, ``dinov3_vitb16``: the Table 1 ablation encoders, timm
  models whose weights come from the Hugging Face cache (``timm/<model>``), or a
  ``<name>.safetensors`` timm state dict in ``--weights-dir``;
* ``*_tiny``: CPU test sizes of each family with random weights (``random_init``), created by
  ``write_random_semantic_weights`` where the loader looks for them.

Which model uses which encoder is the model config's ``semantic_encoder``
(``vosr.config.MODEL_SIZES``). ``ABLATION_ENCODERS`` maps the recipe switch
(``semantic_encoder: clip``) to a registry entry: the full-size one, or its tiny version for a
model whose own encoder is a random-init test size.
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn

from core.atomic import atomic_path
from core.errors import MissingFileError, UserError
from core.paths import hf_hub_cache_dir, torch_hub_checkpoints
from vosr.config import MODEL_SIZES, ConfigError, UnknownEntryError
from vosr.statedict import load_state_dict_strict

__all__ = [
    "SemanticEncoderSpec",
    "SEMANTIC_ENCODERS",
    "ABLATION_ENCODERS",
    "SemanticEncoder",
    "SemanticWeightsError",
    "get_semantic_encoder",
    "ablation_encoder",
    "load_semantic_encoder",
    "build_semantic_encoder",
    "semantic_weights_path",
    "write_random_semantic_weights",
    "resample_pos_embed_hub",
    "preprocess_for_semantic",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TIMM_FILES",
]


class SemanticWeightsError(UserError, ValueError):
    """A semantic-encoder weight file that cannot be read or is not what its loader expects."""


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINOV2_URL = "https://dl.fbaipublicfiles.com/dinov2/{0}/{0}_pretrain.pth"


@dataclass(frozen=True)
class SemanticEncoderSpec:
    """A semantic encoder: ViT architecture, where its weights live and how they are read.

    ``kind`` selects the family: ``dinov2_hub`` (timm's ``VisionTransformer`` filled from a
    torch-hub DINOv2 checkpoint trained on a ``pretrain_grid`` position grid) or ``timm`` (the
    timm model ``timm_name``, weights from the Hugging Face repository ``hf_repo``).
    ``default_block`` / ``default_size`` are what the Table 1 ablation trains with.
    """

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 14
    pretrain_grid: int = 37  # dinov2_hub: 518 px / 14, the grid of the checkpoint's pos_embed
    weights_file: str = ""  # file name in $TORCH_HOME/hub/checkpoints (the hub's cache layout)
    url: str | None = None
    description: str = ""
    kind: Literal["dinov2_hub", "timm"] = "dinov2_hub"
    timm_name: str = ""  # timm: architecture.pretrained_tag
    hf_repo: str | None = None  # timm: the Hugging Face repository timm downloads from
    default_block: int = 8
    default_size: int = 448
    random_init: bool = False  # a CPU test size: no trained weights exist, commands create random ones


TIMM_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's hub loader reads, in order


def _timm(name: str, timm_name: str, dim: int, depth: int, heads: int, size: int, block: int,
          description: str, tiny: bool = False) -> SemanticEncoderSpec:
    return SemanticEncoderSpec(
        name, dim, depth, heads, patch_size=16, weights_file=f"{name}.safetensors", description=description,
        kind="timm", timm_name=timm_name, hf_repo=None if tiny else f"timm/{timm_name}", default_block=block,
        default_size=size, random_init=tiny,
    )


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
        default_block=17,
    ),
    # CPU test size: same classes and checkpoint format, a 5x5 "pretraining" grid (70 px)
    "dinov2_tiny": SemanticEncoderSpec(
        "dinov2_tiny", 64, 2, 2, pretrain_grid=5, weights_file="dinov2_tiny_pretrain.pth",
        url=None, description="tiny random DINOv2-style ViT for tests (vosr-tiny)", default_block=1,
        default_size=56, random_init=True,
    ),
    # Table 1 ablation encoders (ViT-B/16 class) at the input size each was trained at
    "clip_vitb16": _timm("clip_vitb16", "vit_base_patch16_clip_224.openai", 768, 12, 12, 224, 8,
                         "CLIP ViT-B/16 (OpenAI), Table 1 ablation encoder"),
    "siglip2_vitb16": _timm("siglip2_vitb16", "vit_base_patch16_siglip_224.v2_webli", 768, 12, 12, 224, 8,
                            "SigLIP 2 ViT-B/16, Table 1 ablation encoder"),
    "dinov3_vitb16": _timm("dinov3_vitb16", "vit_base_patch16_dinov3.lvd1689m", 768, 12, 12, 448, 8,
                           "DINOv3 ViT-B/16, Table 1 ablation encoder"),
    # their CPU test sizes (the same timm classes, width 64, 2 blocks, 4x4 tokens at 64 px)
    "clip_tiny": _timm("clip_tiny", "vit_base_patch16_clip_224.openai", 64, 2, 2, 64, 1,
                       "tiny random CLIP-style ViT for tests (vosr-tiny ablation)", tiny=True),
    "siglip2_tiny": _timm("siglip2_tiny", "vit_base_patch16_siglip_224.v2_webli", 64, 2, 2, 64, 1,
                          "tiny random SigLIP2-style ViT for tests (vosr-tiny ablation)", tiny=True),
    "dinov3_tiny": _timm("dinov3_tiny", "vit_base_patch16_dinov3.lvd1689m", 64, 2, 2, 64, 1,
                         "tiny random DINOv3-style ViT for tests (vosr-tiny ablation)", tiny=True),
}  # fmt: skip

# recipe switch (Table 1) -> (registry name for the released sizes, for vosr-tiny)
ABLATION_ENCODERS: dict[str, tuple[str, str]] = {
    "clip": ("clip_vitb16", "clip_tiny"),
    "siglip2": ("siglip2_vitb16", "siglip2_tiny"),
    "dinov3": ("dinov3_vitb16", "dinov3_tiny"),
}


def get_semantic_encoder(name: str) -> SemanticEncoderSpec:
    """The registry entry ``name`` (a "did you mean" error for unknown names)."""
    if name not in SEMANTIC_ENCODERS:
        raise UnknownEntryError("semantic encoder", name, SEMANTIC_ENCODERS)
    return SEMANTIC_ENCODERS[name]


def ablation_encoder(choice: str, model_name: str) -> SemanticEncoderSpec:
    """The encoder of the Table 1 switch ``choice`` (clip, siglip2, dinov3) for a model size.

    A size whose own encoder is a random-init test size (``vosr-tiny``) gets the tiny
    random-weight version of the family; the released sizes get the full encoder.
    """
    if choice not in ABLATION_ENCODERS:
        raise UnknownEntryError("ablation encoder", choice, ABLATION_ENCODERS)
    full, tiny = ABLATION_ENCODERS[choice]
    own = MODEL_SIZES[model_name].semantic_encoder if model_name in MODEL_SIZES else ""
    test_size = own in SEMANTIC_ENCODERS and SEMANTIC_ENCODERS[own].random_init
    return SEMANTIC_ENCODERS[tiny if test_size else full]


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


def preprocess_for_semantic(
    images: torch.Tensor,
    size: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, size, size) normalised encoder input.

    Bicubic resize ignoring the aspect ratio, no antialias, clipped to [0, 1] (the official
    preprocessing), then ``(x - mean) / std`` (ImageNet's for DINOv2, the model's own otherwise).
    """
    x = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=False)
    x = x.clamp(0, 1)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class SemanticEncoder(nn.Module):
    """A timm ViT returning one block's raw tokens: (B, 3, H, W) in [0,1] -> (B, N, E).

    N = (image_size / patch)^2 (1024 for DINOv2 at 448 px); prefix tokens (CLS, registers) are
    dropped. Only the blocks up to ``block`` run. ``mean`` / ``std``: the input normalisation.
    """

    vit: Any  # a timm VisionTransformer (timm's attributes are untyped)

    def __init__(
        self,
        vit: nn.Module,
        block: int,
        image_size: int,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.vit = vit
        if not 0 <= block < len(self.vit.blocks):
            raise ConfigError(
                f"semantic block {block} out of range: the encoder has {len(self.vit.blocks)} blocks"
            )
        self.block = block
        self.image_size = image_size
        self.mean, self.std = tuple(mean), tuple(std)

    @property
    def embed_dim(self) -> int:
        return int(self.vit.embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = preprocess_for_semantic(images, self.image_size, self.mean, self.std)
        x = x.to(self.vit.patch_embed.proj.weight.dtype)
        feats = self.vit.forward_intermediates(
            x, indices=[self.block], norm=False, stop_early=True, output_fmt="NLC", intermediates_only=True
        )
        return feats[0]  # (B, N, E), prefix tokens dropped by timm


def build_semantic_encoder(spec: SemanticEncoderSpec | str, block: int, image_size: int) -> SemanticEncoder:
    """The encoder with random weights (timm init): for tests and for shape-only use."""
    try:
        import timm
        from timm.models.vision_transformer import VisionTransformer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the VOSR semantic encoder needs timm: pip install 'screensr[vosr]'") from exc
    spec = get_semantic_encoder(spec) if isinstance(spec, str) else spec
    if image_size % spec.patch_size:
        raise ConfigError(
            f"semantic image size {image_size} is not a multiple of the patch {spec.patch_size}"
        )
    if spec.kind == "timm":
        # the architecture (and its pretrained_cfg: mean, std) of the tag; width and depth from the
        # spec, which are the tag's own for the real encoders and smaller for the test sizes
        vit: Any = timm.create_model(
            spec.timm_name, pretrained=False, num_classes=0, img_size=image_size,
            embed_dim=spec.embed_dim, depth=spec.depth, num_heads=spec.num_heads,
        )
        cfg = vit.pretrained_cfg
        return SemanticEncoder(vit, block, image_size, tuple(cfg["mean"]), tuple(cfg["std"]))
    vit = VisionTransformer(  # the hub DINOv2 architecture in timm's class
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


def _hf_cache_file(repo: str) -> Path | None:
    """The first of timm's hub files for ``repo`` in the Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    # the cache folder from the environment now (huggingface_hub fixes its default at import)
    for filename in TIMM_FILES:
        found = try_to_load_from_cache(repo, filename, cache_dir=hf_hub_cache_dir())
        if isinstance(found, str):
            return Path(found)
    return None


def _hf_cache_folder(repo: str) -> Path:
    return hf_hub_cache_dir() / f"models--{repo.replace('/', '--')}"


def semantic_weights_path(
    spec: SemanticEncoderSpec, weights_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where the encoder's checkpoint is looked for (first existing, else the default path).

    Search order: ``weights_dir/<file>``, ``weights_dir/hub/checkpoints/<file>``,
    ``weights_dir/<name>.safetensors``, then the default cache: for DINOv2 and the test sizes
    ``$TORCH_HOME/hub/checkpoints/<file>`` (the torch-hub cache the official code uses), for the
    timm ablation encoders timm's own download in the Hugging Face cache (``timm/<model>``).
    """
    candidates = []
    if weights_dir is not None:
        wd = Path(weights_dir).expanduser()
        candidates += [wd / spec.weights_file, wd / "hub" / "checkpoints" / spec.weights_file]
        # the same tensors converted to safetensors (as some VOSR bundles ship them)
        candidates.append(wd / f"{spec.name}.safetensors")
    default = torch_hub_checkpoints() / spec.weights_file
    if spec.hf_repo is not None:
        cached = _hf_cache_file(spec.hf_repo)
        default = cached if cached is not None else _hf_cache_folder(spec.hf_repo) / TIMM_FILES[0]
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
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as exc:
        raise SemanticWeightsError(
            f"{path}: cannot read the semantic encoder weights ({exc}); re-download the file"
        ) from exc
    if not isinstance(state, dict):
        raise SemanticWeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def _missing_weights_message(spec: SemanticEncoderSpec, path: Path) -> str:
    if spec.hf_repo is not None:
        return (
            f"semantic encoder weights of {spec.name} ({spec.timm_name}) not found: timm keeps them in the "
            f"Hugging Face cache under {_hf_cache_folder(spec.hf_repo)}. Download them once while online "
            f"(`hf download {spec.hf_repo} model.safetensors`, or timm.create_model({spec.timm_name!r}, "
            f"pretrained=True)), or pass --weights-dir DIR holding {spec.name}.safetensors (the timm state dict)"
        )
    if spec.random_init:
        src = "write random ones there (`screensr vosr train --recipe tiny` creates them for its run)"
    else:
        src = f"download {spec.url} into {path.parent}"
    return (
        f"semantic encoder weights {spec.weights_file} not found at {path}: {src}, or pass --weights-dir DIR "
        f"holding {spec.weights_file} (`screensr weights --from DIR` installs it)"
    )


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
    """Load any registered semantic encoder with its weights, strictly.

    DINOv2 hub checkpoints (``.pth``; ``.safetensors`` also read) get the hub's position
    embedding resampling; timm checkpoints (the ablation encoders) go through timm's own
    checkpoint filter, dropping only the classifier / projection head (``head.*``), which the
    feature extractor does not have.

    Args:
        name: a key of ``SEMANTIC_ENCODERS``.
        block: index of the block whose output is returned (8 for ViT-B, 17 for ViT-L).
        image_size: input side in pixels (448 for DINOv2).
        weights_dir: an extra folder searched first (see ``semantic_weights_path``).
        weights_path: an explicit checkpoint file (overrides the search).

    Raises:
        MissingFileError: naming the missing file, where it must go, and the fix.
    """
    spec = get_semantic_encoder(name)
    path = Path(weights_path).expanduser() if weights_path else semantic_weights_path(spec, weights_dir)
    if not path.is_file():
        raise MissingFileError(_missing_weights_message(spec, path))

    encoder = build_semantic_encoder(spec, block, image_size)
    state = dict(_read_state_dict(path))
    if spec.kind == "timm":
        filter_fn = importlib.import_module(type(encoder.vit).__module__).checkpoint_filter_fn
        state = filter_fn(state, encoder.vit)
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    else:
        if "pos_embed" not in state:
            raise SemanticWeightsError(f"{path}: no 'pos_embed' tensor; not a DINOv2 hub checkpoint")
        state["pos_embed"] = resample_pos_embed_hub(state["pos_embed"], image_size // spec.patch_size)
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(state, encoder.vit)  # hub names -> timm names (drops mask_token)
    load_state_dict_strict(encoder.vit, state, source=str(path))
    return encoder.to(device=device, dtype=dtype).eval()


def write_random_semantic_weights(name: str, path: str | os.PathLike[str], seed: int | None = 0) -> Path:
    """Write random weights of encoder ``name`` at ``path`` in the format its loader reads.

    DINOv2-style specs get a hub-format ``.pth`` (position grid ``pretrain_grid``, a
    ``mask_token`` as the hub files carry), timm specs a ``.safetensors`` timm state dict. Meant
    for the ``random_init`` test sizes; the write is atomic. Returns ``path``.

    Args:
        seed: seeds the weights; the global torch generator is left as it was. None draws from
            the global generator as it stands (a caller seeding several files in one stream).
    """
    spec = get_semantic_encoder(name)
    path = Path(path)
    state_before = torch.random.get_rng_state()
    try:
        if seed is not None:
            torch.manual_seed(seed)
        if spec.kind == "timm":
            vit = build_semantic_encoder(spec, 0, spec.default_size).vit
        else:
            vit = build_semantic_encoder(spec, 0, spec.pretrain_grid * spec.patch_size).vit
        state = {k: v.detach().clone().contiguous() for k, v in vit.state_dict().items() if not k.startswith("head")}
    finally:
        if seed is not None:
            torch.random.set_rng_state(state_before)
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp))
        else:
            state["mask_token"] = torch.zeros(1, spec.embed_dim)
            torch.save(state, tmp)
    return path
