"""Every weight file the ``vosr`` package can use, where its loaders look, and content hashes.

Locations (computed when asked; nothing is created at import time):

* ``$SCREENSR_HOME/vosr/`` (``vosr.paths.vosr_home``): the released VOSR run folders
  (``VOSR_0.5B_ms/args.json`` + ``VOSR_0.5B_ms/checkpoints/ema_model.safetensors``, and the
  ``_os`` / ``1.4B`` ones, see ``vosr.releases``), the autoencoder folders of
  ``vosr.autoencoders.AUTOENCODERS`` (``sd21-vae/``, ``Qwen-Image-vae-2d/``) and the light
  decoder ``sd21_lwdecoder.pth``.
* ``$TORCH_HOME/hub/checkpoints/``: the DINOv2 hub files (``dinov2_vitb14_pretrain.pth``, ...).
* the Hugging Face cache: the timm ablation encoders (``timm/<model>``, ``vosr.semantic``).

Every loader also accepts ``weights_dir`` (the CLI's ``--weights-dir``): a folder searched first,
either in the same relative layout (``DIR/VOSR_0.5B_os/...``, ``DIR/sd21-vae/...``) or holding a
file by its bare name (``DIR/dinov2_vitb14_pretrain.pth``).

:func:`weight_files` lists what the registries know as ``core.weights.WeightFile`` entries
(group ``vosr``). :func:`file_sha256` gives a weight file's content hash (what identifies a
checkpoint in settings and the benchmark's method hash), remembered by (path, size, mtime) in
``$SCREENSR_HOME/vosr/sha256_cache.json`` so multi-GB files are hashed once, not on every run.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from core.atomic import atomic_write_json
from core.errors import MissingFileError, did_you_mean
from core.hashing import file_sha256 as core_file_sha256
from core.paths import torch_hub_checkpoints
from core.weights import WeightFile, hf_snapshot_path
from vosr.autoencoders import AUTOENCODERS
from vosr.config import MODEL_SIZES
from vosr.paths import find_path, vosr_home
from vosr.releases import HF_VOSR, RELEASES
from vosr.semantic import ABLATION_ENCODERS, SEMANTIC_ENCODERS, TIMM_FILES, SemanticEncoderSpec

__all__ = [
    "release_dir",
    "resolve_checkpoint",
    "file_sha256",
    "weight_files",
    "RANDOM_INIT_SOURCE",
]

#: What ``screensr weights`` says of a random-init test component (nothing to download).
RANDOM_INIT_SOURCE = "vosr: random-init CPU test size, created by `screensr vosr train --recipe tiny` in its run"


def release_dir(tag: str, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The run folder of a released checkpoint tag (``vosr-0.5b-os``, ...)."""
    folder = RELEASES[tag].folder
    return find_path(folder, vosr_home() / folder, weights_dir)


def resolve_checkpoint(
    spec: str | os.PathLike[str], weights_dir: str | os.PathLike[str] | None = None
) -> Path:
    """A checkpoint argument -> a path: a release tag (``vosr-0.5b-os``) or a file / folder.

    Raises:
        MissingFileError: naming what is missing, where it must go and how to get it.
    """
    s = str(spec)
    if s in RELEASES:
        folder = RELEASES[s].folder
        path = release_dir(s, weights_dir)
        weights = path / "checkpoints" / "ema_model.safetensors"
        if not weights.is_file() or not (path / "args.json").is_file():
            raise MissingFileError(
                f"released checkpoint {s} not found: expected {path / 'args.json'} and {weights}. "
                f"Download the folder {folder}/ of https://huggingface.co/CSWRY/VOSR "
                f"(or ModelScope LULALULALU/VOSR_CKPT) into {path.parent}, or point to a folder "
                f"containing {folder}/ with --weights-dir DIR (bench method specs: {s}@weights_dir=DIR)"
            )
        return path
    path = Path(s).expanduser()
    if not path.exists():
        raise MissingFileError(
            f"VOSR checkpoint {s!r} is neither a file/folder nor a release tag{did_you_mean(s, RELEASES)}"
        )
    return path


# --- content hashes ---------------------------------------------------------------------------

HASH_CACHE_FILE = "sha256_cache.json"


def _hash_cache_path() -> Path:
    return vosr_home() / HASH_CACHE_FILE


