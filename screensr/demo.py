"""``screensr demo``: the suite's main job on data that ships with installed packages.

1. Source images from ``skimage.data`` (centre crops, sides a multiple of 8) become the HR side.
2. The capture pipeline simulates phone photos of them on a screen (ArUco canvas -> display mosaic,
   projective warp, lens blur, Bayer, noise, JPEG), registers the photos back onto the source plane and
   colour-aligns them: the LR side of each pair, x4 (``data_capture.pipeline``).
3. The benchmark harness runs bicubic, Lanczos and Real-ESRGAN x4plus (ncnn, real weights, CPU) and
   scores them with PSNR and SSIM (Y of YCbCr, BasicSR convention) and NIQE (official parameters),
   plus any learned metric asked for whose weights are present; metrics without weights are listed
   as skipped with the reason.
4. The per-image scores go to the results store (SQLite in the output folder by default), the
   summary table to ``results.csv`` and the terminal.

Everything is offline and on the CPU; a rerun reuses what is stored.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError, UserError

EPILOG = """examples:
  screensr demo                                  # 6 images, 3 methods, PSNR/SSIM/NIQE (~2-3 min on 2 cores)
  screensr demo --images 2 --size 128 --out /tmp/demo
  screensr demo --metrics psnr,ssim,niqe,lpips   # lpips is listed as skipped unless its weights are present
"""

# skimage.data colour images used as sources, in this order (all ship inside scikit-image)
SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
DEFAULT_METHODS = ("bicubic", "lanczos", "realesrgan")
DEFAULT_METRICS = ("psnr", "ssim", "niqe")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo builds and runs.

    Attributes:
        out: output folder (sources, dataset, results store, results.csv).
        images: number of ``skimage.data`` sources (1-6).
        size: largest HR side in pixels (centre crop), rounded down to a multiple of 8.
        scale: SR factor.
        preset: capture-simulator preset (``mild``, ``typical``, ``hard``).
        seed: simulator seed (the same seed gives the same dataset).
        methods: SR methods (benchmark names).
        metrics: metrics (pyiqa names as the benchmark knows them).
        store: results-store URL; default SQLite in ``out``.
    """

    out: Path = Path("screensr-demo")
    images: int = 6
    size: int = 512
    scale: int = 4
    preset: str = "mild"
    seed: int = 0
    methods: tuple[str, ...] = DEFAULT_METHODS
    metrics: tuple[str, ...] = DEFAULT_METRICS
    store: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.images <= len(SOURCES):
            raise ConfigError(f"--images {self.images}: choose 1 to {len(SOURCES)} (the demo ships {len(SOURCES)} sources)")
        if self.size < 16 * self.scale:
            raise ConfigError(f"--size {self.size}: too small for x{self.scale}; use at least {16 * self.scale}")

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{(self.out / 'results.db').resolve()}"


@dataclass
class DemoResult:
    """The demo's outputs: the summary table, where things were written, what was skipped."""

    table: object  # pandas.DataFrame: dataset, method, metric, mean, ci_low, ci_high, n
    csv_path: Path
    dataset_dir: Path
    store_url: str
    skipped: dict[str, str] = field(default_factory=dict)


def write_sources(folder: Path, images: int, size: int) -> list[Path]:
    """Write centre crops of the ``skimage.data`` sources as PNG (idempotent).

    Returns:
        The PNG paths, named after the skimage function (``astronaut.png``, ...).
    """
    import numpy as np
    import skimage.data
    from PIL import Image

    from core.atomic import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SOURCES[:images]:
        path = folder / f"{name}.png"
        paths.append(path)
        if path.is_file():
            continue
        img = np.asarray(getattr(skimage.data, name)())[..., :3]
        h, w = img.shape[:2]
        side_h = min(h, size) // 8 * 8
        side_w = min(w, size) // 8 * 8
        top, left = (h - side_h) // 2, (w - side_w) // 2
        crop = np.ascontiguousarray(img[top : top + side_h, left : left + side_w])
        with atomic_path(path) as tmp:
            Image.fromarray(crop).save(tmp, format="PNG")
    return paths


