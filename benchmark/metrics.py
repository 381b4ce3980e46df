"""Metric specs: thin, pinned descriptions of pyiqa metrics, and the loaded models that score.

A :class:`MetricSpec` says which pyiqa metric to build and with which options (the settings the
OSEDiff/VOSR evaluation scripts use, see ``docs/metrics-protocol.md``, "Settings the diffusion-SR
papers actually use"), whether it is full-reference (FR,
called as ``metric(sr, hr)``) or no-reference (NR), its direction, how it treats image sizes, and
whether a batch of equally sized images gives exactly the per-image values. The settings
(including the pyiqa version, because learned metrics change between releases) are hashed and
recorded with every score. No metric maths lives here: values come from pyiqa.

Example:
    >>> spec = get_metric("psnr")
    >>> spec.kind, spec.higher_is_better, spec.options["color_space"]
    ('FR', True, 'ycbcr')
    >>> get_metric("psnr", crop_border=4).options["crop_border"]
    4
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from benchmark.store import MetricRecord, canonical_hash
from benchmark.weights import MissingWeightsError, require_metric_weights
from core.errors import ConfigError, UnknownNameError, close_matches, did_you_mean

if TYPE_CHECKING:
    import torch

#: How a metric treats image sizes.
#: ``any``: pyiqa takes any size. ``crop32``: centre-crop height and width down to multiples of
#: 32 (A-FINE's CLIP ViT-B/32 needs them; pyiqa 0.1.16 asserts instead of padding, and its
#: padding branch is unreachable). Cropping is recorded in the settings; it never resamples.
SIZE_POLICIES = ("any", "crop32")


@dataclass(frozen=True)
class MetricSpec:
    """One metric as the harness runs it.

    Attributes:
        name: the harness name (``psnr``, ``maniqa``, ...), used in the store and reports.
        pyiqa_name: the pyiqa model name (``maniqa-pipal``).
        kind: ``FR`` (needs the ground truth) or ``NR``.
        higher_is_better: the direction (pyiqa's ``lower_better``, negated).
        options: keyword options passed to ``pyiqa.create_metric`` (pinned settings).
        size_policy: one of :data:`SIZE_POLICIES`.
        batch_exact: a batch of equally sized images gives exactly the per-image values.
        inplace_input: the pyiqa model modifies its input tensors (A-FINE normalises in place),
            so it gets copies.
        description: one line for listings.
        forwarded_options: options pyiqa's network takes through ``**kwargs`` and passes on
            (PSNR hands ``data_range``, ``eps`` and ``color_space`` to its function); with the
            network's named parameters they are the options a ``name@key=value`` may set.
        label: the short name tables and the board show (``"MANIQA"``); default the name in
            capitals with ``-`` for ``_`` (``topiq_nr`` -> ``TOPIQ-NR``).
        unit: the unit of the value (``"dB"``), empty when it has none.
        decimals: digits shown after the point (papers print PSNR with 2, LPIPS with 4).
        shown_by_default: the board shows the metric before the user picks a metric set
            (variants and combined scores are opt-in).
        reproduce_tol: the largest ``|measured - reported|`` (in the metric's unit) that still
            counts as reproducing a published value, the numerical noise between runs of the
            same protocol (hardware, BLAS, image decoders). The comparison adds half a unit of
            the reported value's last printed digit (a paper printing ``27.92`` cannot be held
            to 0.001 dB). The one place these tolerances are stated:
            :func:`benchmark.reported.compare_reported` reads them from here.

    Presentation (label, unit, decimals, shown_by_default) and the tolerance never enter
    :attr:`settings`: they do not change a value, so they never change the settings hash either.
    """

    name: str
    pyiqa_name: str
    kind: str
    higher_is_better: bool
    options: dict[str, Any] = field(default_factory=dict)
    size_policy: str = "any"
    batch_exact: bool = False
    inplace_input: bool = False
    description: str = ""
    forwarded_options: tuple[str, ...] = ()
    label: str = ""
    unit: str = ""
    decimals: int = 4
    shown_by_default: bool = True
    reproduce_tol: float = 1e-3

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", default_label(self.name))
        if self.kind not in ("FR", "NR"):
            raise ValueError(f"metric {self.name}: kind must be FR or NR, got {self.kind!r}")
        if self.size_policy not in SIZE_POLICIES:
            raise ValueError(f"metric {self.name}: size_policy {self.size_policy!r} not in {SIZE_POLICIES}")

    def __hash__(self) -> int:  # options is a dict; the settings hash identifies a spec
        return hash((self.name, self.settings_hash))

    @property
    def settings(self) -> dict[str, Any]:
        """Everything that changes the value: recorded (and hashed) with every score."""
        return {
            "pyiqa_name": self.pyiqa_name,
            "options": dict(self.options),
            "size_policy": self.size_policy,
            "pyiqa_version": pyiqa_version(),
        }

    @property
    def settings_hash(self) -> str:
        return canonical_hash(self.settings)

    def record(self) -> MetricRecord:
        """The store's description of this metric."""
        return MetricRecord(
            self.name, self.kind, self.higher_is_better, self.settings, self.settings_hash, pyiqa_version()
        )


def default_label(name: str) -> str:
    """The label of a metric that declares none: ``topiq_nr`` -> ``TOPIQ-NR``."""
    return name.upper().replace("_", "-")


@functools.cache
def pyiqa_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyiqa")
    except PackageNotFoundError:  # pragma: no cover - pyiqa is a hard dependency
        return "missing"


_Y = {"test_y_channel": True, "color_space": "ycbcr", "crop_border": 0}

#: The registry: the metrics papers report, with the settings their evaluation scripts use.
METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        # tolerances: per-image PSNR/SSIM of the shipped DRealSR x OSEDiff files reproduce the
        # published values to 1e-6; NIQE to 4e-4 on 15 of the 19 pairs, but its covariance fit is
        # ill-conditioned on some images (sony_54: 0.018, sony_120: 0.003), hence 0.02; the learned
        # metrics differ by ~1e-4 between CPU and GPU runs of one pyiqa release
        MetricSpec("psnr", "psnr", "FR", True, dict(_Y), batch_exact=True,
                   description="PSNR on BT.601 limited-range Y (BasicSR convention), dB",
                   forwarded_options=("data_range", "eps", "color_space"), unit="dB", decimals=2,
                   reproduce_tol=1e-3),
        MetricSpec("ssim", "ssim", "FR", True, dict(_Y), batch_exact=True,
                   description="SSIM on BT.601 limited-range Y (BasicSR convention)", reproduce_tol=1e-4),
        MetricSpec("lpips", "lpips", "FR", False, batch_exact=True, description="LPIPS (AlexNet, v0.1)"),
        MetricSpec("dists", "dists", "FR", False, batch_exact=True, description="DISTS"),
        MetricSpec("niqe", "niqe", "NR", False,
                   description="NIQE (official LIVE parameters, Y channel, 96x96 blocks)", reproduce_tol=0.02),
        MetricSpec("musiq", "musiq", "NR", True, description="MUSIQ (KonIQ checkpoint, multi-scale)", decimals=2,
                   reproduce_tol=0.05),
        # pyiqa's default `maniqa` is the KonIQ model; the papers use PIPAL.
        MetricSpec("maniqa", "maniqa-pipal", "NR", True, description="MANIQA (PIPAL checkpoint)"),
        # ... and the NTIRE 2025 challenge script uses pyiqa's default (KonIQ): a metric of its own
        MetricSpec("maniqa_koniq", "maniqa", "NR", True, label="MANIQA-KonIQ", shown_by_default=False,
                   description="MANIQA (KonIQ checkpoint: pyiqa's default `maniqa`, as the NTIRE 2025 script)"),
        MetricSpec("clipiqa", "clipiqa", "NR", True, batch_exact=True, description="CLIP-IQA"),
        MetricSpec("topiq_nr", "topiq_nr", "NR", True, description="TOPIQ-NR (KonIQ, ResNet50)"),
        MetricSpec("topiq_fr", "topiq_fr", "FR", True, description="TOPIQ-FR (KADID, ResNet50)",
                   shown_by_default=False),
        MetricSpec("afine_nr", "afine_nr", "NR", False, size_policy="crop32", inplace_input=True,
                   description="A-FINE naturalness term (the NR score of VOSR's Table 2)"),
        MetricSpec("afine_fr", "afine_fr", "FR", False, size_policy="crop32", inplace_input=True,
                   description="A-FINE fidelity term", shown_by_default=False),
        MetricSpec("afine_all", "afine_all", "FR", False, size_policy="crop32", inplace_input=True,
                   description="A-FINE combined score", label="AFINE", shown_by_default=False),
    )
}  # fmt: skip


