"""Where a training run's frozen components live: the autoencoder and the semantic encoder.

A backbone is only meaningful with the autoencoder whose latent space it was trained in and the
semantic encoder whose tokens it read. The trainer resolves both before training and records
them in ``RUN/components.json`` (and in every snapshot), so inference of the run needs no
``--weights-dir``::

    {"weights_dir": "components",            # folder searched first by the loaders, relative
                                              # to this file's folder; null = the default caches
     "random_init": true,                     # every component is a random-weight test size
     "autoencoder": {"name": "tiny-kl", "path": "components/tiny-kl-vae", "random_init": true},
     "semantic_encoder": {"name": "dinov2_tiny", "path": "...", "random_init": true}}

The CPU test size ``vosr-tiny`` has no trained components: when its files are found nowhere, the
training command creates random-init ones inside the run (``RUN/components/``) and says so. A
model trained on a random autoencoder produces noise-like images by design; it exercises every
code path, not image quality. Distillation never creates components: the student must work in
its teacher's latent space, so it uses the teacher's record.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.atomic import atomic_write_json
from core.errors import ConfigError, UserError
from vosr.autoencoders import DIFFUSERS_FILES, autoencoder_dir, get_autoencoder, import_diffusers
from vosr.config import ModelConfig
from vosr.degradations import derive_seed
from vosr.semantic import get_semantic_encoder, semantic_weights_path, write_random_semantic_weights

__all__ = [
    "COMPONENTS_FILE",
    "RANDOM_INIT_NOTE",
    "Component",
    "RunComponents",
    "ComponentsError",
    "read_record",
    "write_record",
    "run_weights_dir",
    "resolve_components",
    "write_random_autoencoder",
]

COMPONENTS_FILE = "components.json"
RANDOM_INIT_NOTE = (
    "this model uses a random-init autoencoder and semantic encoder (the vosr-tiny CPU test size): "
    "its outputs are noise-like images by design; it exercises the train -> distill -> infer code "
    "paths, not image quality"
)


class ComponentsError(UserError, RuntimeError):
    """A run's components cannot be found or created (the message says what to do)."""


@dataclass(frozen=True)
class Component:
    """One frozen component: registry name, resolved file or folder, random weights or trained."""

    name: str
    path: Path
    random_init: bool


@dataclass(frozen=True)
class RunComponents:
    """What a run trains with; ``weights_dir`` is what the loaders get (None = default caches)."""

    weights_dir: Path | None
    autoencoder: Component
    semantic_encoder: Component | None  # None: the "none" ablation runs no encoder
    created: tuple[str, ...] = ()  # one message per component this call created

    @property
    def random_init(self) -> bool:
        parts = [self.autoencoder] + ([self.semantic_encoder] if self.semantic_encoder else [])
        return all(c.random_init for c in parts)


def _rel(target: Path, folder: Path) -> str:
    return os.path.relpath(Path(target).resolve(), Path(folder).resolve())


