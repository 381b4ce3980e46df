"""Which protocol produced a paper's numbers? Score the protocol variants papers differ in, compare.

Given a method's outputs on a dataset and the numbers a paper reports for them (means, or a CSV of
per-image values), :func:`reconcile` scores every protocol variant that papers are known to differ
in and says, per metric, which variant reproduces the reported number, by how much, and the
``screensr bench run --metrics`` item that gives it:

- PSNR: Y of BT.601 limited-range YCbCr (BasicSR/MATLAB, the suite's protocol), Y of full-range
  luma (pyiqa's own default ``yiq``), or RGB; border crop 0, 4 or the scale; Y kept as floats or
  rounded to 8 bits first (``data_range=255``, as MATLAB's ``rgb2ycbcr`` on uint8 images);
- SSIM: the same colour spaces and crops; the 11x11 Gaussian window of BasicSR and the MATLAB
  code, with or without the automatic downsampling of Wang's original ``ssim.m``;
- LPIPS: AlexNet or VGG; inputs mapped to [-1, 1] as LPIPS expects, or [0, 1] fed as they are
  (a common mistake); DISTS as is;
- NIQE: the official LIVE parameters, Y of ``yiq`` (pyiqa) or of limited-range YCbCr (BasicSR),
  border crop; MATLAB's own re-fit of the model (``niqe_matlab``);
- MUSIQ KonIQ / SPAQ / AVA / PaQ-2-PiQ, MANIQA PIPAL / KonIQ / KADID, CLIPIQA and the CLIPIQA+
  checkpoints; any other pyiqa metric with its registered settings;
- outputs that are not the ground truth's size are scored after a bicubic resize to it, and every
  such variant is flagged (the suite itself never resizes);
- the subset: the reported n against the dataset's n, and (with per-image values) the images
  whose residuals explain a gap between the means.

Every value comes from pyiqa through the harness's own :class:`benchmark.metrics.MetricModel`
(no metric is re-implemented here); the installed pyiqa version is part of the result.
Variants whose weight files are absent are listed as not tried, with the files they need.

Search: for each metric every combination of its primary settings is scored (colour x crop x
rounding for PSNR), then the secondary settings one at a time at the best primary combination
(SSIM's downsampling, NIQE's MATLAB model), so the cost stays a few variants per metric.

Verdicts, per variant and per metric (its closest variant):

- ``reproduced``: within the reported precision (half a unit of the last reported decimal, per
  image with a CSV), plus float slack;
- ``within noise``: within the gap pyiqa itself shows against the official implementations on its
  calibration images (:data:`IMPLEMENTATION_GAP`), plus, for means over other images than the
  dataset's, twice the standard error of a subset mean (finite-population corrected);
- ``not reproduced``: anything further.

Example:
    >>> rep = parse_reported("psnr=28.17,ssim=0.7691")
    >>> [(m.metric, m.mean, m.tolerance) for m in rep.metrics]
    [('psnr', 28.17, 0.005), ('ssim', 0.7691, 5e-05)]
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.datasets import PairedDataset, load_dataset
from benchmark.images import read_image
from benchmark.methods import SRMethod, create_method
from benchmark.metrics import METRICS, MetricModel, MetricSpec, get_metric, pyiqa_version
from benchmark.weights import MissingWeightsError, WeightFile, metric_weight_files, require_metric_weights
from core.errors import ConfigError, MissingFileError, UserError, did_you_mean

if TYPE_CHECKING:
    import torch

__all__ = [
    "IMPLEMENTATION_GAP",
    "KNOWN_VERSION_CHANGES",
    "VERDICTS",
    "Choice",
    "Family",
    "Variant",
    "ReportedMetric",
    "Reported",
    "VariantResult",
    "MetricReconciliation",
    "Reconciliation",
    "ReconcileError",
    "metric_name",
    "parse_reported",
    "read_reported_csv",
    "families",
    "reconcile",
    "format_reconciliation",
]

VERDICTS = ("reproduced", "within noise", "not reproduced")

#: Largest |official - pyiqa| over pyiqa's calibration images (TID2013 I03, I04, I06; pyiqa's
#: ``ResultsCalibra/calibration_summary.csv``, copied to ``tests/data/calibration``): how far two
#: faithful implementations of a metric drift apart. Metrics without a calibration row get none.
IMPLEMENTATION_GAP: dict[str, float] = {
    "psnr": 0.0039,  # the official column is given to 2 decimals
    "ssim": 0.0004,
    "lpips": 0.0001,
    "dists": 0.0,
    "niqe": 0.0998,
    "niqe_matlab": 0.0293,
    "musiq": 0.4452,
    "musiq-ava": 0.0620,
    "musiq-spaq": 0.2971,
    "musiq-paq2piq": 0.1407,
}

#: Changes between pyiqa releases that move a metric's numbers (``docs/metrics-protocol.md``,
#: "Settings the diffusion-SR papers actually use"): printed beside that metric's variants.
KNOWN_VERSION_CHANGES: dict[str, str] = {
    "maniqa": "pyiqa 0.1.12 replaced MANIQA's random crops with 20 uniform ones: numbers computed with "
    "earlier releases differ (and varied from run to run)",
}

#: Float slack on top of the reported precision: pyiqa on another machine, torch version or
#: batch size differs in the last bits (relative).
_FLOAT_SLACK = 1e-6

# metric names as papers print them -> registry names ("CLIP-IQA", "MANIQA" -> clipiqa, maniqa)
_ALIASES = {"clipiqa": "clipiqa", "maniqapipal": "maniqa", "topiqnr": "topiq_nr", "topiqfr": "topiq_fr"}


class ReconcileError(UserError, ValueError):
    """Reported numbers that cannot be compared (unknown metric, no shared images, bad CSV)."""


# ---------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Choice:
    """One value of one protocol setting.

    Attributes:
        label: how papers describe it (``"crop 4"``).
        options: pyiqa options it sets (``{"crop_border": 4}``).
        base: the harness metric it uses instead of the family's (``"lpips-vgg"``), if any.
        call: keyword arguments of the pyiqa call itself (LPIPS ``normalize``): no
            ``bench run`` setting gives those, so a variant with any is a protocol error to name.
        weights: the weight-catalogue entry it needs instead of its metric's, if any.
    """

    label: str
    options: Mapping[str, Any] = field(default_factory=dict)
    base: str | None = None
    call: Mapping[str, Any] = field(default_factory=dict)
    weights: str | None = None


@dataclass(frozen=True)
class Family:
    """The variants of one reported metric: a primary grid, then secondary settings one by one.

    Attributes:
        metric: the registry name (``psnr``).
        primary: settings whose every combination is scored, as ``(setting, choices)``; the
            first choice of each is the suite's protocol.
        secondary: settings tried one choice at a time at the best primary combination.
        skip: ``skip(chosen)`` is True for combinations that make no sense (rounding of RGB).
    """

    metric: str
    primary: tuple[tuple[str, tuple[Choice, ...]], ...]
    secondary: tuple[tuple[str, tuple[Choice, ...]], ...] = ()
    skip: Any = None

    def grid(self) -> list[dict[str, Choice]]:
        """Every primary combination, the suite's protocol first."""
        names = [name for name, _ in self.primary]
        out = []
        for combo in itertools.product(*(choices for _, choices in self.primary)):
            chosen = dict(zip(names, combo, strict=True))
            if self.skip is None or not self.skip(chosen):
                out.append(chosen)
        return out

    def refinements(self, best: Mapping[str, Choice]) -> list[dict[str, Choice]]:
        """The best primary combination with each non-default secondary choice."""
        return [{**best, name: c} for name, choices in self.secondary for c in choices[1:]]