@dataclass(frozen=True)
class MetricPreset:
    """A named metric list (``--metrics osediff``), with where it comes from.

    Attributes:
        name: the preset name, as ``--metrics`` takes it.
        metrics: registry names, in the order reports list them.
        source: the paper, script or table whose metric list this is (or what it is for).
    """

    name: str
    metrics: tuple[str, ...]
    source: str


#: The presets, one per evaluation protocol whose metric list differs.
PRESETS: dict[str, MetricPreset] = {
    p.name: p
    for p in (
        MetricPreset("osediff", ("psnr", "ssim", "lpips", "dists", "clipiqa", "niqe", "musiq", "maniqa"),
                     "OSEDiff's evaluation (Wu et al., NeurIPS 2024; cswry/OSEDiff evaluation log of the published "
                     "per-image DRealSR scores): PSNR/SSIM on Y, LPIPS, DISTS, CLIPIQA, NIQE, MUSIQ, MANIQA-PIPAL. "
                     "FID (a set metric) is left out."),
        MetricPreset("vosr", ("psnr", "ssim", "lpips", "dists", "clipiqa", "niqe", "musiq", "maniqa", "topiq_nr",
                              "afine_nr", "afine_fr", "afine_all"),
                     "the osediff list plus what the VOSR paper adds (TOPIQ-NR, A-FINE NR/FR/all); its appendix "
                     "tables use LPIPS, MUSIQ (Tables 1, 4, 5) and NIQE, MUSIQ, MANIQA, AFINE-NR, TOPIQ-NR (Table 2)"),
        MetricPreset("vosr-appendix", ("lpips", "musiq", "niqe", "maniqa", "afine_nr", "topiq_nr"),
                     "exactly the metrics of the VOSR appendix tables shipped in benchmark/data/reported "
                     "(Tables 1, 4, 5: LPIPS, MUSIQ; Table 2: NIQE, MUSIQ, MANIQA, AFINE-NR, TOPIQ-NR)"),
        MetricPreset("ntire2025", ("lpips", "dists", "clipiqa", "maniqa_koniq", "musiq", "niqe"),
                     "the NTIRE 2025 image SR (x4) challenge's perception track: the six components of its score "
                     "(zhengchen1999/NTIRE2025_ImageSR_x4, README and metrics.py: pyiqa defaults, MANIQA = "
                     "pyiqa's `maniqa`, the KonIQ model); the score itself is benchmark.derived's `ntire2025`"),
        MetricPreset("gt-quality", ("niqe", "musiq", "maniqa", "afine_nr", "topiq_nr"),
                     "the VOSR appendix Table 2: no-reference quality of each benchmark's GT images"),
        MetricPreset("classical", ("psnr", "ssim", "niqe"), "the metrics that need no learned weights"),
    )
}  # fmt: skip

