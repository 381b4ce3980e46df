"""Every bad-input class of ``screensr bench run`` (README, "Reliability"): one ``error:`` line
that names the file and the fix (exit 2) under the default ``--on-error stop``; under
``--on-error skip`` the pair is skipped, listed and counted, nothing is stored for it, and
``--strict`` turns that into exit status 1.
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.store import ResultsStore
from screensr.cli import main


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _truncated(ds: Path, outs: Path, _png: Callable[..., Path]) -> tuple[Path, str]:
    f = ds / "lr" / "img_1.png"
    f.write_bytes(f.read_bytes()[:70])
    return f, "corrupt or truncated"


def _garbage(ds: Path, outs: Path, _png: Callable[..., Path]) -> tuple[Path, str]:
    f = ds / "hr" / "img_1.png"
    f.write_bytes(b"this is not a PNG at all" * 10)
    return f, "not a readable image|cannot be decoded"  # header check up front | decode when reached


def _grayscale(ds: Path, outs: Path, _png: Callable[..., Path]) -> tuple[Path, str]:
    f = outs / "img_1.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(f)
    return f, "grayscale"


def _alpha(ds: Path, outs: Path, _png: Callable[..., Path]) -> tuple[Path, str]:
    f = outs / "img_1.png"
    Image.fromarray(np.zeros((64, 64, 4), np.uint8)).save(f)
    return f, "alpha channel"


def _sixteen_bit(ds: Path, outs: Path, _png: Callable[..., Path]) -> tuple[Path, str]:
    import cv2

    f = outs / "img_1.png"
    cv2.imwrite(str(f), np.zeros((64, 64, 3), np.uint16))
    return f, "16-bit"


def _wrong_size(ds: Path, outs: Path, _png: Callable[..., Path]) -> tuple[Path, str]:
    f = outs / "img_1.png"
    Image.fromarray(np.zeros((60, 64, 3), np.uint8)).save(f)
    return f, "never resized"


def _missing_output(ds: Path, outs: Path, _png: Callable[..., Path]) -> tuple[Path, str]:
    (outs / "img_1.png").unlink()
    # stop: the up-front check of the output folder; skip: the pair reached without its output
    return outs, r"no SR output for (pair 'img_1'|1 of the 3 pairs of toy \(img_1\))"


def _pixel_bomb(ds: Path, outs: Path, png_header_file: Callable[..., Path]) -> tuple[Path, str]:
    f = outs / "img_1.png"
    png_header_file(f, 20000, 20000)
    return f, "over the pixel limit"


CASES = {
    "truncated LR": (_truncated, "*"),
    "unreadable HR": (_garbage, "*"),
    "grayscale output": (_grayscale, "outs"),
    "alpha output": (_alpha, "outs"),
    "16-bit output": (_sixteen_bit, "outs"),
    "wrong-size output": (_wrong_size, "outs"),
    "missing output": (_missing_output, "outs"),
    "pixel-bomb output": (_pixel_bomb, "outs"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_named_then_skippable(tmp_path, monkeypatch, case, make_pairs, png_header_file):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_pairs(tmp_path / "toy", n=3)
    outs = tmp_path / "outs"
    shutil.copytree(ds / "hr", outs)
    make, who = CASES[case]
    culprit, needle = make(ds, outs, png_header_file)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    base = ["bench", "run", "--dataset", str(ds), "--methods", f"bicubic,folder:{outs}", "--metrics", "psnr",
            "--store", url, "--no-progress", "--no-gt", "--scale", "4"]  # fmt: skip

    code, _, err = _run(*base)
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and re.search(needle, line) and str(culprit) in line and "Traceback" not in err

    code, out, err = _run(*base, "--on-error", "skip")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert "skipped: " in lines[-1] and "1 pair(s) (toy/img_1)" in lines[-1]
    assert any(x.startswith("skipped: toy/img_1 for ") and re.search(needle, x) for x in lines)
    stored = ResultsStore(url).scores_frame()
    skipped_methods = {"bicubic", "outs"} if who == "*" else {who}
    assert not ((stored["image"] == "img_1") & stored["method"].isin(skipped_methods)).any()  # nothing stored
    assert ((stored["image"] == "img_0") & (stored["method"] == "outs")).any()  # the rest was scored
    assert "1/3" in out or "2/3" in out  # the run's own summary marks the incomplete method(s)
    code, _, _ = _run(*base, "--on-error", "skip", "--strict")
    assert code == 1


def test_bad_arguments_are_one_error_line(tmp_path, capsys, make_pairs):
    ds = make_pairs(tmp_path / "toy", n=2)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    checks = [
        (["--dataset", str(tmp_path / "nope"), "--methods", "bicubic"], "no such folder"),
        (["--dataset", str(ds), "--methods", "bicubc", "--store", url], "did you mean 'bicubic'"),
        (["--dataset", str(ds), "--methods", "bicubic", "--metrics", "psnrr", "--store", url], "unknown metric"),
        (["--dataset", str(ds), "--methods", "bicubic", "--store", str(tmp_path)], "is a folder"),
        (["--dataset", str(ds), "--methods", "bicubic", "--store", str(ds / "hr" / "img_0.png")], "not a database"),
    ]
    for args, needle in checks:
        code, _, err = _run("bench", "run", *args)
        assert code == 2 and err.startswith("error: ") and needle in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_real_pixel_bomb_costs_neither_time_nor_memory(tmp_path, real_pixel_bomb):
    """A complete 1.2 MB PNG of 20000 x 20000 pixels (3.4 GiB once decoded) is refused from its
    header: well under a second and without the allocation."""
    import resource
    import time

    from benchmark.images import read_image
    from core.imagelimits import ImageTooLargeError

    bomb = real_pixel_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 3_000_000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t0 = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png: declares 400\.0 MP"):
        read_image(bomb)
    assert time.perf_counter() - t0 < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # < 200 MiB more
