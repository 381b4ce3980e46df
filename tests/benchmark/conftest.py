"""Shared fixtures of the benchmark tests: small synthetic datasets and random metric weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from bench_helpers import DREALSR, make_generic


@pytest.fixture
def generic_ds(tmp_path: Path) -> Path:
    return make_generic(tmp_path / "toy")


@pytest.fixture
def drealsr_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "drealsr_osediff"
    shutil.copytree(DREALSR, dst)
    return dst


@pytest.fixture(scope="session")
def lpips_random_weights() -> None:
    """Random LPIPS (AlexNet + linear layers) weights at the exact cache paths pyiqa reads."""
    import torch
    import torchvision

    from benchmark.weights import metric_weight_files

    files = {f.name: f.path for f in metric_weight_files("lpips")}
    torch.manual_seed(0)
    alex = files["alexnet-owt-7be5be79.pth"]
    alex.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.alexnet().state_dict(), alex)
    from pyiqa.archs.lpips_arch import LPIPS

    lin = files["LPIPS_v0.1_alex-df73285e.pth"]
    lin.parent.mkdir(parents=True, exist_ok=True)
    net = LPIPS(pretrained=False, net="alex")
    # random positive linear weights (LPIPS' calibrated layers are non-negative)
    sd = {k: (v.abs() + 0.01 if k.startswith("lin") else v) for k, v in net.state_dict().items()}
    torch.save(sd, lin)
