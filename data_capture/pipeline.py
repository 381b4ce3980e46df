"""End-to-end helper: sources -> canvases -> simulated photos -> paired dataset (the demo path)."""

from __future__ import annotations

from pathlib import Path

from data_capture.build import BuildConfig, build_dataset
from data_capture.canvas import CanvasConfig, make_canvases
from data_capture.pair import PairConfig
from data_capture.simulate import simulate_folder

# Small enough for the demo (six 300-640 px sources in well under a minute on one core), large
# enough that the photo still resolves the source (~1.3 photo px per source px, > 4 per LR px at x4).
DEMO_CANVAS = CanvasConfig(width=1024, height=768)
DEMO_PHOTO = {"photo_width": 1280, "photo_height": 960}


def make_simulated_dataset(sources_dir: Path, out_dir: Path, *, scale: int = 4, preset: str = "mild",
                           seed: int = 0, progress: bool = True) -> Path:
    """Run canvas -> simulate -> build on ``sources_dir`` and return the dataset folder ``out_dir``.

    Intermediate canvases and photos go to ``out_dir/capture/{canvases,photos}``; the dataset
    itself (``hr/``, ``lr/``, ``manifest.jsonl``, ``dataset.json``, ``report.md``) to ``out_dir``.
    Canvases are 1024x768 and photos 1280x960 (the full-size path is for real captures and the
    performance script). Idempotent: a rerun with the same arguments recomputes nothing.
    """
    out_dir = Path(out_dir)
    canvases = out_dir / "capture" / "canvases"
    photos = out_dir / "capture" / "photos"
    make_canvases(Path(sources_dir), canvases, DEMO_CANVAS, progress=progress)
    simulate_folder(canvases, photos, preset=preset, seed=seed, overrides=DEMO_PHOTO, progress=progress)
    cfg = BuildConfig(name=f"simulated-{preset}-x{scale}", pair=PairConfig(scale=scale))
    return build_dataset(Path(sources_dir), canvases, photos, out_dir, cfg, progress=progress)
