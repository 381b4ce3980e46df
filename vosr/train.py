"""One trainer for VOSR multi-step training and one-step distillation.

``Trainer(cfg, data, out).fit()`` runs a :class:`vosr.recipes.TrainConfig`: progressive stages,
AdamW, gradient accumulation, clipping, EMA, bf16 autocast, DDP or FSDP under ``torchrun``
(``core.distributed``: gloo on CPU, NCCL on GPU), periodic resumable checkpoints, evaluation
callbacks and logging (``vosr.train_log``). The mode only changes the loss, a plain function:
``vosr.flow.flow_matching_loss`` (multi-step) or ``vosr.distill.distillation_loss``. The trainer
keeps the build (models, frozen encoders, optimiser), the state (save, resume, prune) and the loop.

Run folder layout (``RUN``)::

    RUN/train_config.json                 the TrainConfig (checked again on resume)
    RUN/components.json                   where the autoencoder and semantic encoder live (read by
                                          inference, so ``infer -c RUN`` needs no --weights-dir)
    RUN/components/                       random-init test components the command created (vosr-tiny)
    RUN/args.json, RUN/checkpoints/       released layout: ema_model.safetensors, model.safetensors
    RUN/state/step_XXXXXXXX.pt            resumable state (model, EMA, optimiser, scheduler, data, rng)
    RUN/snapshots/step_XXXXXXXX/          released layout of each checkpoint step (infer -c works)
    RUN/metrics.csv                       step, loss, ... every ``log_every`` steps
    RUN/eval.csv                          step, metric, value from the evaluation callback
    RUN/tensorboard/                      when tensorboard is installed and enabled

Reproducibility: every per-sample random draw (crop, degradation, t, noise, condition
augmentation, dropout, VAE posterior noise) comes from a generator keyed by the run seed and the
global sample index, and per-step draws (weak strength, batch-level degradation choices) from
the step index. A step therefore sees the same numbers whatever the process count, the
micro-batch split, or whether the run was resumed; resume is bit-exact on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from core.atomic import atomic_write_bytes, atomic_write_text
from core.distributed import DistInfo, all_mean, barrier, init_distributed
from core.errors import MissingFileError, UserError
from vosr.autoencoders import load_autoencoder
from vosr.checkpoints import load_checkpoint, save_run_folder
from vosr.components import RunComponents, resolve_components, run_weights_dir, write_record
from vosr.config import ConfigError, ModelConfig
from vosr.data import StepBatches, TrainImages, collate, resolve_sources
from vosr.degradations import degrade, derive_seed, generator
from vosr.distill import distillation_loss
from vosr.flow import flow_matching_loss
from vosr.model import VOSRDiT
from vosr.recipes import SEMANTIC_CHOICES, TrainConfig, config_from_json
from vosr.semantic import load_semantic_encoder
from vosr.statedict import check_state_dict, load_state_dict_strict
from vosr.train_log import RunLogger, last_logged_loss
from vosr.weights import resolve_checkpoint

__all__ = ["Trainer", "TrainResult", "TrainError", "ConditionEncoders", "EvalCallback", "load_run_config"]

EvalCallback = Callable[[int, Path], Mapping[str, float]]
"""``callback(step, checkpoint_dir) -> {metric: value}``; ``checkpoint_dir`` is a released-layout
run folder (``args.json`` + ``checkpoints/ema_model.safetensors``) holding the EMA weights."""

# Fields that may differ when a run is resumed (they do not change the optimisation).
RUNTIME_FIELDS = ("num_workers", "log_every", "checkpoint_every", "keep_checkpoints", "eval_every",
                  "tensorboard", "wandb_project", "micro_batch", "cpu_threads")  # fmt: skip


class TrainError(UserError, RuntimeError):
    """A run that cannot start or resume as asked (the message says why and what to do)."""


# --------------------------------------------------------------------------------------------
# Conditions: autoencoder latents and semantic tokens
# --------------------------------------------------------------------------------------------


class ConditionEncoders:
    """The frozen encoders of a model config: VAE latents and semantic tokens.

    Uses ``vosr.autoencoders.load_autoencoder`` and ``vosr.conditions.load_semantic_encoder``
    (the inference side's loaders and the one semantic-encoder registry, so training and
    inference see identical conditions for every encoder, ablations included). Posterior noise
    is drawn per sample from keyed generators, so a sample's latent does not depend on its batch.

    Args:
        model_cfg: names the autoencoder and the semantic encoder (block, input size).
        semantic: the recipe's ``semantic_encoder`` switch (``none`` skips the encoder; the
            encoder itself is the model config's).
        device: where the encoders run.
        seed: run seed (posterior noise).
        weights_dir: extra folder searched first for weight files (the CLI's ``--weights-dir``,
            or the run's recorded components folder).
    """

    def __init__(
        self,
        model_cfg: ModelConfig,
        semantic: str,
        device: torch.device,
        seed: int,
        weights_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.device, self.seed = device, seed
        # decoder="vae": training never decodes, so the light decoder file is not required
        self.autoencoder = load_autoencoder(model_cfg.autoencoder, weights_dir=weights_dir, decoder="vae", device=device)
        self.autoencoder.requires_grad_(False)
        self.semantic_dim = model_cfg.semantic_dim
        self.encoder: torch.nn.Module | None = None
        if semantic != "none" and model_cfg.semantic_encoder != "none":
            self.encoder = load_semantic_encoder(
                model_cfg.semantic_encoder, model_cfg.semantic_block, model_cfg.semantic_size,
                weights_dir=weights_dir, device=device,
            )
            self.encoder.requires_grad_(False).eval()

    @torch.no_grad()
    def latents(self, images: torch.Tensor, ids: Sequence[int], tag: str) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> backbone latents (B, C, H/8, W/8), posterior sampled."""
        moments = self.autoencoder.moments(images * 2 - 1)
        mean, logvar = moments.float().chunk(2, dim=1)
        # the autoencoder's own sampling (DiagonalGaussianDistribution), with one keyed
        # generator per sample instead of one per batch
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        noise = torch.cat([
            torch.randn(1, *mean.shape[1:], generator=generator(self.seed, "vae", tag, int(i))) for i in ids
        ]).to(mean.device)
        return self.autoencoder.to_backbone(mean + std * noise)

    @torch.no_grad()
    def semantic(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, N, E) raw tokens; one zero token when disabled."""
        if self.encoder is None:
            return images.new_zeros(images.shape[0], 1, self.semantic_dim)
        return self.encoder(images)


# --------------------------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------------------------


def _atomic_torch_save(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _comparable(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg_dict.items() if k not in RUNTIME_FIELDS}


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: {a!r} -> {b!r}"]


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did: final step, last logged loss, the run folder."""

    step: int
    loss: float  # the last step's loss; for an already complete run the last logged one (nan if none)
    run_dir: Path
    resumed_from: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    already_complete: bool = False  # the run had reached max_steps before this call: nothing trained


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


class Trainer:
    """Runs one training or distillation job (see the module docstring).

    Args:
        cfg: the recipe.
        data: ``--data`` values (folders, shards, list files); see ``vosr.data``.
        out: the run folder.
        teacher: for ``mode = distill``, a multi-step checkpoint (run folder or .safetensors).
        max_steps: stop after this global step (a later call with a larger value continues).
        eval_callback: called every ``cfg.eval_every`` steps on rank 0 (see ``EvalCallback``).
        device: ``cpu`` / ``cuda``; default: CUDA when available.
        resume: continue from the latest state in ``out`` (else an existing state is an error).
        progress: show a tqdm bar on rank 0.
        encoders: factory ``(model_cfg, semantic_choice, device, seed)`` of the frozen condition
            encoders; default :class:`ConditionEncoders` (the model config's VAE and encoder).
        weights_dir: extra folder searched first for the encoders' weight files (for
            distillation, default: the folder the teacher's run recorded).
        log: where notes for the user go (created components, an already complete run);
            default: stderr of rank 0.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data: Sequence[str | os.PathLike[str]],
        out: str | os.PathLike[str],
        *,
        teacher: str | os.PathLike[str] | None = None,
        max_steps: int | None = None,
        eval_callback: EvalCallback | None = None,
        device: str | None = None,
        resume: bool = True,
        progress: bool = True,
        encoders: Callable[[ModelConfig, str, torch.device, int], Any] | None = None,
        weights_dir: str | os.PathLike[str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if cfg.mode == "distill" and teacher is None:
            raise TrainError("distillation needs a teacher: pass --teacher RUN_OR_SAFETENSORS (a multi-step checkpoint)")
        if cfg.mode == "multistep" and teacher is not None:
            raise TrainError(f"recipe {cfg.name!r} is multi-step; --teacher is only for distillation recipes")
        if cfg.mode == "distill" and cfg.init_from:
            raise TrainError(f"init_from={cfg.init_from!r} is for multi-step recipes; a student starts from --teacher")
        if cfg.eval_every and eval_callback is None:
            raise TrainError("eval_every is set but no evaluation callback was given")
        if cfg.semantic_encoder not in SEMANTIC_CHOICES:
            raise ConfigError(f"semantic_encoder {cfg.semantic_encoder!r} unknown")
        self.cfg = cfg
        self.sources = resolve_sources([str(d) for d in data])
        self.out = Path(out)
        self.teacher_path = Path(teacher) if teacher is not None else None
        self.max_steps = min(cfg.total_steps, max_steps) if max_steps is not None else cfg.total_steps
        self.eval_callback = eval_callback
        self.resume = resume
        self.progress = progress
        self._encoders_factory = encoders
        self.weights_dir = weights_dir
        if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
            raise TrainError(f"--device {device} was asked but no CUDA device is visible; use --device cpu")
        self.info: DistInfo = init_distributed(device)
        self._log_fn = log
        self.step = 0
        self.resumed_from: int | None = None
        self.components: RunComponents | None = None

    def log(self, message: str) -> None:
        """A note for the user (rank 0 only)."""
        if not self.info.main:
            return
        if self._log_fn is not None:
            self._log_fn(message)
        else:
            print(message, file=sys.stderr)

    # ---------------------------------------------------------------- setup

    def _precision(self) -> bool:
        mp = self.cfg.mixed_precision
        cuda = self.info.device.type == "cuda"
        if mp == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            raise TrainError("mixed_precision: bf16 but this GPU has no bf16 support; use mixed_precision: 'no'")
        return mp == "bf16" or (mp == "auto" and cuda and torch.cuda.is_bf16_supported())

    def _build(self) -> None:
        cfg, dev = self.cfg, self.info.device
        # Same initial weights on every rank (DDP also broadcasts, FSDP does not).
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        self.teacher = None
        if cfg.mode == "distill":
            if self.teacher_path is None:
                raise TrainError("distillation needs a teacher: pass --teacher RUN_OR_SAFETENSORS")
            teacher, tinfo = load_checkpoint(self.teacher_path, device=dev)
            if teacher.one_step:
                raise TrainError(f"--teacher {self.teacher_path} is a one-step model; distil from a multi-step checkpoint")
            if cfg.model != tinfo.config.name:
                raise TrainError(
                    f"--teacher {self.teacher_path} is a {tinfo.config.name} model but recipe {cfg.name!r} "
                    f"trains {cfg.model}; use the matching recipe"
                )
            self.teacher = teacher.requires_grad_(False).eval()
            mcfg = tinfo.config.replace(one_step=True, grad_checkpointing=cfg.grad_checkpointing)
            model = VOSRDiT(mcfg).to(dev)
            # student = teacher EMA + a fresh r_embedder (the only keys the teacher lacks)
            rep = check_state_dict(model, teacher.state_dict())
            if rep.unexpected or rep.mis_shaped or any(not k.startswith("r_embedder.") for k in rep.missing):
                raise TrainError(f"teacher weights do not fit the one-step student:\n{rep.format()}")
            fresh = {k: v for k, v in model.state_dict().items() if k in rep.missing}
            load_state_dict_strict(model, {**teacher.state_dict(), **fresh}, source=str(self.teacher_path))
        else:
            mcfg = cfg.model_config()
            model = VOSRDiT(mcfg).to(dev)
        self.model_cfg = mcfg
        self.fsdp = self.info.world > 1 and cfg.parallel == "fsdp"
        self.components = self._components(mcfg)
        if self._encoders_factory is not None:
            self.encoders = self._encoders_factory(mcfg, cfg.semantic_encoder, dev, cfg.seed)
        else:
            self.encoders = ConditionEncoders(mcfg, cfg.semantic_encoder, dev, cfg.seed,
                                              weights_dir=self.components.weights_dir)
        self.ema = copy.deepcopy(model).requires_grad_(False).eval()
        self.raw_model = model
        if self.fsdp:
            from torch.distributed.fsdp import fully_shard

            # the EMA is sharded the same way, so each rank averages only its own shards
            for module in (model, self.ema):
                for block in module.blocks:
                    fully_shard(block)
                fully_shard(module)
            self.model: torch.nn.Module = model
        elif self.info.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[dev.index] if dev.type == "cuda" else None
            )
        else:
            self.model = model
        st0 = cfg.stages[0]
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=st0.lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
            weight_decay=cfg.optim.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: cfg.stage_at(step)[1].lr / st0.lr  # constant within a stage
        )
        self.bf16 = self._precision()

    def _components(self, mcfg: ModelConfig) -> RunComponents:
        """Resolve (rank 0 creates, when allowed) the autoencoder and encoder; see vosr.components."""
        weights_dir = self.weights_dir
        if self.teacher_path is not None:  # the student works in its teacher's latent space
            weights_dir = run_weights_dir(self.teacher_path, weights_dir)
        semantic = self.cfg.semantic_encoder != "none" and mcfg.semantic_encoder != "none"

        def resolve(allow_create: bool) -> RunComponents:
            return resolve_components(mcfg, semantic=semantic, run_dir=self.out, weights_dir=weights_dir,
                                      seed=self.cfg.seed, allow_create=allow_create, log=self.log)  # fmt: skip

        # RNG: creating random components must not move the global generator (init and resume use it)
        rng = torch.get_rng_state()
        try:
            if self.info.main:
                comps = resolve(allow_create=self.cfg.mode != "distill")
            barrier()
            if not self.info.main:  # rank 0 has created whatever was missing
                comps = resolve(allow_create=False)
        finally:
            torch.set_rng_state(rng)
        return comps

    # ---------------------------------------------------------------- state

    def _state_dir(self) -> Path:
        return self.out / "state"

    def _full_state(self, key: str) -> dict[str, Any]:
        module = getattr(self, key)
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {k: v.detach().cpu().clone() for k, v in _unwrap(module).state_dict().items()}

    def _optim_state(self) -> dict[str, Any]:
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            return get_optimizer_state_dict(
                self.model, self.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
            )
        return self.optimizer.state_dict()

    def save(self) -> Path:
        """Write the resumable state and the released-layout exports for the current step."""
        model_sd, ema_sd, optim_sd = self._full_state("model"), self._full_state("ema"), self._optim_state()
        path = self._state_dir() / f"step_{self.step:08d}.pt"
        if self.info.main:
            state = {
                "step": self.step,
                "samples_seen": self.cfg.samples_before(self.step),
                "model": model_sd,
                "ema": ema_sd,
                "optimizer": optim_sd,
                "scheduler": self.scheduler.state_dict(),
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
                "config": self.cfg.to_json(),
                "model_config": self.model_cfg.to_json(),
                "teacher": str(self.teacher_path) if self.teacher_path else None,
            }
            _atomic_torch_save(state, path)
            args = {"train_config": self.cfg.to_dict(), "step": self.step, "mode": self.cfg.mode}
            snap = self.out / "snapshots" / f"step_{self.step:08d}"
            for root in (self.out, snap):
                save_run_folder(ema_sd, root, config=self.model_cfg, args=args)
                write_record(root, self._built_components())
            save_run_folder(model_sd, self.out, config=self.model_cfg, args=args, name="model.safetensors")
            self._prune()
        barrier()
        return path

    def _built_components(self) -> RunComponents:
        if self.components is None:
            raise RuntimeError("the trainer's components are resolved in _build(), which has not run")
        return self.components

    def _prune(self) -> None:
        keep = max(self.cfg.keep_checkpoints, 1)
        states = sorted(self._state_dir().glob("step_*.pt"))
        for old in states[:-keep]:
            old.unlink(missing_ok=True)
            shutil.rmtree(self.out / "snapshots" / old.stem, ignore_errors=True)

    def latest_state(self) -> Path | None:
        states = sorted(self._state_dir().glob("step_*.pt"))
        return states[-1] if states else None

    def _load(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=False)
        # through the typed config, so fields added since the run started compare as their defaults
        saved = json.loads(config_from_json(state["config"], str(path)).to_json())
        diff = _diff(_comparable(saved), _comparable(json.loads(self.cfg.to_json())))
        if diff:
            raise TrainError(
                f"{self.out} holds a run with another configuration ({'; '.join(diff[:5])}); "
                "resume with the same recipe, or pass a new --out (or --no-resume to start over there)"
            )
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            opts = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.model, state["model"], options=opts)
            set_model_state_dict(self.ema, state["ema"], options=opts)
            set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"], options=opts)
        else:
            _unwrap(self.model).load_state_dict(state["model"], strict=True)
            self.ema.load_state_dict(state["ema"], strict=True)
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])
        self.resumed_from = self.step

    def _init_from(self, spec: str) -> None:
        """Start from released (or any multi-step) weights: model and EMA, fresh optimiser, step 0."""
        path = resolve_checkpoint(spec, self.weights_dir)
        model, info = load_checkpoint(path)
        keys = ("hidden_size", "depth", "num_heads", "latent_channels", "semantic_dim", "autoencoder",
                "semantic_encoder", "semantic_block", "semantic_size", "one_step")
        theirs, ours = info.config.to_dict(), self.model_cfg.to_dict()
        diff = [f"{k}: {theirs[k]!r} (checkpoint) vs {ours[k]!r} (recipe)" for k in keys if theirs[k] != ours[k]]
        if diff:
            raise TrainError(f"init_from {spec!r} ({info.path}) does not fit recipe {self.cfg.name!r}: {'; '.join(diff)}")
        state = model.state_dict()
        for module in (self.raw_model, self.ema):
            if self.fsdp:
                from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

                set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True))
            else:
                load_state_dict_strict(module, state, source=str(info.path))
        self.log(f"{self.cfg.name}: initialised the model and its EMA from {info.path}")

    # ---------------------------------------------------------------- losses

    def _conditions(self, hq: torch.Tensor, ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x0, c_str, semantic) of a batch of HQ crops: degrade, encode both, DINO on the LQ.

        The latents are computed in float32; the semantic encoder runs under the run's bf16
        autocast when it is on (as the released training code, whose encoder forward sits in
        ``accelerator.autocast()``), its tokens returned as float32.
        """
        lq, _ = degrade(hq, self.cfg.degradation, ids, batch_key=("step", self.step), seed=self.cfg.seed)
        x0 = self.encoders.latents(hq, ids, "hq")
        c_str = self.encoders.latents(lq, ids, "lq")
        with torch.autocast(hq.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            sem = self.encoders.semantic(lq)
        return x0, c_str, sem.float()

    def multistep_loss(self, hq: torch.Tensor, ids: Sequence[int]) -> dict[str, torch.Tensor]:
        """Flow-matching MSE of a batch (``vosr.flow.flow_matching_loss``)."""
        cfg = self.cfg
        x0, c_str, sem = self._conditions(hq, ids)
        gens = [generator(cfg.seed, "train", int(i)) for i in ids]
        step_gen = generator(cfg.seed, "weak-strength", self.step)
        loss = flow_matching_loss(self.model, x0, c_str, sem, gens, step_gen, cfg.conditions, bf16=self.bf16)
        return {"loss": loss, "loss_base": loss.detach(), "loss_consistency": torch.zeros((), device=x0.device)}

    def distill_loss(self, hq: torch.Tensor, ids: Sequence[int]) -> dict[str, torch.Tensor]:
        """Guided teacher target, base loss and the RC / shortcut term (``vosr.distill.distillation_loss``)."""
        cfg = self.cfg
        if self.teacher is None:
            raise RuntimeError("distill_loss needs the teacher that _build() loads in distill mode")
        x0, c_str, sem = self._conditions(hq, ids)
        gens = [generator(cfg.seed, "distill", int(i)) for i in ids]
        cond_gens = [generator(cfg.seed, "distill-cond", int(i)) for i in ids]
        loss, l_base, l_u = distillation_loss(
            self.model, self.raw_model, self.teacher, x0, c_str, sem, gens, cond_gens, cfg.distill, bf16=self.bf16
        )
        return {"loss": loss, "loss_base": l_base.detach(), "loss_consistency": l_u.detach()}

    # ---------------------------------------------------------------- loop

    def _loader(self, stage_index: int) -> Iterator[dict[str, Any]]:
        cfg = self.cfg
        stage = cfg.stages[stage_index]
        start = sum(s.steps for s in cfg.stages[:stage_index])
        end = min(start + stage.steps, self.max_steps)
        first = max(self.step, start)
        accum = cfg.accumulation(stage, self.info.world)
        sampler = StepBatches(cfg.samples_before(first), end - first, accum, cfg.micro_batch, self.info.world, self.info.rank)
        dataset = TrainImages(self.sources, stage.resolution, cfg.seed)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            collate_fn=collate,
            pin_memory=self.info.device.type == "cuda",
            persistent_workers=False,
            # a private generator: creating the iterator must not consume the global RNG,
            # or a resumed run would diverge from an uninterrupted one
            generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "loader", stage_index)),
        )
        return iter(loader)

    def train_step(self, batches: Iterator[dict[str, Any]], accum: int) -> dict[str, float]:
        """One optimiser step over ``accum`` micro-batches; returns globally averaged losses."""
        loss_fn = self.distill_loss if self.cfg.mode == "distill" else self.multistep_loss
        self.model.train()
        sums = {"loss": 0.0, "loss_base": 0.0, "loss_consistency": 0.0}
        parts = torch.zeros(3, device=self.info.device)
        for m in range(accum):
            batch = next(batches)
            hq = batch["hq"].to(self.info.device, non_blocking=True)
            last = m == accum - 1
            ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            if self.fsdp:
                # FSDP2's method (reduce-scatter once per step); torch types fully_shard's result as Module
                cast(Any, self.model).set_requires_gradient_sync(last)
            elif not last and isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
                ctx = self.model.no_sync()
            with ctx:
                out = loss_fn(hq, batch["ids"])
                # equal micro-batches: the mean of micro-means is the mean over the step's batch
                (out["loss"] / accum).backward()
            parts += torch.stack([out["loss"].detach(), out["loss_base"], out["loss_consistency"]]) / accum
        clip = self.cfg.optim.grad_clip
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self._update_ema()
        parts = all_mean(parts)
        for k, v in zip(sums, parts.tolist(), strict=True):
            sums[k] = v
        sums["grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        return sums

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.cfg.ema_decay
        for e, p in zip(self.ema.parameters(), _unwrap(self.model).parameters(), strict=True):
            e.lerp_(p.detach(), 1 - decay)

    def fit(self) -> TrainResult:
        """Train to ``max_steps`` (resuming when a state exists); returns a summary.

        On the CPU, torch runs ``cfg.cpu_threads`` intra-op threads during the call (when set;
        the tiny recipe uses 1) and the process-wide setting is restored afterwards.
        """
        threads = torch.get_num_threads()
        if self.info.device.type == "cpu" and self.cfg.cpu_threads:
            torch.set_num_threads(self.cfg.cpu_threads)
        try:
            return self._fit()
        finally:
            torch.set_num_threads(threads)

    def _fit(self) -> TrainResult:
        cfg, info = self.cfg, self.info
        self.out.mkdir(parents=True, exist_ok=True)
        self._build()
        latest = self.latest_state()
        if latest is not None:
            if not self.resume:
                raise TrainError(
                    f"{self.out} already holds a run (latest state {latest.name}); resume it (drop --no-resume) "
                    "or choose a new --out"
                )
            self._load(latest)
        elif cfg.init_from:
            self._init_from(cfg.init_from)
        if self.step >= self.max_steps:
            self.log(f"{self.out} is already complete at step {self.step} (asked for {self.max_steps} steps): "
                     "nothing to train; pass a larger --max-steps to continue it, or a new --out")
            return TrainResult(self.step, last_logged_loss(self.out), self.out, self.resumed_from,
                               already_complete=True)
        if info.main:
            atomic_write_text(self.out / "train_config.json", cfg.to_json())
            write_record(self.out, self._built_components())
        logger = RunLogger(self.out, cfg, info.main, self.resumed_from)
        history: list[dict[str, float]] = []
        last_loss = float("nan")
        bar = None
        if info.main and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.max_steps, initial=self.step, desc=f"{cfg.mode} {cfg.name}", unit="step")
        t_start = time.perf_counter()
        try:
            while self.step < self.max_steps:
                si, stage, start = cfg.stage_at(self.step)
                accum = cfg.accumulation(stage, info.world)
                batches = self._loader(si)
                stage_end = min(start + stage.steps, self.max_steps)
                while self.step < stage_end:
                    t0 = time.perf_counter()
                    row = self.train_step(batches, accum)
                    self.step += 1
                    dt = time.perf_counter() - t0
                    last_loss = row["loss"]
                    if not math.isfinite(last_loss):
                        raise TrainError(
                            f"loss became {last_loss} at step {self.step}; lower the learning rate or check the data"
                        )
                    row.update(step=self.step, lr=self.optimizer.param_groups[0]["lr"],
                               resolution=stage.resolution, images_per_s=stage.batch_size / dt,
                               elapsed_s=time.perf_counter() - t_start)
                    history.append(row)
                    if self.step % cfg.log_every == 0 or self.step == self.max_steps:
                        logger.log(row)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{last_loss:.4f}")
                    done = self.step == self.max_steps
                    if self.step % cfg.checkpoint_every == 0 or done or (cfg.eval_every and self.step % cfg.eval_every == 0):
                        self.save()
                    if cfg.eval_every and self.eval_callback is not None and self.step % cfg.eval_every == 0:
                        if info.main:
                            snap = self.out / "snapshots" / f"step_{self.step:08d}"
                            logger.log_eval(self.step, dict(self.eval_callback(self.step, snap)))
                        barrier()
        finally:
            if bar is not None:
                bar.close()
            logger.close()
        return TrainResult(self.step, last_loss, self.out, self.resumed_from, history)


def load_run_config(run: str | os.PathLike[str]) -> TrainConfig:
    """The TrainConfig saved in a run folder."""
    p = Path(run) / "train_config.json"
    if not p.is_file():
        raise MissingFileError(f"{p} not found; is {run} a training run folder?")
    return config_from_json(p.read_text(), str(p))
