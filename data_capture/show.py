"""Showing canvases full-screen, in order, for capture with a phone."""

from __future__ import annotations

from pathlib import Path

from core.errors import ConfigError, MissingFileError, UserError


class NoDisplayError(UserError, RuntimeError):
    """OpenCV cannot open a window here (a headless build, or no display)."""


def capture_order(canvases_dir: Path, *, start: str | None = None) -> list[Path]:
    """Canvas PNGs that have a layout, sorted by stem, optionally starting at stem ``start``."""
    canvases_dir = Path(canvases_dir)
    if not canvases_dir.is_dir():
        raise MissingFileError(f"canvas folder {canvases_dir} does not exist; run `screensr capture canvas` first")
    order = sorted(p.with_name(p.name[: -len(".layout.json")] + ".png") for p in canvases_dir.glob("*.layout.json"))
    order = [p for p in order if p.is_file()]
    if not order:
        raise MissingFileError(f"no canvases (<stem>.png + <stem>.layout.json) in {canvases_dir}")
    if start is not None:
        stems = [p.stem for p in order]
        if start not in stems:
            raise ConfigError(f"--start '{start}' is not a canvas stem in {canvases_dir}; first few: {stems[:5]}")
        order = order[stems.index(start):]
    return order


def slideshow(order: list[Path]) -> None:  # pragma: no cover - needs a display
    """Full-screen OpenCV window; space/right/n next, left/p previous, q/Esc quit.

    The canvas is shown 1:1 when the screen matches its size (set the display to 100 % scaling
    and the canvas size to the screen's native resolution, so no resampling blurs the markers).
    """
    import cv2

    name = "screensr capture"
    try:
        cv2.namedWindow(name, cv2.WND_PROP_FULLSCREEN)
        cv2.setWindowProperty(name, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
    except cv2.error as exc:
        raise NoDisplayError(
            "OpenCV has no GUI backend here (headless build or no display); open the canvas PNGs in an "
            f"image viewer in full-screen mode instead ({exc})"
        ) from exc
    i = 0
    while 0 <= i < len(order):
        img = cv2.imread(str(order[i]), cv2.IMREAD_COLOR)
        if img is None:  # removed or replaced while the slideshow runs
            raise MissingFileError(f"canvas {order[i]} can no longer be read; rerun `screensr capture canvas`")
        cv2.imshow(name, img)
        cv2.setWindowTitle(name, f"{i + 1}/{len(order)}  {order[i].stem}")
        key = cv2.waitKeyEx(0)
        if key in (27, ord("q")):
            break
        if key in (81, 65361, 2424832, ord("p")):  # left arrow codes (X11, GTK, Windows)
            i = max(0, i - 1)
        else:
            i += 1
    cv2.destroyAllWindows()
