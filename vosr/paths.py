"""Where the ``vosr`` package's weight files live (computed when asked; nothing is created).

* ``$SCREENSR_HOME/vosr/`` (:func:`vosr_home`): the released run folders, the autoencoder
  folders, the light decoder and the weight-hash cache.
* ``$TORCH_HOME/hub/checkpoints/`` (``core.paths.torch_hub_checkpoints``): the DINOv2 hub files.

Every loader also takes ``weights_dir`` (the CLI's ``--weights-dir``), a folder searched first
(:func:`find_path`). This module imports nothing else from ``vosr``, so every layer can use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.paths import screensr_home

__all__ = ["vosr_home", "find_path"]


def vosr_home() -> Path:
    """Folder of the VOSR checkpoints and autoencoders: ``$SCREENSR_HOME/vosr``."""
    return screensr_home() / "vosr"


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
