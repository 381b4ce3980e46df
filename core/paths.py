"""Where ScreenSR and the libraries it drives keep their files.

Computed without importing torch or huggingface_hub, with the same rules they use, so a listing
(``screensr weights``, ``screensr doctor``) is instant and names the exact path a loader reads.
An environment variable set to the empty string counts as unset everywhere (``SCREENSR_HOME=""``
means the default, never the working directory).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "screensr_home",
    "torch_home",
    "torch_hub_dir",
    "torch_hub_checkpoints",
    "hf_hub_cache_dir",
    "env_path",
]


def env_path(name: str, default: str | os.PathLike[str]) -> Path:
    """``$name`` as an expanded path, or ``default`` when the variable is unset or empty."""
    value = os.environ.get(name) or os.fspath(default)
    return Path(os.path.expanduser(value))


def _xdg_cache() -> Path:
    return env_path("XDG_CACHE_HOME", os.path.join("~", ".cache"))


def screensr_home() -> Path:
    """The suite's own cache: ``$SCREENSR_HOME``, default ``~/.cache/screensr``.

    Holds the method output cache, named datasets, VOSR checkpoints and autoencoders, and the
    default study store.
    """
    return env_path("SCREENSR_HOME", os.path.join("~", ".cache", "screensr"))


def torch_home() -> Path:
    """``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch`` (torch.hub's rule)."""
    return env_path("TORCH_HOME", _xdg_cache() / "torch")


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()``: ``$TORCH_HOME/hub``."""
    return torch_home() / "hub"


def torch_hub_checkpoints() -> Path:
    """Where torch.hub and torchvision keep downloaded checkpoints: ``$TORCH_HOME/hub/checkpoints``."""
    return torch_hub_dir() / "checkpoints"


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return env_path("HF_HUB_CACHE", "")
    return env_path("HF_HOME", _xdg_cache() / "huggingface") / "hub"