@dataclass(frozen=True)
class Variant:
    """One protocol: a metric spec, how to call it, and the ``bench run`` item that gives it.

    Attributes:
        metric: the reported metric it is a candidate for.
        label: the settings in words (``"Y (BT.601 limited range), crop 0, float Y"``).
        spec: the harness spec it is scored with.
        bench: the ``--metrics`` item that reproduces it with ``screensr bench run``, or None
            when no setting of the suite does (a protocol error, such as LPIPS on [0, 1]).
        call: keyword arguments of the pyiqa call.
        weights: the weight-catalogue entry whose files it needs.
        suite: it is the suite's own protocol for the metric.
    """

    metric: str
    label: str
    spec: MetricSpec
    bench: str | None
    call: Mapping[str, Any] = field(default_factory=dict)
    weights: str = ""
    suite: bool = False


def _crops(scale: int) -> tuple[Choice, ...]:
    # crop 0 is pyiqa's default and the suite's: it sets nothing
    return tuple(Choice(f"crop {c}", {"crop_border": c} if c else {}) for c in dict.fromkeys((0, 4, scale)))


_Y_LIMITED = Choice("Y (BT.601 limited range)", {"test_y_channel": True, "color_space": "ycbcr"})
_Y_FULL = Choice("Y (full-range luma, pyiqa's yiq)", {"test_y_channel": True, "color_space": "yiq"})
_RGB = Choice("RGB", {"test_y_channel": False})


