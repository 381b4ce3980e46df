"""Typed training / distillation configs and the named recipes.

A recipe is a YAML file (``vosr/recipes/<name>.yaml``, or any path) whose keys are the fields of
:class:`TrainConfig`; nested sections map to the nested dataclasses. Unknown keys are rejected
with a "did you mean". The shipped recipes (``docs/vosr-reference.md``, "6. Training recipe (appendix Table 3 and the released
configs)"):

===================== ========= ====================================================
recipe                 model     schedule
===================== ========= ====================================================
tiny                   vosr-tiny 64 px, 300 steps, batch 4, lr 1e-3: trains on a laptop CPU
vosr-0.5b-ms           vosr-0.5b 256 px 400K steps (batch 1024, lr 1e-4), 512 px 400K (256, 5e-5)
vosr-0.5b-os           vosr-0.5b one-step distillation, 512 px 50K steps (batch 32, lr 2e-5), RC
vosr-1.4b-ms           vosr-1.4b as 0.5B, FSDP
vosr-1.4b-os           vosr-1.4b as 0.5B distillation, FSDP
vosr-0.5b-ms-finetune  vosr-0.5b the released training YAML: 512 px 400K steps, batch 8,
                                 lr 5e-5, from the released vosr-0.5b-ms weights
vosr-1.4b-ms-finetune  vosr-1.4b the same for 1.4B (FSDP), from vosr-1.4b-ms
===================== ========= ====================================================

The paper recipes keep the paper's schedule (Table 3); the released training YAMLs fine-tune a
released checkpoint instead (the ``-finetune`` recipes) and run the one-step distillation for
100K steps where the paper reports 50K (the ``-os`` recipes keep 50K; their comments give the
``--set stages=...`` override that follows the YAML).

The paper's ablations are switches: ``semantic_encoder`` (Table 1: none, clip, siglip2, dinov2,
dinov3), ``conditions.guidance`` (Table 4: full, cfg, partial_fixed, partial_random) and
``distill.variant`` (Table 5: rc, shortcut).

Example:
    >>> cfg = load_recipe("tiny", overrides={"distill.variant": "shortcut"})
    >>> cfg.model, cfg.distill.variant
    ('vosr-tiny', 'shortcut')
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from core.config import from_dict
from core.errors import did_you_mean
from vosr.config import ConfigError, ModelConfig, UnknownEntryError, model_config
from vosr.degradations import DegradationConfig
from vosr.semantic import ablation_encoder

Mode = Literal["multistep", "distill"]
Guidance = Literal["full", "cfg", "partial_fixed", "partial_random"]
Semantic = Literal["none", "clip", "siglip2", "dinov2", "dinov3"]
SEMANTIC_CHOICES: tuple[str, ...] = typing.get_args(Semantic)
"""The recipe's ``semantic_encoder`` switch (Table 1); see :func:`semantic_overrides`."""

__all__ = [
    "RECIPES",
    "SEMANTIC_CHOICES",
    "Stage",
    "OptimConfig",
    "ConditionConfig",
    "DistillConfig",
    "TrainConfig",
    "semantic_overrides",
    "list_recipes",
    "load_recipe",
    "config_from_json",
    "yaml_value",
]

RECIPES = ("tiny", "vosr-0.5b-ms", "vosr-0.5b-os", "vosr-1.4b-ms", "vosr-1.4b-os", "vosr-0.5b-ms-finetune",
           "vosr-1.4b-ms-finetune")