def write_record(folder: str | os.PathLike[str], comps: RunComponents) -> Path:
    """Write ``folder/components.json`` atomically; paths are stored relative to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def part(c: Component | None) -> dict[str, Any] | None:
        return None if c is None else {"name": c.name, "path": _rel(c.path, folder), "random_init": c.random_init}

    data = {
        "weights_dir": None if comps.weights_dir is None else _rel(comps.weights_dir, folder),
        "random_init": comps.random_init,
        "autoencoder": part(comps.autoencoder),
        "semantic_encoder": part(comps.semantic_encoder),
    }
    if comps.random_init:
        data["note"] = RANDOM_INIT_NOTE
    return atomic_write_json(folder / COMPONENTS_FILE, data)


def _read_file(rec: Path) -> dict[str, Any]:
    try:
        data = json.loads(rec.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{rec}: unreadable components record ({exc}); delete it and pass --weights-dir") from exc
    if not isinstance(data, dict) or "weights_dir" not in data:
        raise ConfigError(f"{rec}: not a components record (no 'weights_dir'); delete it and pass --weights-dir")
    return data


def read_record(checkpoint: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """(record folder, record) of a run folder or a weights file inside one, or None.

    A folder is looked at itself; a file beside it and one folder up (the released layout keeps
    weights in ``RUN/checkpoints/``).
    """
    p = Path(checkpoint).expanduser()
    if not p.exists():
        return None
    folders = [p] if p.is_dir() else [p.parent, p.parent.parent]
    for folder in folders:
        rec = folder / COMPONENTS_FILE
        if rec.is_file():
            return folder, _read_file(rec)
    return None


def run_weights_dir(
    checkpoint: str | os.PathLike[str], weights_dir: str | os.PathLike[str] | None = None
) -> str | os.PathLike[str] | None:
    """The folder the loaders search first for a checkpoint's autoencoder and semantic encoder.

    An explicit ``weights_dir`` (``--weights-dir``) wins; else the folder a training run recorded
    in its ``components.json`` (e.g. the random-init components of a ``vosr-tiny`` run); else
    None (the default caches). Release folders carry no record.
    """
    if weights_dir is not None:
        return weights_dir
    found = read_record(checkpoint)
    if found is None or found[1]["weights_dir"] is None:
        return None
    folder, data = found
    return (folder / data["weights_dir"]).resolve()


# --- creation and resolution -----------------------------------------------------------------

def write_random_autoencoder(name: str, folder: str | os.PathLike[str], seed: int | None = 0) -> Path:
    """Write a random-init diffusers ``AutoencoderKL`` folder of test size ``name`` (atomic).

    The folder is built beside its destination and renamed into place, so an interrupted write
    never leaves a half folder behind (``core.atomic`` is for single files).

    Args:
        seed: seeds the weights; the global torch generator is left as it was. None draws from
            the global generator as it stands (a caller seeding several files in one stream).
    """
    spec = get_autoencoder(name)
    if spec.random_config is None:
        raise ComponentsError(f"autoencoder {name!r} has trained weights only; it cannot be created with random ones")
    autoencoder_kl = import_diffusers().AutoencoderKL
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    state = torch.random.get_rng_state()
    try:
        if seed is not None:
            torch.manual_seed(seed)
        autoencoder_kl(**spec.random_config()).save_pretrained(tmp, safe_serialization=True)
        if folder.exists():  # an incomplete folder of an interrupted earlier attempt
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if seed is not None:
            torch.random.set_rng_state(state)
    return folder


def _autoencoder_found(folder: Path) -> bool:
    return all((folder / f).is_file() for f in DIFFUSERS_FILES)


def _locate(model_cfg: ModelConfig, semantic: bool, weights_dir: Path | None) -> tuple[Component, Component | None]:
    ae = Component(model_cfg.autoencoder, autoencoder_dir(model_cfg.autoencoder, weights_dir),
                   get_autoencoder(model_cfg.autoencoder).random_init)
    enc = None
    if semantic:
        spec = get_semantic_encoder(model_cfg.semantic_encoder)
        enc = Component(spec.name, semantic_weights_path(spec, weights_dir), spec.random_init)
    return ae, enc


def resolve_components(
    model_cfg: ModelConfig,
    *,
    semantic: bool,
    run_dir: str | os.PathLike[str],
    weights_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    allow_create: bool = True,
    log: Callable[[str], None] | None = None,
) -> RunComponents:
    """Find (or, for random-init test sizes, create) the components of a run.

    Order: the run's own ``components.json`` (a resumed run keeps its components), then
    ``weights_dir`` and the default caches. When some component is missing and every component
    of the model is a random-init test size, all of them are created in ``RUN/components/``
    (seeded by ``seed``) and ``log`` is told. A missing trained component is left to its loader,
    whose error names the file and where it goes.

    Args:
        model_cfg: names the autoencoder and the semantic encoder.
        semantic: False when the run uses no semantic encoder (the ``none`` ablation).
        run_dir: the run folder.
        weights_dir: ``--weights-dir``, or the teacher's recorded folder for distillation.
        allow_create: False for distillation (a student must use its teacher's components).

    Raises:
        ComponentsError: random-init components are missing where creating them is not allowed.
    """
    run_dir = Path(run_dir)
    wd = Path(weights_dir).expanduser() if weights_dir is not None else None
    own = run_dir / COMPONENTS_FILE
    if own.is_file() and _read_file(own)["weights_dir"] is not None:
        wd = (run_dir / _read_file(own)["weights_dir"]).resolve()
    ae, enc = _locate(model_cfg, semantic, wd)
    parts = [ae] + ([enc] if enc else [])
    missing = [c for c in parts if not (_autoencoder_found(c.path) if c is ae else c.path.is_file())]
    if not missing or not all(c.random_init for c in parts):
        return RunComponents(wd, ae, enc)
    names = ", ".join(f"{c.name} ({c.path})" for c in missing)
    if not allow_create:
        raise ComponentsError(
            f"the random-init components {names} of this {model_cfg.name} model were not found. A student must "
            "use its teacher's autoencoder and encoder: pass the teacher's run folder as --teacher (its "
            f"{COMPONENTS_FILE} records where they are) or --weights-dir DIR holding them"
        )
    target = run_dir / "components"
    ae_dir = target / get_autoencoder(ae.name).folder
    created = []
    if not _autoencoder_found(ae_dir):
        write_random_autoencoder(ae.name, ae_dir, seed=derive_seed(seed, "components", ae.name))
        created.append(f"created a random-init {ae.name} autoencoder in {ae_dir}")
    new_ae = Component(ae.name, ae_dir, True)
    new_enc = None
    if enc is not None:
        enc_path = target / get_semantic_encoder(enc.name).weights_file
        if not enc_path.is_file():
            write_random_semantic_weights(enc.name, enc_path, seed=derive_seed(seed, "components", enc.name))
            created.append(f"created a random-init {enc.name} semantic encoder in {enc_path}")
        new_enc = Component(enc.name, enc_path, True)
    for msg in created:
        if log is not None:
            log(f"{model_cfg.name}: {msg} (no trained weights exist for this test size)")
    return RunComponents(target, new_ae, new_enc, tuple(created))