def families(scale: int) -> dict[str, Family]:
    """The variant families for a dataset of SR factor ``scale`` (the crop choices depend on it)."""
    crops = _crops(scale)
    colour = ("colour", (_Y_LIMITED, _Y_FULL, _RGB))
    return {
        f.metric: f
        for f in (
            Family("psnr", (colour, ("crop", crops),
                            ("rounding", (Choice("float values"), Choice("Y rounded to 8 bits", {"data_range": 255})))),
                   skip=lambda c: c["colour"] is _RGB and c["rounding"].options),
            Family("ssim", (colour, ("crop", crops)),
                   (("window", (Choice("Gaussian 11x11 (BasicSR/MATLAB)"),
                                Choice("Gaussian 11x11 after ssim.m's downsampling", {"downsample": True}))),)),
            Family("lpips", (("network", (Choice("AlexNet"), Choice("VGG", base="lpips-vgg"))),
                             ("range", (Choice("inputs in [-1, 1]"),
                                        Choice("inputs in [0, 1] (not normalised)", call={"normalize": False}))))),
            Family("niqe", (("colour", (Choice("Y (yiq, pyiqa)"), Choice("Y (BT.601 limited range, BasicSR)",
                                                                       {"color_space": "ycbcr"}))),
                            ("crop", crops)),
                   (("model", (Choice("official LIVE parameters"),
                               Choice("MATLAB's re-fit (niqe_matlab)", {"version": "matlab"}, weights="niqe_matlab"))),)),
            Family("musiq", (("checkpoint", (Choice("KonIQ-10k"), Choice("SPAQ", base="musiq-spaq"),
                                             Choice("AVA", base="musiq-ava"),
                                             Choice("PaQ-2-PiQ", base="musiq-paq2piq"))),)),
            Family("maniqa", (("checkpoint", (Choice("PIPAL"),
                                              Choice("KonIQ-10k", {"train_dataset": "koniq"}, weights="maniqa"),
                                              Choice("KADID-10k", base="maniqa-kadid"))),)),
            Family("clipiqa", (("model", (Choice("CLIP-IQA"), Choice("CLIP-IQA+", base="clipiqa+"),
                                          Choice("CLIP-IQA+ RN50 512", base="clipiqa+_rn50_512"),
                                          Choice("CLIP-IQA+ ViT-L/14 512", base="clipiqa+_vitL14_512"))),)),
        )
    }  # fmt: skip


def _bench_item(base: str, options: Mapping[str, Any]) -> str:
    parts = [base]
    for key, value in options.items():
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        parts.append(f"{key}={text}")
    return "@".join(parts)


def _variant(family: Family, chosen: Mapping[str, Choice]) -> Variant:
    """The variant of ``family`` with the settings ``chosen`` (secondary settings not named: their default)."""
    axes = [*family.primary, *family.secondary]
    picked = [(name, chosen.get(name, choices[0])) for name, choices in axes]
    base = next((c.base for _, c in picked if c.base), family.metric)
    registered = get_metric(base)
    options: dict[str, Any] = {}
    call: dict[str, Any] = {}
    for _, c in picked:
        options.update(c.options)
        call.update(c.call)
    changed = {k: v for k, v in options.items() if k not in registered.options or registered.options[k] != v}
    if options.get("test_y_channel") is False:
        changed.pop("color_space", None)  # RGB ignores the colour space: bench run need not set it
    spec = get_metric(base, **changed) if changed else registered
    weights = next((c.weights for _, c in picked if c.weights), None) or spec.pyiqa_name
    label = ", ".join(c.label for _, c in picked)
    suite = all(c is choices[0] for (_, c), (_, choices) in zip(picked, axes, strict=True))
    return Variant(family.metric, label, spec, None if call else _bench_item(base, changed), call, weights, suite)


def _single(metric: str) -> Family:
    """A metric without known variants: its registered settings only."""
    return Family(metric, (("settings", (Choice("registered settings"),)),))


# ---------------------------------------------------------------------------- reported numbers
@dataclass(frozen=True)
class ReportedMetric:
    """What a paper reports for one metric.

    Attributes:
        metric: the registry name.
        mean: the reported mean (over ``per_image`` when given).
        tolerance: half a unit of the last reported decimal of the mean.
        per_image: image id -> value, when per-image numbers are given.
        per_image_tolerance: image id -> half a unit of that value's last decimal.
        column: the name in the source (``PSNR``).
    """

    metric: str
    mean: float
    tolerance: float
    per_image: Mapping[str, float] | None = None
    per_image_tolerance: Mapping[str, float] | None = None
    column: str = ""


