"""Periodic evaluation of VOSR training runs with the benchmark's metric specs.

``vosr`` never imports ``benchmark``; the trainer takes a callback and the command line finds
this factory through the entry-point group ``screensr.training_eval``::

    [project.entry-points."screensr.training_eval"]
    benchmark = "benchmark.training_eval:make_eval_callback"

The callback upscales the LR images of a paired dataset with the just-written EMA checkpoint
through the benchmark's VOSR method (the same ``vosr.pipeline`` path ``screensr bench run``
uses) and scores them with :mod:`benchmark.metrics` specs. SR outputs are not cached: every
evaluation step has new weights.

Example:
    >>> cb = make_eval_callback("tests/data/drealsr_osediff", max_images=2)   # doctest: +SKIP
    >>> cb(1000, Path("runs/tiny/snapshots/step_00001000"))                     # doctest: +SKIP
    {'psnr': 24.1, 'niqe': 6.3}
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmark.datasets import DatasetError, load_dataset
from benchmark.images import read_image
from benchmark.methods import VOSRMethod
from benchmark.metrics import MetricModel, check_weights, get_metric
from benchmark.weights import MissingWeightsError

#: Always computed (no learned weights: PSNR, and NIQE with its shipped parameters).
ALWAYS = ("psnr", "niqe")
#: Added when their weights are installed (never computed with random weights).
WHEN_AVAILABLE = ("lpips", "musiq")


def default_metrics() -> list[str]:
    """``psnr, niqe`` plus ``lpips, musiq`` where their weight files exist."""
    return [*ALWAYS, *(m for m in WHEN_AVAILABLE if check_weights(get_metric(m)) is None)]


def make_eval_callback(
    eval_data: str | os.PathLike[str],
    *,
    metrics: Sequence[str] | None = None,
    device: str | None = None,
    max_images: int = 16,
    vosr_options: Mapping[str, Any] | None = None,
) -> Callable[[int, Path], dict[str, float]]:
    """A training callback ``(step, checkpoint_dir) -> {metric: mean value}``.

    Args:
        eval_data: a paired dataset folder or name (any layout ``benchmark.datasets`` reads).
        metrics: metric names; default :func:`default_metrics`. A named metric whose weights
            are missing raises here, before training starts.
        device: ``cpu`` / ``cuda`` for the sampler and the metric models (default: CUDA if present).
        max_images: evaluate the first N pairs (by id) only, to keep evaluation short.
        vosr_options: keyword options of ``vosr.pipeline.VOSRUpscaler`` (steps, guidance, ...).

    Every step's mean covers all ``max_images`` pairs: a metric that returns a non-finite value on
    any of them reports NaN for that step (with a warning naming the image), never a mean over
    fewer images. Images above the pixel limit are refused before decoding (``benchmark.images``).

    Raises:
        DatasetError / DatasetNotFoundError: an unreadable dataset, or one without HR images.
        UnknownNameError: an unknown metric.
        MissingWeightsError: a named metric whose weight files are absent (a ``FileNotFoundError``).
    """
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dataset = load_dataset(eval_data)
    pairs = [(p, p.hr) for p in dataset.pairs if p.hr is not None][: max(int(max_images), 1)]
    if not pairs:
        raise DatasetError(f"evaluation data {eval_data}: no pairs with an HR image; give a paired dataset")
    names = list(metrics) if metrics else default_metrics()
    specs = [get_metric(n) for n in names]
    for spec in specs:
        missing = check_weights(spec)
        if missing is not None:
            raise MissingWeightsError(f"evaluation metric {spec.name!r} cannot run: {missing}")
    models = [MetricModel(spec, device) for spec in specs]

    def callback(step: int, checkpoint_dir: Path) -> dict[str, float]:
        method = VOSRMethod(f"step-{step}", "training", "training evaluation", checkpoint=str(checkpoint_dir),
                            device=device, options=dict(vosr_options or {}))  # fmt: skip
        sums = dict.fromkeys(names, 0.0)
        bad: dict[str, str] = {}
        try:
            for pair, hr_path in pairs:
                lr, hr = read_image(pair.lr), read_image(hr_path)
                sr = method.upscale(lr.array, dataset.scale)
                sr_t = torch.from_numpy(sr.transpose(2, 0, 1).copy()).float().div(255.0)[None]
                for spec, model in zip(specs, models, strict=True):
                    value = float(model(sr_t, hr.tensor() if spec.kind == "FR" else None)[0])
                    if math.isfinite(value):
                        sums[spec.name] += value
                    else:
                        bad.setdefault(spec.name, f"{value} on {pair.id} ({pair.lr})")
        finally:
            method.close()
        # a mean over fewer images than the others would not be comparable across steps: a metric
        # that failed on any image reports NaN for the step, and says where
        for name, where in bad.items():
            print(f"warning: step {step}: metric {name} gave {where}; its value for this step is NaN",
                  file=sys.stderr)  # fmt: skip
        return {n: float("nan") if n in bad else sums[n] / len(pairs) for n in names}

    return callback
