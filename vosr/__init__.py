"""VOSR: a clean re-implementation of the vision-only generative SR model, compatible with the
released checkpoints.

Public entry points are imported lazily (PEP 562) so ``import vosr`` stays cheap:
``create_model`` (the backbone), ``VOSRUpscaler`` (image in, image out), ``SamplingConfig`` and
``UpscalerOptions`` (its typed options), ``load_checkpoint``, ``save_checkpoint``,
``model_config``, ``list_models``.

Layers, in import order (a module imports only modules listed before it; a test parses the
imports for cycles):

1. ``config`` (typed configs, model sizes, upscaler options), ``paths`` (cache locations),
   ``statedict`` (strict loading, key report), ``tiling`` (tile layout and blending),
   ``releases`` (the released checkpoints), ``degradations`` (training LQ synthesis, keyed RNG),
   ``colorfix``: besides ``core``, they import nothing but each other.
2. ``model`` (the backbone), ``autoencoders``, ``semantic`` (the two frozen-encoder
   registries), ``recipes`` (training configs), ``data``.
3. ``conditions`` (structural / partial / training conditions), ``flow`` (conventions and the
   multi-step loss), ``sampling`` (velocity adapters and samplers), ``distill`` (its losses),
   ``checkpoints``, ``weights`` (the weight-file catalogue, content hashes), ``components``.
4. ``pipeline`` (``VOSRUpscaler``), ``train_log`` and ``train`` (``Trainer``), ``testing``
   (random tiny weights for tests and demos).
5. ``infer_cli``, ``train_cli``, ``cli``: standard library and ``core.errors`` at module level,
   the rest imported by the handlers (``--help`` stays instant).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_model": "vosr.model",
    "VOSRDiT": "vosr.model",
    "ModelConfig": "vosr.config",
    "SamplingConfig": "vosr.config",
    "UpscalerOptions": "vosr.config",
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
