"""Fixtures of the board tests: synthetic results stores with real image folders.

Tests get them as fixtures: ``board_env`` (one populated, read-only store for the whole session:
the app, export and browser tests only read it), ``make_board_env`` (a fresh one, for tests that
write), ``two_sets`` (two datasets, a method with a version on each), ``image_folders``
(``write_image_folders``) and ``metric_records`` (``register_metrics``).
``tests/perf/bench_board.py`` loads this file by path for ``populate``.

Scores are written through the results store's own write API (``ResultsStore.add_scores``), so
the leaderboard reads exactly what the runner would have written. Each method has a hidden
"quality" q in [0, 1]; every metric moves with q in its own direction, so the true ranking is
known (method ``m00`` is the best on every metric when ``noise`` is small).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.store import GT, DatasetRecord, MethodRecord, MetricRecord, ResultsStore, ScoreRecord

# name -> (FR/NR, higher_is_better, value at q=0, value at q=1)
METRICS: dict[str, tuple[str, bool, float, float]] = {
    "psnr": ("FR", True, 20.0, 28.0),
    "ssim": ("FR", True, 0.55, 0.85),
    "lpips": ("FR", False, 0.45, 0.15),
    "dists": ("FR", False, 0.30, 0.10),
    "niqe": ("NR", False, 8.0, 3.5),
    "musiq": ("NR", True, 30.0, 70.0),
    "maniqa": ("NR", True, 0.35, 0.70),
    "clipiqa": ("NR", True, 0.30, 0.75),
    "topiq_nr": ("NR", True, 0.30, 0.70),
    "afine_nr": ("NR", False, 0.50, -1.20),
    "topiq_fr": ("FR", True, 0.40, 0.80),
    "afine_fr": ("FR", False, 0.60, -0.50),
}

FAMILY_CYCLE = ("one-step", "multi-step", "GAN", "regression", "interpolation")


@dataclass(frozen=True)
class SyntheticBoard:
    """What ``populate`` wrote: names and the hidden qualities (best first)."""

    datasets: list[str]
    methods: list[str]
    metrics: list[str]
    images: list[str]
    quality: dict[str, float]


def register_metrics(store: ResultsStore, metrics: list[str]) -> None:
    """Write the metric descriptions (direction, FR/NR) the runner would write."""
    for name in metrics:
        kind, higher, _, _ = METRICS[name]
        store.upsert_metric(MetricRecord(name, kind, higher, {"synthetic": True}, f"s-{name}", "0.1.16"))


def populate(
    store: ResultsStore,
    *,
    datasets: tuple[str, ...] = ("DRealSR", "RealSR"),
    n_methods: int = 6,
    n_images: int = 8,
    metrics: tuple[str, ...] = ("psnr", "ssim", "lpips", "niqe", "musiq"),
    noise: float = 0.02,
    seed: int = 0,
    roots: dict[str, Path] | None = None,
    outputs: dict[str, Path] | None = None,
    nr_quality: dict[str, float] | None = None,
) -> SyntheticBoard:
    """Fill ``store`` with synthetic datasets, methods, metrics and per-image scores.

    Args:
        roots: dataset name -> folder (recorded as the dataset root, layout ``generic``).
        outputs: method name -> folder (recorded as the method's outputs location).
        noise: per-image noise as a fraction of each metric's range.
        nr_quality: a different hidden quality for the no-reference metrics (a perception-
            distortion trade-off); default the same as for the full-reference ones.
    """
    rng = np.random.default_rng(seed)
    methods = [f"m{i:02d}" for i in range(n_methods)]
    quality = {m: 1.0 - i / max(1, n_methods - 1) for i, m in enumerate(methods)}
    images = [f"img{i:03d}" for i in range(n_images)]
    register_metrics(store, list(metrics))
    for d in datasets:
        root = str((roots or {}).get(d, f"/data/{d}"))
        store.upsert_dataset(DatasetRecord(d, root, "generic", 4, n_images, {"protocol": "synthetic"}))
    for i, m in enumerate(methods):
        store.upsert_method(
            MethodRecord(
                m,
                family=FAMILY_CYCLE[i % len(FAMILY_CYCLE)],
                description=f"Synthetic method {m} (quality {quality[m]:.2f}).",
                config={"kind": "synthetic", "quality": quality[m]},
                version="1.0",
                outputs=str((outputs or {}).get(m, "")),
                links=[f"https://example.org/{m}"],
            )
        )
    records: list[ScoreRecord] = []
    for d in datasets:
        image_effect = rng.normal(0.0, 0.05, size=n_images)  # some images are harder for everyone
        for m in [*methods, GT]:
            for metric in metrics:
                kind, _, lo, hi = METRICS[metric]
                q = 1.05 if m == GT else (nr_quality or quality)[m] if kind == "NR" else quality[m]
                if m == GT and kind == "FR":
                    continue  # the GT pseudo-method only has no-reference scores
                values = lo + (hi - lo) * (q + image_effect + rng.normal(0.0, noise, size=n_images))
                records += [
                    ScoreRecord(d, img, m, metric, float(v), f"s-{metric}", f"h-{m}", f"c-{d}-{img}")
                    for img, v in zip(images, values, strict=True)
                ]
    store.add_scores(records)
    return SyntheticBoard(list(datasets), methods, list(metrics), images, quality)


def write_image_folders(
    base: Path, dataset: str, methods: list[str], images: list[str], *, hr: int = 64, scale: int = 4
) -> tuple[Path, dict[str, Path]]:
    """A generic ``hr/`` + ``lr/`` dataset and one outputs folder per method, all PNG.

    Each method's output is the HR image with a method-specific constant added, so the compare
    page's crops can be checked pixel for pixel. Returns (dataset root, method -> folder).
    """
    rng = np.random.default_rng(1)
    root = base / dataset
    (root / "hr").mkdir(parents=True, exist_ok=True)
    (root / "lr").mkdir(parents=True, exist_ok=True)
    outs = {m: base / "outputs" / m / dataset for m in methods}
    for folder in outs.values():
        folder.mkdir(parents=True, exist_ok=True)
    for img in images:
        hr_img = rng.integers(0, 200, size=(hr, hr, 3), dtype=np.uint8)
        Image.fromarray(hr_img).save(root / "hr" / f"{img}.png")
        lr_img = hr_img[::scale, ::scale]
        Image.fromarray(lr_img).save(root / "lr" / f"{img}.png")
        for k, m in enumerate(methods):
            Image.fromarray(hr_img + np.uint8(k + 1)).save(outs[m] / f"{img}.png")
    return root, outs


# --------------------------------------------------------------------------- environments

# FR order m00 > m01 > ... ; NR order differs, so the Pareto front of (PSNR, MUSIQ) is m00, m01, m02
TRADEOFF = {"m00": 0.2, "m01": 0.9, "m02": 1.0, "m03": 0.3, "m04": 0.5, "m05": 0.0}


@dataclass(frozen=True)
class BoardEnv:
    """A populated store with real image folders for the DRealSR-named synthetic dataset."""

    url: str
    base: Path
    board: SyntheticBoard
    roots: dict[str, Path]
    outputs: dict[str, Path]


def make_board_env(base: Path) -> BoardEnv:
    """Two synthetic datasets with PNG folders; six methods with outputs for ``DRealSR``."""
    methods = [f"m{i:02d}" for i in range(6)]
    images = [f"img{i:03d}" for i in range(8)]
    roots, outs = {}, {}
    for name in ("DRealSR", "RealSR"):
        root, o = write_image_folders(base, name, methods, images)
        roots[name] = root
        if name == "DRealSR":
            outs = o
    url = f"sqlite:///{base / 'results.db'}"
    store = ResultsStore(url)
    board = populate(store, roots=roots, outputs=outs, nr_quality=TRADEOFF)
    store.close()
    return BoardEnv(url, base, board, roots, outs)


@pytest.fixture(scope="session")
def board_env(tmp_path_factory) -> BoardEnv:
    """One populated store with image folders, shared by every test that only reads it."""
    return make_board_env(tmp_path_factory.mktemp("board"))


@pytest.fixture(name="make_board_env", scope="session")
def make_board_env_fixture():
    """``make_board_env(base)``: a fresh populated store, for tests that write to it."""
    return make_board_env


@pytest.fixture(scope="session")
def image_folders():
    """``write_image_folders(base, dataset, methods, images, hr=, scale=)``."""
    return write_image_folders


@pytest.fixture(scope="session")
def metric_records():
    """``register_metrics(store, metrics)``: the metric rows the runner would write."""
    return register_metrics


@pytest.fixture(scope="session")
def two_sets(tmp_path_factory):
    """Datasets A (methods a1, a2; MySR 1.0) and B (b1..b4; MySR 2.0), with outputs on disk.

    MySR's versions have different outputs (1.0 = HR + 3, 2.0 = HR + 5) in folders of their own.
    Returns ``(url, {method or version key: outputs folder})``.
    """
    base = tmp_path_factory.mktemp("two")
    url = f"sqlite:///{base / 'r.db'}"
    store = ResultsStore(url)
    register_metrics(store, ["psnr"])
    folders = {}
    for ds, names in (("A", ["a1", "a2", "v1"]), ("B", ["b1", "b2", "b3", "b4", "v2"])):
        root, outs = write_image_folders(base / ds, ds, names, ["i0", "i1"])
        folders.update(outs)
        store.upsert_dataset(DatasetRecord(ds, str(root), "generic", 4, 2))
        for m in names:
            if m.startswith("v"):
                continue
            store.upsert_method(MethodRecord(m, "GAN", outputs=str(outs[m])))
            store.add_scores([ScoreRecord(ds, i, m, "psnr", 20.0 + k, "s-psnr", "h", "c") for k, i in enumerate(["i0", "i1"])])
    for version, ds, key in (("1.0", "A", "v1"), ("2.0", "B", "v2")):
        rec = MethodRecord("MySR", "GAN", config={"folder": str(folders[key])}, version=version,
                           outputs=str(folders[key]), owner="ana")  # fmt: skip
        store.upsert_method(rec)
        store.add_scores([ScoreRecord(ds, i, "MySR", "psnr", 30.0, "s-psnr", rec.config_hash, "c") for i in ["i0", "i1"]])
    store.close()
    return url, folders
