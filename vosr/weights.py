"""Every weight file the ``vosr`` package can use, and where its loaders look for it.

Locations (computed when asked; nothing is created at import time):

* ``$SCREENSR_HOME`` (default ``~/.cache/screensr``) ``/vosr/``: the released VOSR run folders
  (``VOSR_0.5B_ms/args.json`` + ``VOSR_0.5B_ms/checkpoints/ema_model.safetensors``, and the
  ``_os`` / ``1.4B`` ones), the SD2.1 VAE folder ``sd21-vae/``, the light decoder
  ``sd21_lwdecoder.pth``, the Qwen-Image 2-D VAE folder ``Qwen-Image-vae-2d/``.
* ``$TORCH_HOME/hub/checkpoints/``: DINOv2 ``dinov2_vitb14_pretrain.pth`` /
  ``dinov2_vitl14_pretrain.pth`` (the torch-hub cache layout the official code uses).

Every loader also accepts ``weights_dir`` (the CLI's ``--weights-dir``): a folder searched first,
either in the same relative layout (``DIR/VOSR_0.5B_os/...``, ``DIR/sd21-vae/...``) or holding a
file by its bare name (``DIR/dinov2_vitb14_pretrain.pth``).

``file_sha256`` gives a weight file's content hash (what identifies a checkpoint in settings and
the benchmark's method hash), remembered by (path, size, mtime) in
``$SCREENSR_HOME/vosr/sha256_cache.json`` so multi-GB files are hashed once, not on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "screensr_home",
    "vosr_home",
    "torch_hub_checkpoints",
    "RELEASES",
    "release_dir",
    "resolve_checkpoint",
    "find_path",
    "file_sha256",
    "weight_files",
    "write_random_tiny_weights",
]

HF_VOSR = "https://huggingface.co/CSWRY/VOSR/resolve/main/{}"
HF_SD21 = "https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/vae/{}"

# checkpoint tag (the benchmark method names) -> released folder name
RELEASES: dict[str, str] = {
    "vosr-0.5b-ms": "VOSR_0.5B_ms",
    "vosr-0.5b-os": "VOSR_0.5B_os",
    "vosr-1.4b-ms": "VOSR_1.4B_ms",
    "vosr-1.4b-os": "VOSR_1.4B_os",
}


def screensr_home() -> Path:
    """``$SCREENSR_HOME`` or ``~/.cache/screensr``."""
    return Path(
        os.path.expanduser(os.environ.get("SCREENSR_HOME") or os.path.join("~", ".cache", "screensr"))
    )


def vosr_home() -> Path:
    """Folder of the VOSR checkpoints and autoencoders: ``$SCREENSR_HOME/vosr``."""
    return screensr_home() / "vosr"


def torch_hub_checkpoints() -> Path:
    """``torch.hub.get_dir()/checkpoints`` computed without importing torch."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "torch"
    )
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints"


