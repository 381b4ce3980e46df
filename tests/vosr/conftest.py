"""Fixtures of the vosr tests: golden tensors, tiny random weights, synthetic images, one trained run.

Expensive things are built once per test session and shared: the random ``vosr-tiny`` weights
(in a ``--weights-dir`` folder and at the default cache paths ``tests/conftest.py`` points at a
temporary folder), the training images, and the tiny recipe trained for 150 steps
(``trained_tiny``), which every test needing a trained multi-step checkpoint or a distillation
teacher reuses. Tests must not write into these shared folders.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "vosr_backbone_tiny.safetensors"
TRAINED_STEPS = 150


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Every vosr test runs torch on one intra-op thread, as the tiny recipe trains.

    The test models are tiny: a second thread buys nothing and, on a shared machine, costs
    several-fold in contention (tests/perf/bench_vosr_train.py measures it). Trainer.fit applies the
    recipe's ``cpu_threads`` itself; this covers inference and direct model calls.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- golden backbone


@pytest.fixture(scope="session")
def golden() -> dict[str, torch.Tensor]:
    """Every tensor of the golden file (see tests/data/golden/README.md)."""
    return load_file(str(GOLDEN))


@pytest.fixture(scope="session")
def golden_weights(golden: dict[str, torch.Tensor]) -> Callable[[str], dict[str, torch.Tensor]]:
    """``golden_weights(tag)``: the official tiny state dict of ``tag`` ('multi_step' or 'one_step')."""

    def weights(tag: str) -> dict[str, torch.Tensor]:
        prefix = f"{tag}.weights."
        return {k[len(prefix) :]: v for k, v in golden.items() if k.startswith(prefix)}

    return weights


@pytest.fixture(scope="session")
def golden_model(golden_weights: Callable[[str], dict[str, torch.Tensor]]) -> Callable[[str], torch.nn.Module]:
    """``golden_model(tag)``: vosr-tiny with the official golden weights, loaded strictly, in eval mode."""
    from vosr import create_model

    def build(tag: str) -> torch.nn.Module:
        model = create_model("vosr-tiny", one_step=tag == "one_step")
        model.load_state_dict(golden_weights(tag), strict=True)
        return model.eval()

    return build


# --------------------------------------------------------------------------- random tiny weights


@pytest.fixture(scope="session")
def tiny_weights(test_cache_root: Path) -> dict[str, Path]:
    """Random vosr-tiny weights (autoencoder, encoder, ms run folder, os file) in a
    ``--weights-dir`` style folder; ``"root"`` is that folder."""
    from vosr.testing import write_random_tiny_weights

    root = Path(tempfile.mkdtemp(prefix="vosr-tiny-", dir=test_cache_root))
    return {**write_random_tiny_weights(root, seed=0), "root": root}


@pytest.fixture(scope="session")
def tiny_cache_weights() -> dict[str, Path]:
    """The random ``tiny-kl`` VAE and ``dinov2_tiny`` encoder (and tiny backbones) at the default
    cache paths, where the loaders look without ``--weights-dir``."""
    from vosr.testing import write_random_tiny_weights

    return write_random_tiny_weights(seed=0)


# --------------------------------------------------------------------------- images


def _synthetic_image(seed: int, h: int = 80, w: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.02, 0.2), rng.uniform(0.02, 0.2), rng.uniform(0, 6.28)
        img[..., c] = 0.5 + 0.35 * np.sin(fx * xx + fy * yy + ph)
    for _ in range(4):  # hard-edged rectangles
        y0, x0 = rng.integers(0, max(h - h // 4, 1)), rng.integers(0, max(w - w // 4, 1))
        img[y0 : y0 + rng.integers(h // 8 + 1, h // 3 + 2), x0 : x0 + rng.integers(w // 8 + 1, w // 3 + 2)] = rng.uniform(0, 1, 3)
    img += rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _write_images(folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (80, 96)) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), _synthetic_image(seed + i, *size)[:, :, ::-1])
    return folder


@pytest.fixture(scope="session")
def synthetic_image() -> Callable[..., np.ndarray]:
    """``synthetic_image(seed, h=80, w=96)``: a deterministic 8-bit RGB (h, w, 3) image with
    gradients, edges and texture."""
    return _synthetic_image


@pytest.fixture(scope="session")
def write_images() -> Callable[..., Path]:
    """``write_images(folder, n, seed=0, size=(80, 96))``: ``n`` synthetic PNGs in ``folder``."""
    return _write_images


@pytest.fixture(scope="session")
def hq_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 8 synthetic 80x96 HQ training images (shared: do not write into it)."""
    return _write_images(tmp_path_factory.mktemp("hq"), 8)


# --------------------------------------------------------------------------- one trained run


@dataclass(frozen=True)
class TrainedRun:
    """The session's tiny run: its folder, the training images, the steps asked for, the fit's result."""

    run: Path
    images: Path
    steps: int
    result: Any  # vosr.train.TrainResult


@pytest.fixture(scope="session")
def trained_tiny(tiny_cache_weights: dict[str, Path], hq_images: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:  # fmt: skip
    """The tiny recipe trained once per session for 150 steps (a snapshot every 10 steps, all kept).

    The multi-step checkpoint of every test that needs a trained model or a distillation teacher.
    """
    from vosr.recipes import load_recipe
    from vosr.train import Trainer

    run = tmp_path_factory.mktemp("trained") / "tiny"
    cfg = load_recipe("tiny", {"checkpoint_every": 10, "keep_checkpoints": 100})
    result = Trainer(cfg, [hq_images], run, max_steps=TRAINED_STEPS, progress=False).fit()
    return TrainedRun(run, hq_images, TRAINED_STEPS, result)
