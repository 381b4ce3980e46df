"""Shared helpers of the vosr inference tests (golden file access, tiny weights on disk)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "vosr_backbone_tiny.safetensors"


def golden() -> dict[str, torch.Tensor]:
    """Every tensor of the golden file (see tests/data/golden/README.md)."""
    return load_file(str(GOLDEN))


def golden_weights(tag: str) -> dict[str, torch.Tensor]:
    """The official tiny state dict of ``tag`` ('multi_step' or 'one_step')."""
    prefix = f"{tag}.weights."
    return {k[len(prefix) :]: v for k, v in golden().items() if k.startswith(prefix)}


def golden_model(tag: str) -> torch.nn.Module:
    """vosr-tiny with the official golden weights, loaded strictly, in eval mode."""
    from vosr import create_model

    model = create_model("vosr-tiny", one_step=tag == "one_step")
    model.load_state_dict(golden_weights(tag), strict=True)
    return model.eval()


_TINY: dict[str, Path] = {}


def tiny_weights() -> dict[str, Path]:
    """Random vosr-tiny weights (autoencoder, encoder, ms run folder, os file), written once per
    test session into a ``--weights-dir`` style folder under the test cache root."""
    if not _TINY:
        import os
        import tempfile

        from vosr.weights import write_random_tiny_weights

        root = Path(
            tempfile.mkdtemp(
                prefix="vosr-tiny-",
                dir=os.environ.get("SCREENSR_HOME") and Path(os.environ["SCREENSR_HOME"]).parent,
            )
        )
        _TINY.update(write_random_tiny_weights(root, seed=0))
        _TINY["root"] = root
    return _TINY