def find_path(relative: str, default: Path, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The first existing of ``weights_dir/relative``, ``weights_dir/<basename>``, ``default``.

    Returns ``default`` when none exists (the caller raises, naming it).
    """
    if weights_dir is not None:
        wd = Path(weights_dir).expanduser()
        for cand in (wd / relative, wd / Path(relative).name):
            if cand.exists():
                return cand
    return default


def release_dir(tag: str, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The run folder of a released checkpoint tag (``vosr-0.5b-os``, ...)."""
    folder = RELEASES[tag]
    return find_path(folder, vosr_home() / folder, weights_dir)


def resolve_checkpoint(
    spec: str | os.PathLike[str], weights_dir: str | os.PathLike[str] | None = None
) -> Path:
    """A checkpoint argument -> a path: a release tag (``vosr-0.5b-os``) or a file / folder.

    Raises:
        FileNotFoundError: naming what is missing, where it must go and how to get it.
    """
    s = str(spec)
    if s in RELEASES:
        path = release_dir(s, weights_dir)
        weights = path / "checkpoints" / "ema_model.safetensors"
        if not weights.is_file() or not (path / "args.json").is_file():
            raise FileNotFoundError(
                f"released checkpoint {s} not found: expected {path / 'args.json'} and {weights}. "
                f"Download the folder {RELEASES[s]}/ of https://huggingface.co/CSWRY/VOSR "
                f"(or ModelScope LULALULALU/VOSR_CKPT) into {path.parent}, or point to a folder "
                f"containing {RELEASES[s]}/ with --weights-dir DIR (bench method specs: {s}@weights_dir=DIR)"
            )
        return path
    path = Path(s).expanduser()
    if not path.exists():
        from vosr.config import did_you_mean

        raise FileNotFoundError(
            f"VOSR checkpoint {s!r} is neither a file/folder nor a release tag{did_you_mean(s, list(RELEASES))}"
        )
    return path


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
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if cache:
        entries = _read_hash_cache(cache_path)  # re-read: another process may have added entries
        entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        tmp = None
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{HASH_CACHE_FILE}.", suffix=".tmp", dir=cache_path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(entries, f, indent=1, sort_keys=True)
            os.replace(tmp, cache_path)
        except OSError as exc:  # a read-only cache folder: the hash is still right, just not remembered
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            warnings.warn(f"cannot write the hash cache {cache_path} ({exc})", stacklevel=2)
    return digest


def weight_files() -> list[dict[str, Any]]:
    """One dict per file the vosr package can use: name, path, url, used_by, description."""
    from vosr.autoencoders import AUTOENCODER_FILES
    from vosr.conditions import SEMANTIC_ENCODERS

    out: list[dict[str, Any]] = []
    for tag, folder in RELEASES.items():
        size = "0.5B" if "0.5b" in tag else "1.4B"
        kind = "one-step (distilled)" if tag.endswith("-os") else "multi-step"
        for rel in ("args.json", "checkpoints/ema_model.safetensors"):
            out.append(
                {
                    "name": f"{folder}/{rel}",
                    "path": vosr_home() / folder / rel,
                    "url": HF_VOSR.format(f"{folder}/{rel}"),
                    "used_by": [tag],
                    "description": f"VOSR-{size} {kind} release: {'training arguments' if rel == 'args.json' else 'EMA backbone weights'}",
                }
            )
    for spec in SEMANTIC_ENCODERS.values():
        if spec.url is None or spec.name == "dinov2_vits14":
            continue
        users = [t for t in RELEASES if ("0.5b" in t) == (spec.name == "dinov2_vitb14")]
        out.append(
            {
                "name": spec.weights_file,
                "path": torch_hub_checkpoints() / spec.weights_file,
                "url": spec.url,
                "used_by": users,
                "description": spec.description + " (torch-hub cache layout)",
            }
        )
    for entry in AUTOENCODER_FILES:
        out.append({**entry, "path": vosr_home() / entry["name"]})
    return out


def write_random_tiny_weights(
    root: str | os.PathLike[str] | None = None, *, seed: int = 0
) -> dict[str, Path]:
    """Write random weights for the ``vosr-tiny`` pipeline (tests, demos, perf scripts).

    Everything goes through the real formats: a diffusers ``AutoencoderKL`` folder
    (``tiny-kl-vae/``), a DINOv2 hub-format checkpoint (``dinov2_tiny_pretrain.pth``, 5x5
    pretraining grid), a multi-step run folder in the released layout (``vosr-tiny-ms/``) and a
    self-describing one-step file (``vosr-tiny-os.safetensors``). The backbones' zero-initialised
    output layers get small random values so the network does not predict zero.

    Args:
        root: a ``--weights-dir`` style folder receiving every file; None = the default caches
            (``$SCREENSR_HOME/vosr`` and ``$TORCH_HOME/hub/checkpoints``).
    Returns:
        {"autoencoder", "semantic_encoder", "checkpoint_ms", "checkpoint_os"} -> paths.
    """
    import torch

    from vosr.autoencoders import AUTOENCODERS, tiny_kl_config
    from vosr.checkpoints import save_checkpoint, save_run_folder
    from vosr.conditions import SEMANTIC_ENCODERS, build_semantic_encoder
    from vosr.model import create_model

    base = Path(root).expanduser() if root is not None else vosr_home()
    hub = Path(root).expanduser() if root is not None else torch_hub_checkpoints()
    base.mkdir(parents=True, exist_ok=True)
    hub.mkdir(parents=True, exist_ok=True)
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        from vosr.autoencoders import import_diffusers

        AutoencoderKL = import_diffusers().AutoencoderKL
        ae_dir = base / AUTOENCODERS["tiny-kl"][0]
        AutoencoderKL(**tiny_kl_config()).save_pretrained(ae_dir, safe_serialization=True)

        spec = SEMANTIC_ENCODERS["dinov2_tiny"]
        vit = build_semantic_encoder(spec, 1, spec.pretrain_grid * spec.patch_size).vit
        state = {k: v for k, v in vit.state_dict().items() if not k.startswith("head")}
        state["mask_token"] = torch.zeros(1, spec.embed_dim)  # the hub checkpoints carry one
        enc_path = hub / spec.weights_file
        torch.save(state, enc_path)

        paths = {"autoencoder": ae_dir, "semantic_encoder": enc_path}
        for one_step in (False, True):
            model = create_model("vosr-tiny", one_step=one_step)
            with torch.no_grad():
                for p in (*model.final_layer.parameters(),):
                    p.normal_(0.0, 0.02)
            if one_step:
                paths["checkpoint_os"] = save_checkpoint(model, base / "vosr-tiny-os.safetensors")
            else:
                save_run_folder(model, base / "vosr-tiny-ms")
                paths["checkpoint_ms"] = base / "vosr-tiny-ms"
    finally:
        torch.random.set_rng_state(gen_state)
    return paths
