"""VOSR: a clean re-implementation of the vision-only generative SR model, compatible with the
released checkpoints.

Public entry points are imported lazily (PEP 562) so ``import vosr`` stays cheap:
``create_model`` (the backbone), ``VOSRUpscaler`` (image in, image out), ``load_checkpoint``,
``save_checkpoint``, ``model_config``, ``list_models``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_model": "vosr.model",
    "VOSRDiT": "vosr.model",
    "ModelConfig": "vosr.config",
    "SamplingConfig": "vosr.config",
    "model_config": "vosr.config",
    "list_models": "vosr.config",
    "load_checkpoint": "vosr.checkpoints",
    "save_checkpoint": "vosr.checkpoints",
    "VOSRUpscaler": "vosr.pipeline",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vosr' has no attribute {name!r}")