@dataclass(frozen=True)
class Stage:
    """One progressive stage: crop size (px), optimiser steps, global batch, learning rate."""

    resolution: int
    steps: int
    batch_size: int  # global: micro_batch x accumulation x world size
    lr: float

    def __post_init__(self) -> None:
        if self.resolution % 16:
            # 8x VAE and patch size 2: the latent token grid needs multiples of 16 pixels
            raise ConfigError(f"stage resolution must be a multiple of 16 px, got {self.resolution}")
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError(f"stage needs steps >= 1, batch_size >= 1 and lr > 0, got {self}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and clipping (appendix Table 3)."""

    betas: tuple[float, float] = (0.9, 0.95)  # a low beta2 keeps Adam stable at large batch
    eps: float = 1e-8
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global L2 norm; <= 0 disables


@dataclass(frozen=True)
class ConditionConfig:
    """Condition handling during multi-step training (guidance design = Table 4 ablation).

    * ``full``: always the full condition (no dropout; guidance impossible at inference).
    * ``cfg``: dropout to a fully unconditional branch (zero structural and semantic inputs).
    * ``partial_fixed``: dropout to ``fixed_strength * c_str`` with zero semantics.
    * ``partial_random``: as above with a per-step strength ``U[weak_strength]`` (VOSR).
    """

    guidance: Guidance = "partial_random"
    dropout_prob: float = 0.1  # per sample; both conditions are replaced together
    weak_strength: tuple[float, float] = (0.05, 0.25)
    fixed_strength: float = 0.1
    noise_aug: bool = True  # c = a c_str + sqrt(1 - a^2) eps', a = sigmoid(N(mean, std))
    noise_aug_mean: float = 5.0
    noise_aug_std: float = 1.0

    def __post_init__(self) -> None:
        lo, hi = self.weak_strength
        if not 0 <= lo <= hi <= 1:
            raise ConfigError(f"weak_strength must be a range inside [0, 1], got {self.weak_strength}")
        if not 0 <= self.dropout_prob <= 1:
            raise ConfigError(f"dropout_prob must be in [0, 1], got {self.dropout_prob}")


@dataclass(frozen=True)
class DistillConfig:
    """One-step distillation (``docs/vosr-reference.md``, "5. Distillation (one step)"; variant = Table 5).

    Conditions as the released distillation losses: the teacher's conditional branch and the
    student see the noise-augmented structural condition; ``dropout_prob`` of the student's
    samples (and their roll-outs) get the partial condition ``(weak_strength * c_str, 0)``.
    """

    variant: Literal["rc", "shortcut"] = "rc"
    guidance: float = 0.5  # omega of the teacher's guided target
    weak_strength: float = 0.1  # the partial condition (teacher's weak branch, dropped student samples)
    delta: float = 0.01  # RC: the teacher step t -> t - delta
    rollout_steps: int = 2  # RC: student Euler sub-steps from t - delta to r
    clip: float = 1.0  # RC: the correction is clipped to +-clip
    consistency_weight: float = 1.0  # total = L_base + weight * L_u
    dropout_prob: float = 0.1  # per sample: the student's conditions become the partial one
    noise_aug: bool = True  # c = a c_str + sqrt(1 - a^2) eps', a = sigmoid(N(mean, std)) (cond strength [5, 1])
    noise_aug_mean: float = 5.0
    noise_aug_std: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.dropout_prob <= 1:
            raise ConfigError(f"distill.dropout_prob must be in [0, 1], got {self.dropout_prob}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one ``screensr vosr train|distill`` run needs (saved as ``RUN/train_config.json``)."""

    name: str = "custom"
    model: str = "vosr-0.5b"  # a vosr.config size
    mode: Mode = "multistep"
    semantic_encoder: Semantic = "dinov2"  # Table 1 ablation; dinov2 = the size's own encoder
    stages: tuple[Stage, ...] = (Stage(512, 400_000, 256, 5e-5),)
    micro_batch: int = 8  # images per rank per forward pass; accumulation fills the stage batch
    ema_decay: float = 0.9999  # per optimiser step
    mixed_precision: Literal["auto", "bf16", "no"] = "auto"  # auto: bf16 autocast on CUDA only
    parallel: Literal["ddp", "fsdp"] = "ddp"  # fsdp shards parameters (the 1.4B model)
    grad_checkpointing: bool = False
    seed: int = 0
    # multi-step: start from these weights (a release tag such as vosr-0.5b-ms, a run folder or a
    # .safetensors file) with a fresh optimiser and step 0, as the released YAMLs' pretrained_ckpt
    init_from: str = ""
    num_workers: int = 4  # DataLoader workers per rank
    # torch intra-op threads per process when training on the CPU (0 = torch's default, one per
    # core). Small models lose to threading overhead: the tiny recipe runs 15x faster with 1 thread
    # than with 2 on a busy 2-core machine (tests/perf/bench_vosr_train.py)
    cpu_threads: int = 0
    log_every: int = 10  # steps between metrics.csv rows
    checkpoint_every: int = 5000  # steps between resumable checkpoints (and at the end)
    keep_checkpoints: int = 2  # resumable states kept (the released-layout export is always kept)
    eval_every: int = 0  # steps between evaluation callbacks; 0 = never
    tensorboard: bool = True  # also log to RUN/tensorboard when the tensorboard package exists
    wandb_project: str = ""  # non-empty: also log to Weights & Biases
    optim: OptimConfig = field(default_factory=OptimConfig)
    conditions: ConditionConfig = field(default_factory=ConditionConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError("a recipe needs at least one stage")
        if self.micro_batch < 1:
            raise ConfigError(f"micro_batch must be >= 1, got {self.micro_batch}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("checkpoint_every and log_every must be >= 1")
        if self.cpu_threads < 0:
            raise ConfigError(f"cpu_threads must be >= 0 (0 = torch's default), got {self.cpu_threads}")

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_at(self, step: int) -> tuple[int, Stage, int]:
        """(stage index, stage, first global step of that stage) for optimiser step ``step`` (0-based)."""
        start = 0
        for i, s in enumerate(self.stages):
            if step < start + s.steps:
                return i, s, start
            start += s.steps
        return len(self.stages) - 1, self.stages[-1], start - self.stages[-1].steps

    def samples_before(self, step: int) -> int:
        """Global samples consumed by steps ``0 .. step-1`` (the data position to resume at)."""
        total, start = 0, 0
        for s in self.stages:
            n = min(max(step - start, 0), s.steps)
            total += n * s.batch_size
            start += s.steps
        if step > start:
            total += (step - start) * self.stages[-1].batch_size
        return total

    def accumulation(self, stage: Stage, world: int) -> int:
        """Micro-batches per step and rank so that micro_batch x accum x world = batch_size."""
        per = self.micro_batch * world
        if stage.batch_size % per:
            raise ConfigError(
                f"stage batch_size {stage.batch_size} is not a multiple of micro_batch {self.micro_batch} "
                f"x {world} process(es); change micro_batch (or --micro-batch) or the process count"
            )
        return stage.batch_size // per

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def model_config(self) -> ModelConfig:
        """The backbone this recipe trains: the size, its semantic switch, gradient checkpointing."""
        over = semantic_overrides(self.semantic_encoder, self.model)
        return model_config(self.model, **over, grad_checkpointing=self.grad_checkpointing)


def semantic_overrides(choice: str, model_name: str) -> dict[str, Any]:
    """ModelConfig overrides of the Table 1 switch ``choice`` for model size ``model_name``.

    ``dinov2`` keeps the size's own encoder; ``clip`` / ``siglip2`` / ``dinov3`` take the
    registry entry of ``vosr.semantic.ABLATION_ENCODERS`` (its width, input size and block);
    ``none`` stores the name ``none`` in the model config (the encoder is not run and the
    network sees one zero token), so inference cannot silently feed DINOv2 features to it.
    """
    if choice not in SEMANTIC_CHOICES:
        raise ConfigError(f"semantic_encoder {choice!r} unknown{did_you_mean(choice, SEMANTIC_CHOICES)}")
    if choice == "dinov2":
        return {}
    if choice == "none":
        return {"semantic_encoder": "none"}
    spec = ablation_encoder(choice, model_name)
    return {"semantic_encoder": spec.name, "semantic_dim": spec.embed_dim, "semantic_size": spec.default_size,
            "semantic_block": spec.default_block}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


class _Yaml12Floats(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` (no dot) as the float YAML 1.2 says it is.

    PyYAML implements YAML 1.1, whose float pattern needs a dot, so ``lr: 1e-4`` would arrive as
    the string "1e-4" and be rejected as "expected a number".
    """


_Yaml12Floats.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _load_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Yaml12Floats)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from exc


def yaml_value(text: str) -> Any:
    """A ``--set KEY=VALUE`` value as YAML (with YAML 1.2 floats: ``1e-4`` is a number)."""
    return _load_yaml(text, f"value {text!r}") if text.strip() else ""


def list_recipes() -> list[str]:
    """Names accepted by :func:`load_recipe` (the shipped YAML files)."""
    return list(RECIPES)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
    node[keys[-1]] = value


def load_recipe(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A shipped recipe by name, or a YAML/JSON file, with dotted-key ``overrides`` applied.

    Args:
        name_or_path: ``tiny``, ``vosr-0.5b-ms``, ... or a path to a recipe file.
        overrides: e.g. ``{"micro_batch": 2, "distill.variant": "shortcut"}``; values are
            checked like file values.

    Raises:
        UnknownEntryError: neither a shipped recipe nor an existing file (with a "did you mean").
        ConfigError: an unknown key, a value of the wrong type or range.
    """
    text_name = str(name_or_path)
    if text_name in RECIPES:
        text = resources.files("vosr").joinpath(f"recipes/{text_name}.yaml").read_text()
        where = f"recipe {text_name}"
    else:
        p = Path(text_name)
        if not p.is_file():
            raise UnknownEntryError(
                "recipe", text_name, RECIPES, hint="give a shipped recipe name or the path of a recipe YAML file"
            )
        text, where = p.read_text(), str(p)
    data = _load_yaml(text, where) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a recipe must be a mapping of TrainConfig fields")
    for key, value in (overrides or {}).items():
        _set_path(data, key, value)
    return from_dict(TrainConfig, data, where=where)


def config_from_json(text: str, where: str = "train_config.json") -> TrainConfig:
    """Rebuild a :class:`TrainConfig` saved by :meth:`TrainConfig.to_json`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from exc
    return from_dict(TrainConfig, data, where=where)