#: ``{preset: metric names}``: the view of :data:`PRESETS` that ``resolve_metrics`` and the board read.
PROTOCOLS: dict[str, tuple[str, ...]] = {name: preset.metrics for name, preset in PRESETS.items()}


def list_metrics() -> list[str]:
    """Names of the registered metrics (any other pyiqa name is accepted as well)."""
    return list(METRICS)


def get_metric(name: str, **overrides: Any) -> MetricSpec:
    """The spec for ``name``, with option overrides (e.g. ``crop_border=4``).

    Names outside the registry are taken from pyiqa's own configuration (its default options
    and direction), so every pyiqa metric can be used.

    Raises:
        UnknownNameError: unknown name (a ``KeyError``, with the closest match).
    """
    spec = METRICS.get(name)
    if spec is None:
        from pyiqa.default_model_configs import DEFAULT_CONFIGS

        cfg = DEFAULT_CONFIGS.get(name)
        if cfg is None or cfg.get("metric_mode") not in ("FR", "NR") or name in ("fid", "inception_score"):
            if name in ("fid", "inception_score"):
                raise UnknownNameError(
                    "per-image metric", name, [],
                    hint=f"{name} scores a set of images, not one image, and the harness stores per-image "
                    "scores; compute it over the output folders with pyiqa directly",
                )  # fmt: skip
            # suggest the registered names first: pyiqa's 150 names hold near-misses of them
            # ("nique" is closer to pyiqa's "unique" than to "niqe")
            pool = [*METRICS, *PROTOCOLS]
            if not close_matches(name, pool):
                pool = [n for n, c in DEFAULT_CONFIGS.items() if c.get("metric_mode") in ("FR", "NR")]
            raise UnknownNameError(
                "metric", name, sorted(set(pool) - {"fid", "inception_score"}),
                hint=f"registered: {', '.join(METRICS)}; protocols: {', '.join(PROTOCOLS)}; any other per-image "
                "pyiqa metric name works too",
            )  # fmt: skip
        spec = MetricSpec(name, name, cfg["metric_mode"], not cfg.get("lower_better", False),
                          description=f"pyiqa {name} with its default options")  # fmt: skip
    if overrides:
        _check_options(spec, overrides)
        spec = replace(spec, options={**spec.options, **overrides})
    return spec