@dataclass(frozen=True)
class Reported:
    """The reported numbers: per metric, and over how many images (None: unknown)."""

    metrics: tuple[ReportedMetric, ...]
    n: int | None = None
    source: str = "--reported"


def _half_unit(text: str) -> float:
    """Half a unit of the last decimal written in ``text`` (``"28.17"`` -> 0.005)."""
    t = text.strip().lower()
    mantissa, _, exponent = t.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def metric_name(name: str, where: str) -> str:
    """A reported column or key (``PSNR``, ``CLIP-IQA``) as a registry or pyiqa metric name."""
    key = re.sub(r"[^a-z0-9+]", "", name.lower())
    registered = {re.sub(r"[^a-z0-9+]", "", n): n for n in METRICS}
    if key in _ALIASES:
        return _ALIASES[key]
    if key in registered:
        return registered[key]
    try:
        return get_metric(name.strip().lower()).name
    except KeyError:
        raise ReconcileError(
            f"{where}: {name!r} is not a metric the harness knows{did_you_mean(name.lower(), METRICS)}; "
            f"use a registered name ({', '.join(METRICS)}) or a pyiqa metric name"
        ) from None


def parse_reported(text: str, *, n: int | None = None) -> Reported:
    """``"psnr=28.17,ssim=0.7691"`` -> :class:`Reported` (means; ``n`` images if known).

    Raises:
        ReconcileError: an item without ``=``, a value that is not a number, an unknown metric.
    """
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise ReconcileError(f"--reported {item!r}: expected metric=value, e.g. --reported psnr=28.17,ssim=0.7691")
        try:
            value = float(raw)
        except ValueError:
            raise ReconcileError(f"--reported {item!r}: {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ReconcileError(f"--reported {item!r}: the value must be finite")
        out.append(ReportedMetric(metric_name(key, "--reported"), value, _half_unit(raw), column=key.strip()))
    if not out:
        raise ReconcileError("--reported is empty; e.g. --reported psnr=28.17,ssim=0.7691,lpips=0.2997")
    return Reported(tuple(out), n=n)


_IMAGE_COLUMNS = ("image", "img", "name", "file", "filename", "file_name", "id")


def read_reported_csv(path: str | Path) -> Reported:
    """Per-image reported values: a CSV with an image column (``image``, ``name``, ``file``...;
    else the first column) and one column per metric; images are matched by file stem.

    Raises:
        MissingFileError: no such file.
        ReconcileError: no metric column, duplicate images, or a cell that is not a number.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"--reported-csv {path}: no such file; give the CSV of per-image values")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise ReconcileError(f"{path}: needs a header row and at least one image row")
    header = [h.strip() for h in rows[0]]
    image_col = next((i for i, h in enumerate(header) if h.lower() in _IMAGE_COLUMNS), 0)
    columns = [(i, h) for i, h in enumerate(header) if i != image_col and h]
    if not columns:
        raise ReconcileError(f"{path}: no metric column besides {header[image_col]!r}")
    values: dict[int, dict[str, tuple[float, float]]] = {i: {} for i, _ in columns}
    for lineno, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        stem = Path(row[image_col].strip()).stem
        for i, h in columns:
            raw = row[i].strip() if i < len(row) else ""
            if raw == "":
                continue  # a paper's table may lack a metric for some images
            try:
                v = float(raw)
            except ValueError:
                raise ReconcileError(f"{path}:{lineno}: {h} = {raw!r} is not a number") from None
            if stem in values[i]:
                raise ReconcileError(f"{path}:{lineno}: image {stem!r} appears twice; keep one row per image")
            values[i][stem] = (v, _half_unit(raw))
    metrics = []
    for i, h in columns:
        if not values[i]:
            continue
        vals = values[i]
        mean = float(np.mean([v for v, _ in vals.values()]))
        metrics.append(ReportedMetric(
            metric_name(h, str(path)), mean, max(t for _, t in vals.values()),
            {k: v for k, (v, _) in vals.items()}, {k: t for k, (_, t) in vals.items()}, h,
        ))  # fmt: skip
    n = max(len(m.per_image or {}) for m in metrics)
    return Reported(tuple(metrics), n=n, source=str(path))


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class VariantResult:
    """One variant scored on the images the reported numbers cover.

    Attributes:
        variant: the variant.
        value: its mean over the compared images.
        diff: ``value - reported mean`` (over the same images when per-image values are given).
        verdict: one of :data:`VERDICTS`.
        per_image: image id -> value.
        residuals: image id -> value - reported (per-image mode only).
        resized: ids of the images whose SR output was resized to the GT's size for this score.
    """

    variant: Variant
    value: float
    diff: float
    verdict: str
    per_image: Mapping[str, float]
    residuals: Mapping[str, float] | None = None
    resized: tuple[str, ...] = ()

    @property
    def distance(self) -> float:
        """How far from the reported numbers: mean |residual| per image, else |diff| of the means."""
        if self.residuals:
            return float(np.mean(np.abs(list(self.residuals.values()))))
        return abs(self.diff)


@dataclass(frozen=True)
class MetricReconciliation:
    """The outcome for one reported metric.

    Attributes:
        reported: the reported numbers.
        tried: every variant scored, closest first.
        not_tried: ``(variant label, missing weight files)`` for variants that could not be scored.
        compared: the image ids compared.
        reported_mean_all: the reported mean over all its images (per-image mode: also those
            outside the dataset).
        noise: the band of ``within noise`` (implementation gap + subset sampling).
    """

    reported: ReportedMetric
    tried: tuple[VariantResult, ...]
    not_tried: tuple[tuple[str, tuple[WeightFile, ...]], ...]
    compared: tuple[str, ...]
    reported_mean_all: float
    noise: float

    @property
    def best(self) -> VariantResult | None:
        return self.tried[0] if self.tried else None

    @property
    def verdict(self) -> str:
        return self.best.verdict if self.best else "not tried"

    @property
    def ties(self) -> tuple[VariantResult, ...]:
        """Other variants with the closest one's verdict (a mean alone may not tell them apart)."""
        best = self.best
        if best is None or best.verdict == "not reproduced":
            return ()
        return tuple(t for t in self.tried[1:] if t.verdict == best.verdict)

    def explaining_images(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` images with the largest |residual| for the closest variant, with their share
        of the gap between the means (``residual / n``)."""
        best = self.best
        if best is None or not best.residuals:
            return []
        n = len(best.residuals)
        items = sorted(best.residuals.items(), key=lambda kv: -abs(kv[1]))[:k]
        return [(img, r / n) for img, r in items]


@dataclass(frozen=True)
class Reconciliation:
    """The whole answer: per metric, plus what was compared and with which pyiqa."""

    dataset: str
    dataset_n: int
    method: str
    method_spec: str
    source: str
    reported_n: int | None
    pyiqa: str
    metrics: tuple[MetricReconciliation, ...]
    dataset_arg: str

    def bench_command(self) -> str | None:
        """The ``screensr bench run`` line that reproduces every reproduced (or within-noise) number."""
        items = [m.best.variant.bench for m in self.metrics
                 if m.best is not None and m.best.verdict != "not reproduced" and m.best.variant.bench]  # fmt: skip
        if not items:
            return None
        return (f"screensr bench run --dataset {self.dataset_arg} --method '{self.method_spec}' "
                f"--metrics {','.join(dict.fromkeys(items))}")  # fmt: skip


# ---------------------------------------------------------------------------- scoring
@dataclass
class _Images:
    """The decoded pairs (uint8, decoded once) the variants are scored on."""

    ids: list[str]
    sr: list[np.ndarray]
    hr: list[np.ndarray | None]
    resized: set[str]


def _load_images(ds: PairedDataset, method: SRMethod, ids: Sequence[str]) -> _Images:
    from PIL import Image

    by_id = {p.id: p for p in ds.pairs}
    sr_list, hr_list, resized = [], [], set()
    for pid in ids:
        pair = by_id[pid]
        lr = read_image(pair.lr)
        sr = method.output(pair.id, lr, ds.scale).array
        hr = read_image(pair.hr).array if pair.hr is not None else None
        if hr is not None and sr.shape != hr.shape:
            # flagged on every score that uses it: the suite itself refuses such outputs
            sr = np.asarray(Image.fromarray(sr).resize((hr.shape[1], hr.shape[0]), Image.Resampling.BICUBIC))
            resized.add(pid)
        sr_list.append(sr)
        hr_list.append(hr)
    return _Images(list(ids), sr_list, hr_list, resized)


def _tensor(a: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float().div(255.0)[None]


def _score(model: MetricModel, variant: Variant, images: _Images) -> dict[str, float]:
    import torch

    out: dict[str, float] = {}
    fr = variant.spec.kind == "FR"
    for pid, sr, hr in zip(images.ids, images.sr, images.hr, strict=True):
        if fr and hr is None:
            continue
        x = _tensor(sr)
        ref = _tensor(hr) if fr and hr is not None else None
        if variant.call:
            with torch.inference_mode():
                xs = model.prepare(x)
                args = (xs, model.prepare(ref)) if ref is not None else (xs,)
                value = model.model(*args, **variant.call)
        else:
            value = model(x, ref)
        out[pid] = float(value.reshape(-1)[0])
    return out


def _missing_weights(key: str) -> tuple[WeightFile, ...]:
    """The weight files of catalogue entry ``key`` that are absent (installs the shipped NIQE
    parameters; a metric outside the catalogue is left to pyiqa's own first-use download)."""
    try:
        require_metric_weights(key)
    except MissingWeightsError:
        return tuple(wf for wf in metric_weight_files(key) if not wf.present)
    return ()


def _verdict(res_diff: float, reported: ReportedMetric, residuals: Mapping[str, float] | None,
             noise: float) -> str:  # fmt: skip
    if residuals:
        tol = reported.per_image_tolerance or {}
        per_image = reported.per_image or {}
        exact = all(abs(r) <= tol.get(k, reported.tolerance) + _FLOAT_SLACK * max(1.0, abs(per_image.get(k, 0.0)))
                    for k, r in residuals.items())  # fmt: skip
        if exact:
            return "reproduced"
        return "within noise" if float(np.mean(np.abs(list(residuals.values())))) <= noise else "not reproduced"
    if abs(res_diff) <= reported.tolerance + _FLOAT_SLACK * max(1.0, abs(reported.mean)):
        return "reproduced"
    return "within noise" if abs(res_diff) <= noise else "not reproduced"


def _sampling_band(values: Sequence[float], n_here: int, n_reported: int | None) -> float:
    """Twice the standard error of the difference between a mean over ``n_here`` images and one
    over ``n_reported`` images of which these are a part (or the other way round), finite-population
    corrected: 0 when the sets are the same size."""
    if n_reported is None or n_reported == n_here or len(values) < 2:
        return 0.0
    s = float(np.std(values, ddof=1))
    small, big = sorted((n_here, n_reported))
    return 2.0 * s / math.sqrt(small) * math.sqrt((big - small) / max(big - 1, 1))


def reconcile(
    dataset: str | PairedDataset,
    method: str,
    reported: Reported,
    *,
    scale: int | None = None,
    layout: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> Reconciliation:
    """Score the protocol variants of every reported metric and compare them with the reported numbers.

    Args:
        dataset: a dataset folder, name or ``hf:`` spec (or a loaded dataset).
        method: a method spec (``folder:PATH`` for a paper's published outputs; any spec works).
        reported: from :func:`parse_reported` or :func:`read_reported_csv`.
        scale, layout: as for :func:`benchmark.datasets.load_dataset`.
        device: for the metric models.
        progress: a progress bar over the variants.

    Raises:
        ReconcileError: the per-image values name none of the dataset's images.
    """
    from tqdm import tqdm

    ds = dataset if isinstance(dataset, PairedDataset) else load_dataset(dataset, scale=scale, layout=layout,
                                                                         validate=False)  # fmt: skip
    m = create_method(method, device=device)
    all_ids = [p.id for p in ds.pairs]
    fams = families(ds.scale)
    cache: dict[tuple[str, ...], _Images] = {}
    models: dict[str, MetricModel] = {}
    results = []
    try:
        for rep in reported.metrics:
            ids = [i for i in all_ids if rep.per_image is None or i in rep.per_image]
            if not ids:
                raise ReconcileError(
                    f"{reported.source}: none of its {len(rep.per_image or {})} images for {rep.column or rep.metric} "
                    f"is in {ds.name} ({len(all_ids)} pairs, e.g. {', '.join(all_ids[:3])}); image names are "
                    "matched by file stem"
                )
            images = cache.get(tuple(ids))
            if images is None:
                images = cache[tuple(ids)] = _load_images(ds, m, ids)
            results.append(_reconcile_metric(rep, fams.get(rep.metric) or _single(rep.metric), images, reported,
                                             len(all_ids), models, device, progress, tqdm))  # fmt: skip
    finally:
        m.close()
    return Reconciliation(ds.name, len(ds), m.name, method, reported.source, reported.n, pyiqa_version(),
                          tuple(results), str(dataset if isinstance(dataset, str) else ds.root))  # fmt: skip


def _reconcile_metric(rep: ReportedMetric, family: Family, images: _Images, reported: Reported, dataset_n: int,
                      models: dict[str, MetricModel], device: str, progress: bool, tqdm: Any) -> MetricReconciliation:  # fmt: skip
    tried: list[VariantResult] = []
    not_tried: list[tuple[str, tuple[WeightFile, ...]]] = []
    seen: set[str] = set()
    reported_values = rep.per_image or {}

    chosen_of: dict[str, Mapping[str, Choice]] = {}

    def run(chosen: Mapping[str, Choice]) -> VariantResult | None:
        variant = _variant(family, chosen)
        if variant.label in seen:
            return None
        seen.add(variant.label)
        chosen_of[variant.label] = chosen
        missing = _missing_weights(variant.weights)
        if missing:
            not_tried.append((variant.label, missing))
            return None
        key = f"{variant.spec.pyiqa_name}|{variant.spec.settings_hash}"
        if key not in models:
            models[key] = MetricModel(variant.spec, device)
        values = _score(models[key], variant, images)
        if not values:  # a full-reference metric on pairs without HR images
            return None
        value = float(np.mean(list(values.values())))
        residuals = {k: v - reported_values[k] for k, v in values.items()} if rep.per_image else None
        target = float(np.mean([reported_values[k] for k in values])) if rep.per_image else rep.mean
        diff = value - target
        noise = IMPLEMENTATION_GAP.get(variant.weights, IMPLEMENTATION_GAP.get(rep.metric, 0.0))
        if not rep.per_image:
            noise += _sampling_band(list(values.values()), len(values), reported.n)
        res = VariantResult(variant, value, diff, _verdict(diff, rep, residuals, noise), values, residuals,
                            tuple(sorted(set(values) & images.resized)))  # fmt: skip
        tried.append(res)
        return res

    grid = family.grid()
    bar = tqdm(grid, desc=f"reconcile {rep.metric}", unit="variant", disable=not progress, leave=False)
    for chosen in bar:
        run(chosen)
    if tried and family.secondary:
        best = min(tried, key=lambda r: r.distance)
        for chosen in family.refinements(chosen_of[best.variant.label]):
            run(chosen)
    tried.sort(key=lambda r: (r.distance, not r.variant.suite))
    if any(t.verdict == "reproduced" for t in tried):
        # the reported numbers are reproduced exactly: the noise band explains nothing else away
        tried = [t if t.verdict == "reproduced" else replace(t, verdict="not reproduced") for t in tried]
    noise = IMPLEMENTATION_GAP.get(rep.metric, 0.0)
    if not rep.per_image and tried:
        noise += _sampling_band(list(tried[0].per_image.values()), len(tried[0].per_image), reported.n)
    compared = tuple(sorted(tried[0].per_image)) if tried else tuple(images.ids)
    all_mean = float(np.mean(list(reported_values.values()))) if rep.per_image else rep.mean
    return MetricReconciliation(rep, tuple(tried), tuple(not_tried), compared, all_mean, noise)


# ---------------------------------------------------------------------------- output
def _fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _digits(rep: ReportedMetric) -> int:
    """The decimals the numbers were reported with (at least 4)."""
    return max(4, min(8, round(-math.log10(rep.tolerance * 2)) if rep.tolerance > 0 else 6))


def format_reconciliation(r: Reconciliation, fmt: str = "markdown", *, top: int = 5) -> str:
    """The answer as Markdown (the table, the variants tried, what was not tried, residuals) or JSON."""
    if fmt == "json":
        return json.dumps(to_json(r), indent=1) + "\n"
    if fmt != "markdown":
        raise ConfigError(f"unknown format {fmt!r}{did_you_mean(fmt, ('markdown', 'json'))}; choose markdown or json")
    n_rep = "unknown" if r.reported_n is None else str(r.reported_n)
    lines = [
        f"Reconciling {r.method} on {r.dataset} ({r.dataset_n} pairs) with {r.source} "
        f"(reported over {n_rep} images); pyiqa {r.pyiqa}",
        "",
        "| metric | reported | closest variant | value | \\|diff\\| | verdict | bench run --metrics |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in r.metrics:
        d = _digits(m.reported)
        reported = _fmt(m.reported.mean if not m.reported.per_image else
                        float(np.mean([m.reported.per_image[k] for k in m.compared])), d)  # fmt: skip
        b = m.best
        if b is None:
            why = "not tried (weights absent)" if m.not_tried else "not tried"
            lines.append(f"| {m.reported.metric} | {reported} | - | - | - | {why} | - |")
            continue
        flag = f" (SR resized to GT size on {len(b.resized)} images)" if b.resized else ""
        also = f" ({len(m.ties)} other variant(s) also {b.verdict})" if m.ties else ""
        lines.append(f"| {m.reported.metric} | {reported} | {b.variant.label}{flag} | {_fmt(b.value, d)} | "
                     f"{_fmt(abs(b.diff), d)} | {b.verdict}{also} | {b.variant.bench or '(no suite setting)'} |")  # fmt: skip
    cmd = r.bench_command()
    lines += ["", f"Reproduce: `{cmd}`" if cmd else "Reproduce: no reported number was reproduced."]
    if any(m.not_tried for m in r.metrics):
        lines += ["", "Variants not tried need their weight files: `screensr weights --download` when online, "
                      "or copy them into a folder and run `screensr weights --from DIR` (each is listed below)."]
    for m in r.metrics:
        lines += ["", f"## {m.reported.metric}: variants tried ({len(m.tried)}), closest first", ""]
        if m.reported.per_image:
            lines.append(
                f"Compared per image on {len(m.compared)} images (reported {len(m.reported.per_image)}; "
                f"reported mean over all of them {_fmt(m.reported_mean_all, _digits(m.reported))})."
            )
        else:
            over = f"over {r.reported_n} images" if r.reported_n is not None else "over an unstated number of images"
            lines.append(f"Compared means: the dataset's {len(m.compared)} images against the reported mean {over}.")
        if m.reported.metric in KNOWN_VERSION_CHANGES:
            lines.append(f"Known pyiqa change: {KNOWN_VERSION_CHANGES[m.reported.metric]} (installed: {r.pyiqa}).")
        gap = IMPLEMENTATION_GAP.get(m.reported.metric)
        lines.append(f"Noise band: {_fmt(m.noise)}" + ("" if gap is not None or m.noise else
                     " (no calibration figure for this metric: only an exact match counts)") + ".")  # fmt: skip
        if m.tried:
            lines += ["", "| variant | value | diff | mean \\|residual\\| | verdict | bench run --metrics |",
                      "|---|---|---|---|---|---|"]  # fmt: skip
        for t in m.tried:
            res = _fmt(t.distance, _digits(m.reported)) if t.residuals else "-"
            flag = " (resized)" if t.resized else ""
            lines.append(f"| {t.variant.label}{flag} | {_fmt(t.value, _digits(m.reported))} | "
                         f"{t.diff:+.{_digits(m.reported)}f} | {res} | {t.verdict} | "
                         f"{t.variant.bench or '(no suite setting)'} |")  # fmt: skip
        by_files: dict[tuple[WeightFile, ...], list[str]] = {}
        for label, files in m.not_tried:
            by_files.setdefault(files, []).append(label)
        for files, labels in by_files.items():
            lines += ["", f"Not tried (weights absent): {'; '.join(labels)}; needs:"]
            lines += [f"- {wf.name} -> {wf.path}" for wf in files]
        explain = m.explaining_images(top)
        if explain and m.best is not None and m.best.verdict != "reproduced":
            lines += ["", "Images that explain the gap (closest variant; share of the mean difference):"]
            lines += [f"- {img}: {share:+.{_digits(m.reported)}f}" for img, share in explain]
    return "\n".join(lines) + "\n"


def to_json(r: Reconciliation) -> dict[str, Any]:
    """A JSON-ready dict of the answer (every variant with its per-image values)."""

    def variant(t: VariantResult) -> dict[str, Any]:
        return {"label": t.variant.label, "bench": t.variant.bench, "suite": t.variant.suite,
                "settings": t.variant.spec.settings, "call": dict(t.variant.call), "value": t.value, "diff": t.diff,
                "distance": t.distance, "verdict": t.verdict, "resized": list(t.resized),
                "per_image": dict(t.per_image), "residuals": dict(t.residuals) if t.residuals else None}  # fmt: skip

    return {
        "dataset": r.dataset, "dataset_n": r.dataset_n, "method": r.method, "method_spec": r.method_spec,
        "source": r.source, "reported_n": r.reported_n, "pyiqa": r.pyiqa, "bench_command": r.bench_command(),
        "metrics": [
            {"metric": m.reported.metric, "column": m.reported.column, "reported": m.reported.mean,
             "reported_tolerance": m.reported.tolerance, "reported_mean_all": m.reported_mean_all,
             "compared": list(m.compared), "noise": m.noise, "verdict": m.verdict,
             "closest": variant(m.best) if m.best else None, "tried": [variant(t) for t in m.tried],
             "not_tried": [{"label": label, "missing": [{"name": wf.name, "path": str(wf.path), "url": wf.url}
                                                          for wf in files]} for label, files in m.not_tried]}
            for m in r.metrics
        ],
    }  # fmt: skip


def with_reported_n(reported: Reported, n: int | None) -> Reported:
    """``reported`` with its image count set (``--reported-n``)."""
    return replace(reported, n=n) if n is not None else reported
