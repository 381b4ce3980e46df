"""Stopping and resuming gives bit-identical weights to an uninterrupted run (CPU)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from vosr.recipes import load_recipe
from vosr.train import Trainer


@pytest.fixture
def images(tiny_cache_weights, hq_images: Path) -> Path:
    return hq_images


def _state(run: Path) -> dict:
    return torch.load(sorted((run / "state").glob("step_*.pt"))[-1], weights_only=False)


def _assert_same(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k}"
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        for k in pa:
            assert torch.equal(pa[k], pb[k]), f"optimizer {k}"
    assert a["scheduler"] == b["scheduler"]


def _rows(run: Path) -> list[tuple[str, str]]:
    with (run / "metrics.csv").open() as f:
        return [(r["step"], r["loss"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        # progressive stages: stop inside the first stage, resume across the 64 -> 80 px switch
        {"stages": [{"resolution": 64, "steps": 5, "batch_size": 4, "lr": 1e-3},
                    {"resolution": 80, "steps": 20, "batch_size": 2, "lr": 5e-4}], "micro_batch": 2},
    ],
    ids=["one-stage", "two-stages"],
)
def test_resume_is_bit_exact(images: Path, tmp_path: Path, overrides: dict) -> None:
    cfg = load_recipe("tiny", {"checkpoint_every": 1000, "log_every": 1, **overrides})
    full = tmp_path / "full"
    Trainer(cfg, [images], full, max_steps=9, progress=False).fit()
    part = tmp_path / "part"
    first = Trainer(cfg, [images], part, max_steps=3, progress=False).fit()
    assert first.step == 3
    # a later row that the interrupted run had logged beyond its checkpoint is dropped on resume
    with (part / "metrics.csv").open("a") as f:
        f.write("4,123.0,,,,,,,\n")
    second = Trainer(cfg, [images], part, max_steps=9, progress=False).fit()
    assert second.resumed_from == 3 and second.step == 9
    _assert_same(_state(full), _state(part))
    assert _rows(full) == _rows(part)


def test_distillation_resume_is_bit_exact(trained_tiny, images: Path, tmp_path: Path) -> None:
    teacher = trained_tiny.run
    cfg = load_recipe("tiny", {"mode": "distill", "checkpoint_every": 1000})
    Trainer(cfg, [images], tmp_path / "full", teacher=teacher, max_steps=6, progress=False).fit()
    Trainer(cfg, [images], tmp_path / "part", teacher=teacher, max_steps=2, progress=False).fit()
    Trainer(cfg, [images], tmp_path / "part", teacher=teacher, max_steps=6, progress=False).fit()
    _assert_same(_state(tmp_path / "full"), _state(tmp_path / "part"))


def test_dataloader_workers_do_not_change_the_run(images: Path, tmp_path: Path) -> None:
    """Stateless, index-keyed sampling: 0 or 2 workers feed identical batches."""
    base = {"checkpoint_every": 1000}
    Trainer(load_recipe("tiny", base), [images], tmp_path / "w0", max_steps=3, progress=False).fit()
    Trainer(load_recipe("tiny", {**base, "num_workers": 2}), [images], tmp_path / "w2", max_steps=3, progress=False).fit()
    _assert_same(_state(tmp_path / "w0"), _state(tmp_path / "w2"))
