"""The paper's ablation switches: guidance design (Table 4) and semantic encoder (Table 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _train_helpers import write_images, write_tiny_weights

from vosr.degradations import generator
from vosr.recipes import ConditionConfig, load_recipe
from vosr.train import ConditionEncoders, Trainer, training_conditions


def _batch(n: int = 512):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, 2, 2, generator=g), torch.randn(n, 3, 8, generator=g)


def _run(cc: ConditionConfig, step: int = 0, n: int = 512):
    c, s = _batch(n)
    gens = [generator(0, "train", i) for i in range(n)]
    return c, s, training_conditions(c, s, gens, generator(0, "weak-strength", step), cc)


def test_partial_random_strength_is_per_step_in_range_and_dropout_rate_is_10_percent() -> None:
    cc = ConditionConfig(noise_aug=False)
    ws = []
    for step in range(40):
        c, s, (c2, s2, drop, w) = _run(cc, step, n=64)
        assert 0.05 <= w <= 0.25
        ws.append(w)
        # dropped samples: w * c_str and zero semantic tokens; the others untouched
        assert torch.allclose(c2[drop], w * c[drop]) and torch.equal(s2[drop], torch.zeros_like(s[drop]))
        assert torch.equal(c2[~drop], c[~drop]) and torch.equal(s2[~drop], s[~drop])
    assert max(ws) - min(ws) > 0.1  # it varies between steps
    _, _, (_, _, drop, _) = _run(cc, 0, n=4000)
    assert abs(drop.float().mean().item() - 0.1) < 0.015


def test_guidance_designs() -> None:
    c, s, (c2, s2, drop, w) = _run(ConditionConfig(guidance="full", noise_aug=False))
    assert not drop.any() and torch.equal(c2, c) and torch.equal(s2, s)
    c, s, (c2, s2, drop, w) = _run(ConditionConfig(guidance="cfg", noise_aug=False))
    assert w == 0 and drop.any() and torch.all(c2[drop] == 0) and torch.all(s2[drop] == 0)
    c, s, (c2, s2, drop, w) = _run(ConditionConfig(guidance="partial_fixed", fixed_strength=0.1, noise_aug=False))
    assert w == 0.1 and torch.allclose(c2[drop], 0.1 * c[drop])


def test_noise_augmentation_is_applied_per_sample() -> None:
    c, s, (c2, _, drop, _) = _run(ConditionConfig(guidance="full"))
    diff = (c2 - c).flatten(1).norm(dim=1) / c.flatten(1).norm(dim=1)
    assert diff.min() > 0 and diff.median() < 0.2  # a = sigmoid(N(5, 1)): mostly close to clean


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    write_tiny_weights()
    return write_images(tmp_path_factory.mktemp("hq"), 4)


@pytest.mark.parametrize("guidance", ["full", "cfg", "partial_fixed"])
def test_each_guidance_design_trains(images: Path, tmp_path: Path, guidance: str) -> None:
    cfg = load_recipe("tiny", {"conditions.guidance": guidance})
    res = Trainer(cfg, [images], tmp_path / guidance, max_steps=2, progress=False).fit()
    assert res.step == 2


def test_no_semantic_encoder_trains_and_is_recorded(images: Path, tmp_path: Path) -> None:
    from vosr.checkpoints import read_checkpoint

    cfg = load_recipe("tiny", {"semantic_encoder": "none"})
    trainer = Trainer(cfg, [images], tmp_path / "none", max_steps=2, progress=False)
    trainer.fit()
    assert trainer.encoders.encoder is None
    _, info = read_checkpoint(tmp_path / "none")
    assert info.config.semantic_encoder == "none"


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["clip", "siglip2", "dinov3"])
def test_timm_semantic_encoders_train(images: Path, tmp_path: Path, encoder: str) -> None:
    """ViT-B/16 encoders with random weights (their real weights come from the HF cache)."""
    import functools

    cfg = load_recipe("tiny", {"semantic_encoder": encoder, "micro_batch": 2,
                               "stages": [{"resolution": 64, "steps": 2, "batch_size": 2, "lr": 1e-3}]})
    factory = functools.partial(ConditionEncoders, pretrained_semantic=False)
    trainer = Trainer(cfg, [images], tmp_path / encoder, max_steps=2, progress=False, encoders=factory)
    res = trainer.fit()
    assert res.step == 2 and trainer.model_cfg.semantic_dim == 768
    sem = trainer.encoders.semantic(torch.rand(1, 3, 64, 64))
    assert sem.shape[0] == 1 and sem.shape[2] == 768
