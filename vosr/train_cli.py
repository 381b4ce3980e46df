"""``screensr vosr train`` and ``screensr vosr distill``.

Only the standard library and ``core.errors`` are imported at module level (``--help`` stays
instant); the handlers import the trainer. Periodic evaluation comes from another package through the entry-point
group ``screensr.training_eval`` (the benchmark package registers ``benchmark``), so ``vosr``
never imports ``benchmark``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.errors import ConfigError, UserError

EVAL_GROUP = "screensr.training_eval"

_TRAIN_EPILOG = """examples:
  screensr vosr train --recipe tiny --data photos/ --out runs/tiny --max-steps 300
  screensr vosr train --recipe vosr-0.5b-ms --data data.list --out runs/ms --eval-every 10000 --eval-data drealsr/
  screensr vosr train --recipe vosr-0.5b-ms-finetune --data data.list --out runs/ft   # the released YAML
  torchrun --no-python --nproc_per_node 8 screensr vosr train --recipe vosr-0.5b-ms --data data.list --out runs/ms

A data list has one 'path, weight' line per source (a folder of HQ images, a WebDataset .tar
shard or a shard pattern such as shards/train-{000..099}.tar). Rerunning the same command
resumes from the latest checkpoint in --out (a finished run says so and trains nothing).

Defaults follow the released training code: dropped samples (10%) get the partial condition
(w * clean c_str, no semantics), w ~ U[0.05, 0.25] per step, the others the noise-augmented
c_str (a = sigmoid(N(5, 1))); Real-ESRGAN degradation with differentiable JPEG (continuous
quality, float output), blur and sinc kernels drawn once per batch, first-order resize by scale
factor, one 8-bit rounding after the resize back; DINOv2 under bf16 autocast on GPU. Options that
differ: --set degradation.jpeg=opencv (libjpeg, integer quality), --set degradation.kernels=sample
(one kernel per image), --set conditions.guidance=full|cfg|partial_fixed, --set
semantic_encoder=none|clip|siglip2|dinov3.

The tiny recipe needs no weight files: its random-init autoencoder and encoder are created in
RUN/components/ (recorded in RUN/components.json, so `screensr vosr infer -c RUN` finds them);
a model on a random autoencoder produces noise-like images by design.
"""

_DISTILL_EPILOG = """examples:
  screensr vosr distill --recipe tiny --teacher runs/tiny --data photos/ --out runs/tiny-os --max-steps 100
  screensr vosr distill --recipe vosr-0.5b-os --teacher VOSR_0.5B_ms --data data.list --out runs/os --variant shortcut

