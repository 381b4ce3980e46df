"""Loading and saving VOSR backbone checkpoints.

Two formats are read, one is written:

* **The released layout** (``docs/vosr-reference.md``, "6. Training recipe (appendix Table 3 and
  the released configs)" and "8. Checkpoint keys (per block i)"): a run folder
  ``RUN/args.json`` + ``RUN/checkpoints/ema_model.safetensors`` (or ``model.safetensors``), plain
  fp32 state dicts in the released key layout. ``args.json`` is the official training-argument
  dump (``dim``, ``depth``, ``num_heads``, ``enc_type``, ``ae_type``, ``layer_dinov2b_list``,
  ``resolution``, ...) or, for runs of our trainer, ``{"model": <ModelConfig dict>, ...}``.
* **Self-describing safetensors** (ours): the same state dict with ``ModelConfig`` as JSON in
  the metadata key ``vosr_model_config`` (k-diffusion's habit), so the file rebuilds its model
  alone. ``save_checkpoint`` writes these atomically.

Loading is always strict (``vosr.statedict.load_state_dict_strict``: a mismatch raises
``CheckpointMismatchError`` with the key report).

Example:
    >>> from vosr.checkpoints import load_checkpoint, save_checkpoint   # doctest: +SKIP
    >>> model, info = load_checkpoint("~/.cache/screensr/vosr/VOSR_0.5B_os")  # doctest: +SKIP
    >>> save_checkpoint(model, "run/ema.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.atomic import atomic_path, atomic_write_json
from core.errors import MissingFileError, UserError
from vosr.config import ConfigError, ModelConfig, model_config
from vosr.model import VOSRDiT
from vosr.statedict import load_state_dict_strict, strip_prefixes

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "METADATA_KEY",
    "config_from_official_args",
    "find_weights_file",
    "read_checkpoint",
    "read_checkpoint_config",
    "load_checkpoint",
    "save_checkpoint",
    "save_run_folder",
    "released_config",
]

METADATA_KEY = "vosr_model_config"
FORMAT_KEY = "format"
FORMAT_VALUE = "screensr-vosr/1"
WEIGHT_NAMES = ("ema_model.safetensors", "model.safetensors")


class CheckpointError(UserError, ValueError):
    """A checkpoint file that cannot be read or understood (the message names it and the fix)."""


# --- configs -------------------------------------------------------------------------------

# official enc_type -> our semantic encoder name (vosr.conditions.SEMANTIC_ENCODERS)
_ENC_TYPES = {"dinov2b": "dinov2_vitb14", "dinov2l": "dinov2_vitl14", "dinov2s": "dinov2_vits14"}
_QWEN_AE = ("qwen", "qwen-image", "qwen_image", "qwenimage")


def config_from_official_args(
    args: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor] | None = None,
    *,
    source: str = "args.json",
) -> ModelConfig:
    """The ``ModelConfig`` of a released run from its ``args.json`` (an argparse dump).

    Only the keys that define the network are read; the dump's many training keys are ignored
    (they describe the training run, not the model). Latent channels and one-step-ness are read
    from the state dict when given (they are facts of the weights), else from ``ae_type`` and
    ``distill_type``.
    """
    if "model" in args and isinstance(args["model"], Mapping):  # written by our trainer
        cfg = ModelConfig.from_dict(args["model"], source=f"{source} ['model']")
        if state_dict is not None:
            cfg = cfg.replace(one_step=any(k.startswith("r_embedder.") for k in strip_prefixes(state_dict)))
        return cfg
    for flag in ("use_qknorm", "use_swiglu", "use_rope", "use_rmsnorm"):
        if flag in args and not args[flag]:
            raise ConfigError(
                f"{source}: {flag}={args[flag]!r}; only the released variant (all of use_qknorm, "
                "use_swiglu, use_rope, use_rmsnorm true) is implemented"
            )
    try:
        hidden = int(args.get("dim", args.get("hidden_size")))
        depth = int(args["depth"])
        heads = int(args["num_heads"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(
            f"{source}: missing the network keys dim/depth/num_heads ({exc}); is this a VOSR run's args.json?"
        ) from exc
    ae_type = str(args.get("ae_type", "")).lower()
    enc_type = str(args.get("enc_type", "dinov2b" if hidden <= 1024 else "dinov2l")).lower()
    if enc_type not in _ENC_TYPES:
        raise ConfigError(f"{source}: enc_type {enc_type!r} unknown (known: {', '.join(_ENC_TYPES)})")
    layers = args.get("layer_dinov2b_list", [8 if enc_type == "dinov2b" else 17])
    if isinstance(layers, (list, tuple)):
        if len(layers) != 1:
            raise ConfigError(f"{source}: layer_dinov2b_list {layers!r}: exactly one block is supported")
        layers = layers[0]
    if state_dict is not None:
        sd = strip_prefixes(state_dict)
        if "x_embedder.proj.weight" not in sd:
            raise ConfigError(f"{source}: the weights have no x_embedder.proj.weight; not a VOSR backbone")
        channels = int(sd["x_embedder.proj.weight"].shape[1]) // 2
        one_step = any(k.startswith("r_embedder.") for k in sd)
    else:
        channels = 16 if ae_type in _QWEN_AE else 4
        one_step = str(args.get("distill_type", "")).lower() in ("onestep", "one_step", "rc", "shortcut")
    autoencoder = "qwen-image" if ae_type in _QWEN_AE or (not ae_type and channels == 16) else "sd21"
    if autoencoder == "sd21" and channels != 4:
        raise ConfigError(
            f"{source}: ae_type {ae_type!r} with {channels} latent channels is not a known pairing"
        )
    name = {1024: "vosr-0.5b", 1536: "vosr-1.4b"}.get(hidden, "custom")
    return ModelConfig(
        name=name,
        hidden_size=hidden,
        depth=depth,
        num_heads=heads,
        patch_size=int(args.get("patch_size", 2)),
        latent_channels=channels,
        semantic_dim=int(args.get("enc_dim", 768 if enc_type == "dinov2b" else 1024)),
        mlp_ratio=float(args.get("mlp_ratio", 4.0)),
        encdim_ratio=int(args.get("encdim_ratio", 3)),
        input_size=int(args.get("resolution", 512)) // 8,
        one_step=one_step,
        autoencoder=autoencoder,
        semantic_encoder=_ENC_TYPES[enc_type],
        semantic_block=int(layers),
        semantic_size=int(args.get("dinov2_size", 448)),
    )


# --- reading -------------------------------------------------------------------------------


@dataclass
class CheckpointInfo:
    """Where a checkpoint came from and what it is."""

    path: Path  # the weights file
    config: ModelConfig
    layout: str  # "self-describing" or "released"
    args_path: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def find_weights_file(path: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """(weights file, args.json or None) for a run folder or a ``.safetensors`` file.

    A folder is searched for ``checkpoints/ema_model.safetensors``, ``ema_model.safetensors``,
    then the same with ``model.safetensors`` (EMA weights are what every result used). A file's
    ``args.json`` is looked for beside it and one folder up (the released layout).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise MissingFileError(
            f"VOSR checkpoint {p} does not exist; pass a run folder (args.json + "
            "checkpoints/ema_model.safetensors) or a .safetensors file (see `screensr weights`)"
        )
    if p.is_dir():
        for name in WEIGHT_NAMES:
            for cand in (p / "checkpoints" / name, p / name):
                if cand.is_file():
                    args = p / "args.json"
                    return cand, (args if args.is_file() else None)
        raise MissingFileError(
            f"no weights in {p}: expected {p / 'checkpoints' / 'ema_model.safetensors'} "
            "(the released layout) or a .safetensors file"
        )
    if p.suffix != ".safetensors":
        raise CheckpointError(f"{p}: VOSR checkpoints are .safetensors files (or run folders), got {p.suffix!r}")
    for cand in (p.parent / "args.json", p.parent.parent / "args.json"):
        if cand.is_file():
            return p, cand
    return p, None


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Read weights and config without building the model.

    The self-describing metadata wins over an ``args.json`` (it was written with the weights).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    info = read_checkpoint_config(path)
    try:
        state = load_file(str(info.path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{info.path}: not a readable safetensors file ({exc}); re-download or re-save it"
        ) from exc
    return strip_prefixes(state), info


def read_checkpoint_config(path: str | os.PathLike[str]) -> CheckpointInfo:
    """The checkpoint's ``CheckpointInfo`` from its header alone (no tensor is read).

    Same rules as ``read_checkpoint`` (metadata first, else ``args.json`` plus the key names and
    the patch-embedding shape), for callers that only need the config: the benchmark's method
    identity, settings files.
    """
    from safetensors import SafetensorError, safe_open

    weights, args_path = find_weights_file(path)
    try:
        with safe_open(str(weights), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            # shapes only, on the meta device: enough for config_from_official_args
            shapes = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{weights}: not a readable safetensors file ({exc}); re-download or re-save it"
        ) from exc
    if METADATA_KEY in metadata:
        try:
            cfg = ModelConfig.from_dict(json.loads(metadata[METADATA_KEY]), source=f"{weights} metadata")
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{weights}: metadata {METADATA_KEY!r} is not JSON ({exc})") from exc
        return CheckpointInfo(weights, cfg, "self-describing", args_path, metadata)
    if args_path is None:
        raise MissingFileError(
            f"{weights} has no {METADATA_KEY!r} metadata and no args.json beside it or one folder up; "
            "put the release's args.json next to its checkpoints/ folder, or re-save with "
            "vosr.checkpoints.save_checkpoint"
        )
    try:
        args = json.loads(args_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{args_path}: not valid JSON ({exc})") from exc
    cfg = config_from_official_args(args, shapes, source=str(args_path))
    return CheckpointInfo(weights, cfg, "released", args_path, metadata)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.nn.Module, CheckpointInfo]:
    """Build the backbone a checkpoint describes and load it strictly; returns (model, info).

    The model is built on the ``meta`` device and the checkpoint tensors are assigned, so no
    time is spent on a random init that would be overwritten (1.4B parameters on CPU).
    The model is returned in eval mode.
    """
    state, info = read_checkpoint(path)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    with torch.device("meta"):
        model = VOSRDiT(info.config)
    load_state_dict_strict(model, state, source=str(info.path), assign=True)
    return model.to(device).eval(), info


# --- writing -------------------------------------------------------------------------------


def _atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _plain_state(model_or_state: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    # fp32, contiguous, no wrapper prefixes: the released convention
    return {
        k: (v.detach().float() if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in strip_prefixes(state).items()
    }


def save_checkpoint(
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    config: ModelConfig | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a self-describing safetensors file (atomic; fp32; released key names).

    Args:
        model: a ``VOSRDiT`` (its ``config`` is stored) or a state dict (then pass ``config``).
        path: destination ``.safetensors`` file.
        config: the model config, when ``model`` is a state dict.
        metadata: extra string metadata (step, run name, ...), stored beside the config.
    """
    cfg = config if config is not None else getattr(model, "config", None)
    if not isinstance(cfg, ModelConfig):
        raise ValueError("save_checkpoint needs a ModelConfig: pass a VOSRDiT or config=...")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: checkpoint files must end in .safetensors")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update({METADATA_KEY: cfg.to_json(), FORMAT_KEY: FORMAT_VALUE})
    _atomic_save_safetensors(_plain_state(model), path, meta)
    return path


def save_run_folder(
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    run_dir: str | os.PathLike[str],
    *,
    config: ModelConfig | None = None,
    args: Mapping[str, Any] | None = None,
    name: str = "ema_model.safetensors",
) -> Path:
    """Write the released layout ``run_dir/args.json`` + ``run_dir/checkpoints/<name>``.

    ``args.json`` holds ``{"model": config, **args}``; the weights are self-describing too.
    Returns the weights path.
    """
    cfg = config if config is not None else getattr(model, "config", None)
    if not isinstance(cfg, ModelConfig):
        raise ValueError("save_run_folder needs a ModelConfig: pass a VOSRDiT or config=...")
    run = Path(run_dir)
    weights = save_checkpoint(model, run / "checkpoints" / name, config=cfg)
    payload = {**dict(args or {}), "model": cfg.to_dict()}
    atomic_write_json(run / "args.json", payload, sort_keys=True)
    return weights


def released_config(name: str) -> ModelConfig:
    """The config of a released checkpoint tag ``vosr-0.5b-ms`` / ``-os`` / ``vosr-1.4b-*``."""
    base, _, mode = name.rpartition("-")
    if mode not in ("ms", "os"):
        raise ConfigError(f"{name!r}: expected a size followed by -ms or -os, e.g. vosr-0.5b-os")
    return model_config(base, one_step=(mode == "os"))
