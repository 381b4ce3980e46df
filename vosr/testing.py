"""Random-weight ``vosr-tiny`` files for tests, demos and perf scripts (never for results).

:func:`write_random_tiny_weights` writes, through the real formats and the one random-component
creation of ``vosr.components``: the random-init ``tiny-kl`` autoencoder folder, the
``dinov2_tiny`` hub-format encoder checkpoint, a multi-step run folder in the released layout
(``vosr-tiny-ms/``) and a self-describing one-step file (``vosr-tiny-os.safetensors``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from core.paths import torch_hub_checkpoints
from vosr.autoencoders import get_autoencoder
from vosr.checkpoints import save_checkpoint, save_run_folder
from vosr.components import write_random_autoencoder
from vosr.config import model_config
from vosr.model import create_model
from vosr.paths import vosr_home
from vosr.semantic import get_semantic_encoder, write_random_semantic_weights

__all__ = ["write_random_tiny_weights"]


def write_random_tiny_weights(
    root: str | os.PathLike[str] | None = None, *, seed: int = 0
) -> dict[str, Path]:
    """Write random weights for the ``vosr-tiny`` pipeline.

    The backbones' zero-initialised output layers get small random values so the network does not
    predict zero. The global torch generator is left as it was.

    Args:
        root: a ``--weights-dir`` style folder receiving every file; None = the default caches
            (``$SCREENSR_HOME/vosr`` and ``$TORCH_HOME/hub/checkpoints``).
        seed: every file is a deterministic function of it.
    Returns:
        {"autoencoder", "semantic_encoder", "checkpoint_ms", "checkpoint_os"} -> paths.
    """
    base = Path(root).expanduser() if root is not None else vosr_home()
    hub = Path(root).expanduser() if root is not None else torch_hub_checkpoints()
    cfg = model_config("vosr-tiny")
    ae_name, enc_name = cfg.autoencoder, cfg.semantic_encoder
    state = torch.random.get_rng_state()
    try:
        # one stream for every file, in a fixed order, so the files are a function of ``seed`` alone
        torch.manual_seed(seed)
        paths = {
            "autoencoder": write_random_autoencoder(ae_name, base / get_autoencoder(ae_name).folder, seed=None),
            "semantic_encoder": write_random_semantic_weights(
                enc_name, hub / get_semantic_encoder(enc_name).weights_file, seed=None
            ),
        }
        for one_step in (False, True):
            model = create_model("vosr-tiny", one_step=one_step)
            with torch.no_grad():
                for p in model.final_layer.parameters():
                    p.normal_(0.0, 0.02)
            if one_step:
                paths["checkpoint_os"] = save_checkpoint(model, base / "vosr-tiny-os.safetensors")
            else:
                save_run_folder(model, base / "vosr-tiny-ms")
                paths["checkpoint_ms"] = base / "vosr-tiny-ms"
    finally:
        torch.random.set_rng_state(state)
    return paths