def metric_options(spec: MetricSpec) -> list[str] | None:
    """The option names ``spec`` accepts (its pyiqa network's parameters), or None if unknowable.

    None when the network takes arbitrary ``**kwargs`` that the spec does not describe, or when
    pyiqa's network class cannot be found.
    """
    import inspect

    arch = _arch_class(spec.pyiqa_name)
    if arch is None:
        return None
    params = list(inspect.signature(arch).parameters.values())  # the constructor's, without self
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind is p.VAR_KEYWORD for p in params) and spec.name not in METRICS:
        return None  # an unregistered metric whose **kwargs we have not read: let pyiqa judge
    # registered networks with **kwargs (LPIPS, DISTS, MANIQA) ignore what they do not name,
    # except the options the spec says are forwarded (PSNR)
    return named + [o for o in spec.forwarded_options if o not in named]


def _arch_class(pyiqa_name: str) -> type | None:
    """pyiqa's network class for a metric, imported from its ``pyiqa/archs/<type>_arch.py``."""
    import importlib
    import re

    from pyiqa.default_model_configs import DEFAULT_CONFIGS
    from pyiqa.utils.registry import ARCH_REGISTRY

    arch = DEFAULT_CONFIGS.get(pyiqa_name, {}).get("metric_opts", {}).get("type")
    if arch is None:
        return None
    if arch not in ARCH_REGISTRY:
        snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", arch)).lower()
        for module in dict.fromkeys((f"pyiqa.archs.{arch.lower()}_arch", f"pyiqa.archs.{snake}_arch")):
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
            if arch in ARCH_REGISTRY:
                break
    return ARCH_REGISTRY.get(arch) if arch in ARCH_REGISTRY else None


