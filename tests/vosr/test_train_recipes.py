"""The shipped recipes carry the paper's numbers (appendix Table 3; docs/vosr-reference.md, "5. Distillation (one step)" and
"6. Training recipe (appendix Table 3 and the released configs)")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vosr import create_model
from vosr.config import ConfigError
from vosr.recipes import Stage, TrainConfig, config_from_json, list_recipes, load_recipe


@pytest.mark.parametrize("name", ["vosr-0.5b-ms", "vosr-1.4b-ms"])
def test_multistep_recipes(name: str) -> None:
    cfg = load_recipe(name)
    assert cfg.mode == "multistep" and cfg.model == name[:-3]
    assert cfg.stages == (Stage(256, 400_000, 1024, 1e-4), Stage(512, 400_000, 256, 5e-5))
    assert cfg.optim.betas == (0.9, 0.95) and cfg.optim.eps == 1e-8
    assert cfg.optim.weight_decay == 0.01 and cfg.optim.grad_clip == 1.0
    assert cfg.ema_decay == 0.9999 and cfg.mixed_precision == "auto"
    assert cfg.conditions.guidance == "partial_random" and cfg.conditions.weak_strength == (0.05, 0.25)
    assert cfg.conditions.dropout_prob == 0.1 and cfg.conditions.noise_aug
    assert (cfg.conditions.noise_aug_mean, cfg.conditions.noise_aug_std) == (5.0, 1.0)
    assert cfg.parallel == ("fsdp" if "1.4b" in name else "ddp")


@pytest.mark.parametrize("name", ["vosr-0.5b-os", "vosr-1.4b-os"])
def test_distillation_recipes(name: str) -> None:
    cfg = load_recipe(name)
    assert cfg.mode == "distill" and cfg.stages == (Stage(512, 50_000, 32, 2e-5),)
    d = cfg.distill
    assert (d.variant, d.guidance, d.weak_strength, d.delta, d.rollout_steps, d.clip, d.consistency_weight) == (
        "rc", 0.5, 0.1, 0.01, 2, 1.0, 1.0
    )


@pytest.mark.parametrize(
    ("name", "params"),
    [("vosr-0.5b-ms", 485_623_616), ("vosr-0.5b-os", 486_936_384), ("vosr-1.4b-ms", 1_393_943_616),
     ("vosr-1.4b-os", 1_396_699_200)],
)
def test_recipes_build_the_released_model_sizes(name: str, params: int) -> None:
    cfg = load_recipe(name)
    with torch.device("meta"):
        model = create_model(cfg.model, one_step=cfg.mode == "distill")
    assert sum(p.numel() for p in model.parameters()) == params


def test_schedule_arithmetic() -> None:
    cfg = load_recipe("vosr-0.5b-ms")
    assert cfg.total_steps == 800_000
    assert cfg.stage_at(0)[1].resolution == 256 and cfg.stage_at(400_000)[1].resolution == 512
    assert cfg.samples_before(400_001) == 400_000 * 1024 + 256
    assert cfg.accumulation(cfg.stages[0], 8) == 4  # 1024 = 32 x 4 x 8 GPUs
    with pytest.raises(ConfigError, match="not a multiple of micro_batch"):
        cfg.accumulation(cfg.stages[0], 3)


def test_every_recipe_round_trips_through_json() -> None:
    for name in list_recipes():
        cfg = load_recipe(name)
        assert config_from_json(cfg.to_json()) == cfg


def test_recipe_files_and_type_errors(tmp_path: Path) -> None:
    p = tmp_path / "mine.yaml"
    p.write_text("model: vosr-tiny\nstages:\n  - {resolution: 64, steps: 3, batch_size: 2, lr: 1e-3}\nmicro_batch: 2\n")
    cfg = load_recipe(p)
    assert isinstance(cfg, TrainConfig) and cfg.stages[0].lr == 1e-3  # "1e-3" (a YAML string) accepted
    p.write_text("micro_batch: two\n")
    with pytest.raises(ConfigError, match="micro_batch: expected an integer, got str 'two'"):
        load_recipe(p)
    p.write_text("conditions: {guidance: partial}\n")
    with pytest.raises(ConfigError, match="did you mean 'partial_fixed'"):
        load_recipe(p)
    p.write_text("stages:\n  - {resolution: 70, steps: 1, batch_size: 1, lr: 1}\n")
    with pytest.raises(ConfigError, match="multiple of 16"):
        load_recipe(p)
    p.write_text("distill: {variant: rcc}\n")
    with pytest.raises(ConfigError, match="did you mean 'rc'"):
        load_recipe(p)