def check_config(cfg: DemoConfig) -> None:
    """Reject unknown methods, metrics and presets before anything is built (seconds, not minutes).

    Raises:
        UnknownNameError / ConfigError: naming the value, with the closest valid one.
    """
    from benchmark.methods import create_method
    from benchmark.metrics import resolve_metrics
    from data_capture.simulate import preset_config

    if not cfg.methods:
        raise ConfigError("--methods is empty; e.g. --methods bicubic,lanczos,realesrgan")
    for spec in cfg.methods:
        create_method(spec)  # models load on first use: this only checks the name and options
    resolve_metrics(list(cfg.metrics))
    preset_config(cfg.preset)


def run_demo(cfg: DemoConfig, progress: bool = True) -> DemoResult:
    """Build the demo dataset, run the methods, score them, write and return the summary."""
    from benchmark.report import summary
    from benchmark.runner import evaluate
    from core.atomic import atomic_path
    from data_capture.pipeline import make_simulated_dataset

    check_config(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    sources = cfg.out / "sources"
    write_sources(sources, cfg.images, cfg.size)
    dataset_dir = make_simulated_dataset(
        sources, cfg.out / "dataset", scale=cfg.scale, preset=cfg.preset, seed=cfg.seed, progress=progress
    )
    frame = evaluate(
        [str(dataset_dir)], list(cfg.methods), list(cfg.metrics), store=cfg.store_url, progress=progress
    )
    # metrics whose weights are absent are not computed; the runner says which files are missing
    skipped = dict(frame.attrs.get("unavailable", {}))
    if frame.empty:
        raise UserError(f"none of the metrics {', '.join(cfg.metrics)} can run here; see `screensr doctor`")
    table = summary(frame)
    csv_path = cfg.out / "results.csv"
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    return DemoResult(table=table, csv_path=csv_path, dataset_dir=dataset_dir, store_url=cfg.store_url, skipped=skipped)


def format_table(table) -> str:  # noqa: ANN001 (pandas.DataFrame)
    """Method x metric means (with the 95% bootstrap interval) as a fixed-width text table."""
    cells = table.assign(
        cell=[
            f"{m:.4f} [{lo:.4f}, {hi:.4f}]" if n > 1 else f"{m:.4f}"
            for m, lo, hi, n in zip(table["mean"], table["ci_low"], table["ci_high"], table["n"], strict=True)
        ]
    )
    # GT has only no-reference scores: its FR cells are empty, shown as "-"
    pivot = cells.pivot_table(index="method", columns="metric", values="cell", aggfunc="first").fillna("-")
    arrows = {}
    if "higher_is_better" in table.columns:
        arrows = dict(zip(table["metric"], table["higher_is_better"], strict=False))
    pivot.columns = [f"{c} {'↑' if arrows.get(c, True) else '↓'}" if arrows else c for c in pivot.columns]
    n = int(table["n"].max())
    return f"{pivot.to_string()}\n(mean over {n} image(s), [95% bootstrap interval])"


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Options of ``screensr demo`` (it has no verbs)."""
    parser.epilog = EPILOG
    parser.add_argument("--out", type=Path, default=Path("screensr-demo"), help="output folder (default: ./screensr-demo)")
    parser.add_argument("--images", type=int, default=6, help=f"number of sources, 1-{len(SOURCES)} (default 6)")
    parser.add_argument("--size", type=int, default=512, help="largest HR side in pixels (default 512)")
    parser.add_argument("--preset", default="mild", help="capture-simulator preset: mild, typical, hard")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated SR methods")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metrics")
    parser.add_argument("--store", default=None, help="results store URL (default: SQLite in --out)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _split(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def run(args: argparse.Namespace) -> int:
    import time

    start = time.perf_counter()
    cfg = DemoConfig(
        out=args.out,
        images=args.images,
        size=args.size,
        preset=args.preset,
        seed=args.seed,
        methods=_split(args.methods),
        metrics=_split(args.metrics),
        store=args.store,
    )
    result = run_demo(cfg, progress=not args.no_progress)
    print()
    print(format_table(result.table))
    for name, reason in result.skipped.items():
        print(f"\nskipped {name}: {reason}")
    print(f"\nresults: {result.csv_path} and store {result.store_url}")
    print(f"dataset: {result.dataset_dir}")
    print(f"view:    screensr board --store {result.store_url}")
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    return 0