def _check_options(spec: MetricSpec, overrides: dict[str, Any]) -> None:
    allowed = metric_options(spec)
    if allowed is None:
        return
    for key in overrides:
        if key not in allowed:
            raise ConfigError(
                f"unknown option {key!r} for metric {spec.name}{did_you_mean(key, allowed, list_all_below=0)}; "
                f"pyiqa's {spec.pyiqa_name} takes {', '.join(allowed)}"
            )


def resolve_metrics(text: str | list[str] | tuple[str, ...]) -> list[MetricSpec]:
    """Parse ``psnr,ssim,niqe`` or protocol names (``osediff``) into specs, order kept, no repeats.

    ``name@key=value`` sets an option, e.g. ``psnr@crop_border=4``.
    """
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise ConfigError("no metrics given; e.g. --metrics psnr,ssim,niqe or --metrics osediff")
    out: dict[str, MetricSpec] = {}
    for item in items:
        if item in PROTOCOLS:
            for n in PROTOCOLS[item]:
                out.setdefault(n, get_metric(n))
            continue
        name, _, opts = item.partition("@")
        overrides: dict[str, Any] = {}
        for kv in filter(None, opts.split("@")):
            key, eq, raw = kv.partition("=")
            if not eq:
                raise ConfigError(f"metric option {kv!r} in {item!r}: expected key=value, e.g. psnr@crop_border=4")
            overrides[key] = _parse_value(raw)
        out[name] = get_metric(name, **overrides)
    return list(out.values())


def _parse_value(raw: str) -> Any:
    import json

    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


# ---------------------------------------------------------------------------- availability
def check_weights(spec: MetricSpec) -> str | None:
    """None if the metric can run with real weights here, else a message naming each missing
    file and where it must go (the metric is then reported unavailable, never computed with
    random weights). Also installs the shipped NIQE parameters into pyiqa's cache."""
    try:
        require_metric_weights(spec.pyiqa_name)
    except MissingWeightsError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------- scoring
class MetricModel:
    """A loaded pyiqa metric that scores tensors according to its spec.

    Args:
        spec: the metric spec.
        device: torch device string.

    Call with ``sr`` (and ``hr`` for FR metrics), each ``(N, 3, H, W)`` float in [0, 1];
    returns ``(N,)`` float64 values on the CPU.
    """

    def __init__(self, spec: MetricSpec, device: str = "cpu") -> None:
        self.spec = spec
        self.device = device

    @cached_property
    def model(self):
        import pyiqa
        import torch

        m = pyiqa.create_metric(self.spec.pyiqa_name, device=torch.device(self.device), **self.spec.options)
        return m.eval()

    def load(self) -> MetricModel:
        """Build the pyiqa model now (otherwise on first use)."""
        _ = self.model
        return self

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the size policy (and copy inputs the model would modify in place)."""
        if self.spec.size_policy == "crop32":
            h, w = x.shape[-2:]
            h2, w2 = h - h % 32, w - w % 32
            if h2 == 0 or w2 == 0:
                raise ValueError(
                    f"metric {self.spec.name} needs images of at least 32x32 pixels, got {w}x{h}"
                )
            top, left = (h - h2) // 2, (w - w2) // 2
            x = x[..., top : top + h2, left : left + w2]
        if self.spec.inplace_input:
            x = x.clone()
        return x

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor | None = None):
        import torch

        if self.spec.kind == "FR":
            if hr is None:
                raise ValueError(f"metric {self.spec.name} is full-reference: it needs the HR image")
            if sr.shape != hr.shape:
                raise ValueError(
                    f"metric {self.spec.name}: SR {tuple(sr.shape)} and HR {tuple(hr.shape)} differ in size"
                )
        with torch.inference_mode():
            sr = self.prepare(sr).to(self.device)
            if hr is not None and self.spec.kind == "FR":
                out = self.model(sr, self.prepare(hr).to(self.device))
            else:
                out = self.model(sr)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.detach().double().cpu().reshape(-1)