def _read_hash_cache(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        # only remembered hashes are lost: they are recomputed (and the file rewritten)
        warnings.warn(
            f"ignoring the unreadable hash cache {path} ({exc}); hashes are recomputed", stacklevel=3
        )
        return {}
    return data if isinstance(data, dict) else {}


def file_sha256(path: str | os.PathLike[str], *, cache: bool = True) -> str:
    """Hex sha256 of a file's bytes.

    With ``cache``, the digest is remembered under the file's absolute path together with its size
    and modification time (ns); any change of either recomputes it, so replacing a weight file
    always changes the hash while an unchanged multi-GB checkpoint is read once.
    """
    p = Path(path).expanduser().absolute()
    st = p.stat()
    key = str(p)
    cache_path = _hash_cache_path()
    entries = _read_hash_cache(cache_path) if cache else {}
    hit = entries.get(key)
    if isinstance(hit, dict) and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
        return str(hit["sha256"])
    digest = core_file_sha256(p)
    if cache:
        entries = _read_hash_cache(cache_path)  # re-read: another process may have added entries
        entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        try:
            atomic_write_json(cache_path, entries, indent=1, sort_keys=True)
        except OSError as exc:  # a read-only cache folder: the hash is still right, just not remembered
            warnings.warn(f"cannot write the hash cache {cache_path} ({exc})", stacklevel=2)
    return digest


# --- the catalogue ----------------------------------------------------------------------------


def _users(attribute: str, name: str) -> tuple[str, ...]:
    """Release tags (else model sizes) whose model config has ``attribute == name``."""
    tags = tuple(r.tag for r in RELEASES.values() if getattr(MODEL_SIZES[r.model], attribute) == name)
    return tags or tuple(m for m, cfg in MODEL_SIZES.items() if getattr(cfg, attribute) == name)


def _encoder_users(spec: SemanticEncoderSpec) -> tuple[str, ...]:
    users = _users("semantic_encoder", spec.name)
    sizes = "vosr-tiny" if spec.random_init else "vosr-0.5b, vosr-1.4b"
    switches = tuple(
        f"recipe semantic_encoder={k} ({sizes})" for k, names in ABLATION_ENCODERS.items() if spec.name in names
    )
    return users + switches or ("released-layout checkpoints whose args.json names it",)


def _semantic_entry(spec: SemanticEncoderSpec) -> WeightFile:
    used_by = _encoder_users(spec)
    if spec.random_init:
        return WeightFile(
            name=spec.weights_file, group="vosr", path=torch_hub_checkpoints() / spec.weights_file, url=None,
            used_by=used_by, description=spec.description, ships_with=RANDOM_INIT_SOURCE,
        )  # fmt: skip
    if spec.hf_repo is not None:
        return WeightFile(
            name=f"{spec.timm_name}.safetensors", group="vosr", path=hf_snapshot_path(spec.hf_repo, TIMM_FILES[0]),
            url=f"https://huggingface.co/{spec.hf_repo}/resolve/main/{TIMM_FILES[0]}", used_by=used_by,
            description=f"{spec.description} (timm, Hugging Face cache)", hf_repo=(spec.hf_repo, TIMM_FILES[0]),
            source_names=(f"{spec.name}.safetensors",),
        )  # fmt: skip
    return WeightFile(
        name=spec.weights_file, group="vosr", path=torch_hub_checkpoints() / spec.weights_file, url=spec.url,
        used_by=used_by, description=spec.description + " (torch-hub cache layout)",
    )  # fmt: skip


def weight_files() -> list[WeightFile]:
    """Every file the registries know, as ``WeightFile`` entries of group ``vosr``.

    The releases (``vosr.releases``), every semantic encoder (DINOv2 hub files, the timm ablation
    encoders in the Hugging Face cache, the random-init test sizes) and every autoencoder's
    published files (the random-init ``tiny-kl`` folder included). ``used_by`` comes from the
    model sizes (``vosr.config.MODEL_SIZES``): which release or size pairs with the file.
    """
    out: list[WeightFile] = []
    for rel in RELEASES.values():
        size = rel.model.removeprefix("vosr-").upper()
        for name, what in (("args.json", "training arguments"), ("checkpoints/ema_model.safetensors", "EMA backbone weights")):
            out.append(WeightFile(
                name=f"{rel.folder}/{name}", group="vosr", path=vosr_home() / rel.folder / name,
                url=HF_VOSR.format(f"{rel.folder}/{name}"), used_by=(rel.tag,),
                description=f"VOSR-{size} {rel.kind} release: {what}",
            ))  # fmt: skip
    out += [_semantic_entry(spec) for spec in SEMANTIC_ENCODERS.values()]
    for ae in AUTOENCODERS.values():
        users = _users("autoencoder", ae.name)
        for f in ae.files:
            out.append(WeightFile(name=f.name, group="vosr", path=vosr_home() / f.name, url=f.url, used_by=users,
                                  description=f.description))  # fmt: skip
        if ae.random_init:
            for fname in ("config.json", "diffusion_pytorch_model.safetensors"):
                out.append(WeightFile(
                    name=f"{ae.folder}/{fname}", group="vosr", path=vosr_home() / ae.folder / fname, url=None,
                    used_by=users, description=ae.description, ships_with=RANDOM_INIT_SOURCE,
                ))  # fmt: skip
    return out