The student starts from the teacher's EMA weights plus a new second-time embedder; the
variant (rc or shortcut) changes only the consistency loss. As released: the teacher's
conditional branch and the student see the noise-augmented c_str; 10% of the student's samples
(and their roll-outs) get (0.1 * c_str, no semantics) (--set distill.dropout_prob=P,
distill.noise_aug=false). The student uses the teacher's autoencoder and encoder (the teacher
run's components.json). The recipes keep the paper's 50K steps; the released YAML runs 100K.
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", required=True,
                   help="tiny, vosr-0.5b-ms, vosr-0.5b-os, vosr-1.4b-ms, vosr-1.4b-os, vosr-0.5b-ms-finetune, "
                        "vosr-1.4b-ms-finetune, or a YAML file")
    p.add_argument("--data", required=True, action="append", metavar="DIR_OR_LIST",
                   help="folder of HQ images, .tar shard(s) or a 'path, weight' list (repeatable)")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder (checkpoints, metrics.csv)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this global step (default: the recipe's total)")
    p.add_argument("--micro-batch", type=int, default=None, help="images per process per forward (accumulation fills the batch)")
    p.add_argument("--seed", type=int, default=None, help="run seed (default: the recipe's)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers per process")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: CUDA when available")
    p.add_argument("--cpu-threads", type=int, default=None, metavar="N",
                   help="torch threads per process on the CPU (default: the recipe's; tiny: 1; 0 = one per core)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, dotted for sections (e.g. conditions.guidance=cfg); repeatable")
    p.add_argument("--eval-every", type=int, default=None, help="evaluate the EMA weights every N steps (needs --eval-data)")
    p.add_argument("--eval-data", default=None, metavar="DIR", help="paired dataset for evaluation (see screensr bench)")
    p.add_argument("--eval-metrics", default=None, help="comma list (default: psnr,niqe plus lpips,musiq when their weights exist)")
    p.add_argument("--weights-dir", default=None, metavar="DIR", help="folder searched first for autoencoder / encoder weights")
    p.add_argument("--no-resume", action="store_true", help="fail instead of resuming when --out holds a run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``distill`` to the ``screensr vosr`` sub-parsers."""
    p = subparsers.add_parser(
        "train", help="train a multi-step VOSR model (flow matching)",
        description="Train a multi-step VOSR model with a recipe; DDP/FSDP under torchrun.",
        epilog=_TRAIN_EPILOG, formatter_class=_Formatter,
    )
    _common(p)
    p.set_defaults(func=run_train)
    d = subparsers.add_parser(
        "distill", help="distil a multi-step VOSR model into a one-step student",
        description="One-step distillation (RC or shortcut) of a multi-step teacher.",
        epilog=_DISTILL_EPILOG, formatter_class=_Formatter,
    )
    _common(d)
    d.add_argument("--teacher", required=True, metavar="CKPT", help="multi-step run folder or .safetensors")
    d.add_argument("--variant", choices=("rc", "shortcut"), default=None, help="consistency loss (default: the recipe's)")
    d.set_defaults(func=run_distill)


def _overrides(args: argparse.Namespace, mode: str) -> dict[str, object]:
    from vosr.recipes import yaml_value

    over: dict[str, object] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set micro_batch=2")
        over[key.strip()] = yaml_value(value)
    for key, value in (("micro_batch", args.micro_batch), ("seed", args.seed),
                       ("num_workers", args.workers), ("eval_every", args.eval_every),
                       ("cpu_threads", args.cpu_threads)):
        if value is not None:
            over[key] = value
    if mode == "distill" and getattr(args, "variant", None):
        over["distill.variant"] = args.variant
    return over


class EvalProviderMissing(UserError, RuntimeError):
    """No package registered a training-evaluation provider."""


def find_eval_factory() -> Any:
    """The ``make_eval_callback`` registered under the ``screensr.training_eval`` entry points."""
    from importlib.metadata import entry_points

    eps = list(entry_points(group=EVAL_GROUP))
    if not eps:
        raise EvalProviderMissing(
            f"--eval-every needs an evaluation provider registered in the entry-point group {EVAL_GROUP!r} "
            "(the benchmark package provides it: reinstall screensr with `pip install -e .`), "
            "or drop --eval-every"
        )
    return eps[0].load()


def _run(args: argparse.Namespace, mode: str) -> int:
    from vosr.recipes import load_recipe
    from vosr.train import TrainError

    base = load_recipe(args.recipe)
    if base.mode != mode and base.name != "tiny":  # tiny is the CPU recipe of both verbs
        other = "distill" if base.mode == "distill" else "train"
        raise TrainError(f"recipe {args.recipe!r} is a {base.mode} recipe; use `screensr vosr {other}`")
    over = _overrides(args, mode)
    over["mode"] = mode
    if args.eval_data is None and args.eval_every is None and base.eval_every:
        # the recipe's evaluation period needs a dataset; without one, say so and train on
        print(f"note: recipe {base.name!r} evaluates every {base.eval_every} steps but no --eval-data "
              "was given; periodic evaluation is off for this run", file=sys.stderr)
        over["eval_every"] = 0
    cfg = load_recipe(args.recipe, over)
    callback = None
    if cfg.eval_every:
        if not args.eval_data:
            raise UserError("--eval-every needs --eval-data DIR (a paired dataset with HR and LR images)")
        factory = find_eval_factory()
        metrics = [m.strip() for m in args.eval_metrics.split(",")] if args.eval_metrics else None
        callback = factory(args.eval_data, metrics=metrics, device=args.device)
    return _fit(args, mode, cfg, callback)


def _fit(args: argparse.Namespace, mode: str, cfg: Any, callback: Any) -> int:
    from vosr.train import Trainer

    trainer = Trainer(
        cfg, args.data, args.out,
        teacher=getattr(args, "teacher", None), max_steps=args.max_steps, eval_callback=callback,
        device=args.device, resume=not args.no_resume, progress=not args.no_progress,
        weights_dir=args.weights_dir,
    )
    try:
        result = trainer.fit()
    finally:
        import torch.distributed as dist

        if dist.is_initialized():  # torchrun: leave the process group cleanly
            dist.destroy_process_group()
    if trainer.info.main:
        import math

        if result.already_complete:
            loss = f", last logged loss {result.loss:.5f}" if math.isfinite(result.loss) else ""
            print(f"{mode}: {result.run_dir} is already complete at step {result.step}{loss}; nothing was trained. "
                  f"Checkpoints in {result.run_dir} (screensr vosr infer -c {result.run_dir} ...)")
        else:
            print(f"{mode}: step {result.step}, loss {result.loss:.5f}; checkpoints in {result.run_dir} "
                  f"(screensr vosr infer -c {result.run_dir} ...)")
        if trainer.components is not None and trainer.components.random_init:
            from vosr.components import RANDOM_INIT_NOTE

            print(f"note: {RANDOM_INIT_NOTE}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``screensr vosr train``."""
    return _run(args, "multistep")


def run_distill(args: argparse.Namespace) -> int:
    """Handler of ``screensr vosr distill``."""
    return _run(args, "distill")
