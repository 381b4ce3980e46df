"""What a training run writes as it goes: ``metrics.csv``, ``eval.csv``, TensorBoard, wandb.

:class:`RunLogger` is rank 0's writer (other ranks get one that does nothing). On a resumed run
the rows after the resumed step are dropped first, so the files always describe one
uninterrupted run. CSV logging always runs; TensorBoard when enabled and installed; Weights &
Biases when a project is named (its absence is then an error).
"""

from __future__ import annotations

import csv
import importlib.util
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.atomic import atomic_write_text
from core.errors import UserError
from vosr.recipes import TrainConfig

__all__ = ["METRIC_COLUMNS", "RunLogger", "last_logged_loss"]

METRIC_COLUMNS = (
    "step",
    "loss",
    "loss_base",
    "loss_consistency",
    "grad_norm",
    "lr",
    "resolution",
    "images_per_s",
    "elapsed_s",
)
# the per-step scalars also sent to TensorBoard
_TB_SCALARS = ("loss", "loss_base", "loss_consistency", "grad_norm", "lr", "images_per_s")


class RunLogger:
    """metrics.csv / eval.csv (rows after a resumed step are dropped first), TensorBoard, wandb.

    Args:
        out: the run folder.
        cfg: the run's config (``tensorboard``, ``wandb_project``, its name for wandb).
        main: whether this process is rank 0 (the only one that writes).
        resumed_from: the step the run resumed at, or None for a fresh run.
    """

    def __init__(self, out: Path, cfg: TrainConfig, main: bool, resumed_from: int | None) -> None:
        self.main = main
        self.metrics = out / "metrics.csv"
        self.eval = out / "eval.csv"
        self.tb: Any = None
        self.wandb: Any = None
        if not main:
            return
        keep_until = resumed_from or 0
        for path, header in ((self.metrics, METRIC_COLUMNS), (self.eval, ("step", "metric", "value"))):
            rows = []
            if path.is_file():
                with path.open(newline="") as f:
                    rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= keep_until]
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(header), extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
            atomic_write_text(path, buf.getvalue())
        # tensorboard is optional ("when installed"); CSV logging always runs
        if cfg.tensorboard and importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=keep_until + 1 if resumed_from else None)
        if cfg.wandb_project:
            try:
                import wandb
            except ImportError as exc:
                raise UserError(f"wandb_project={cfg.wandb_project!r} needs wandb: pip install wandb") from exc
            self.wandb = wandb.init(project=cfg.wandb_project, name=f"{cfg.name}-{out.name}", config=cfg.to_dict(),
                                    resume="allow")  # fmt: skip

    def log(self, row: Mapping[str, float]) -> None:
        """Append one step's row (``METRIC_COLUMNS``; missing ones left empty)."""
        if not self.main:
            return
        with self.metrics.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=list(METRIC_COLUMNS), extrasaction="ignore").writerow(
                {k: row.get(k, "") for k in METRIC_COLUMNS}
            )
        step = int(row["step"])
        if self.tb is not None:
            for k in _TB_SCALARS:
                self.tb.add_scalar(f"train/{k}", row[k], step)
        if self.wandb is not None:
            self.wandb.log({f"train/{k}": row[k] for k in METRIC_COLUMNS if k in row}, step=step)

    def log_eval(self, step: int, values: Mapping[str, float]) -> None:
        """Append the evaluation callback's ``{metric: value}`` of ``step``."""
        if not self.main:
            return
        with self.eval.open("a", newline="") as f:
            w = csv.writer(f)
            for k, v in values.items():
                w.writerow([step, k, v])
                if self.tb is not None:
                    self.tb.add_scalar(f"eval/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"eval/{k}": v for k, v in values.items()}, step=step)

    def close(self) -> None:
        """Flush and close TensorBoard and wandb."""
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def last_logged_loss(run: Path) -> float:
    """The loss of the last ``metrics.csv`` row (nan when nothing was logged)."""
    path = run / "metrics.csv"
    if not path.is_file():
        return float("nan")
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("loss")]
    return float(rows[-1]["loss"]) if rows else float("nan")
