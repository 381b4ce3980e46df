"""The runner end to end: the paper protocol on DRealSR, resume, SIGKILL, sharding, bad outputs."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.images import ImageFormatError
from benchmark.runner import WorkerError, evaluate
from benchmark.store import GT, ResultsStore
from screensr.cli import main as screensr_main


def _cli(*argv: str) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert screensr_main(list(argv)) == 0
    return buf.getvalue()


def _published(drealsr_dir: Path) -> pd.DataFrame:
    pub = pd.read_csv(drealsr_dir / "osediff_published_metrics.csv")
    pub.index = pub["image"].str.removesuffix(".png")
    return pub


def _subset(tmp_path: Path, stems: list[str], drealsr_dir: Path) -> Path:
    """A copy of some DRealSR pairs (same layout) and their OSEDiff outputs."""
    root = tmp_path / "drealsr_sub"
    for sub in ("test_HR", "test_LR", "osediff"):
        (root / sub).mkdir(parents=True)
        for s in stems:
            shutil.copy(drealsr_dir / sub / f"{s}.png", root / sub / f"{s}.png")
    return root


def test_drealsr_paper_protocol_reproduces_published_scores(tmp_path, drealsr_dir):
    """`screensr bench run` with folder: outputs gives OSEDiff's published per-image PSNR
    (Y of YCbCr, no crop) to 1e-5 on all 19 pairs (SSIM and NIQE: the subset test below, and
    all 19 in the slow test: pyiqa's SSIM costs ~2.5 s per 512 px image on these cores)."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _cli("bench", "run", "--dataset", str(drealsr_dir), "--methods", f"folder:{drealsr_dir / 'osediff'}",
         "--metrics", "psnr", "--store", url, "--no-gt", "--no-progress")  # fmt: skip
    store = ResultsStore(url)
    got = store.scores_frame(method="osediff").pivot(index="image", columns="metric", values="value")
    m = got.join(_published(drealsr_dir), how="inner")
    assert len(m) == 19
    assert np.abs(m["psnr"] - m["PSNR"]).max() < 1e-5
    out = _cli("bench", "report", "--store", url, "--format", "csv", "--n-boot", "200", "--metric", "psnr")
    rep = pd.read_csv(io.StringIO(out))
    assert list(rep.columns[:7]) == ["dataset", "method", "metric", "mean", "ci_low", "ci_high", "n"]
    row = rep.iloc[0]
    assert row["n"] == 19 and row["mean"] == pytest.approx(m["PSNR"].mean(), abs=1e-5)
    assert row["ci_low"] < row["mean"] < row["ci_high"]


def test_drealsr_osediff_preset_on_a_subset(tmp_path, capsys, drealsr_dir):
    """The `osediff` preset through the CLI: PSNR/SSIM/NIQE reproduce the published values; the
    learned metrics, whose weights are absent here, are reported unavailable and not stored."""
    stems = ["Canon_10_x1", "DSC_1241_x1", "P1140134_x1"]
    root = _subset(tmp_path, stems, drealsr_dir)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    _cli("bench", "run", "--dataset", str(root), "--methods", f"folder:{root / 'osediff'}",
         "--metrics", "osediff", "--store", url, "--no-gt", "--no-progress")  # fmt: skip
    err = capsys.readouterr().err
    from benchmark.metrics import check_weights, resolve_metrics

    # (another test may have written random LPIPS weights into this session's cache on purpose)
    missing = {s.name for s in resolve_metrics("osediff") if check_weights(s) is not None}
    assert {"dists", "clipiqa", "musiq", "maniqa"} <= missing
    for name in missing:
        assert f"unavailable: {name}" in err
    got = ResultsStore(url).scores_frame().pivot(index="image", columns="metric", values="value")
    assert set(got.columns) == {s.name for s in resolve_metrics("osediff")} - missing
    assert {"psnr", "ssim", "niqe"} <= set(got.columns)
    pub = _published(drealsr_dir).loc[stems]
    assert np.abs(got.loc[stems, "niqe"] - pub["NIQE"]).max() < 1e-5
    assert np.abs(got.loc[stems, "psnr"] - pub["PSNR"]).max() < 1e-5
    assert np.abs(got.loc[stems, "ssim"] - pub["SSIM"]).max() < 1e-5


@pytest.mark.slow
def test_drealsr_ssim_niqe_all_19(tmp_path, drealsr_dir):
    f = evaluate([drealsr_dir], [f"folder:{drealsr_dir / 'osediff'}"], "ssim,niqe", store=ResultsStore("sqlite://"),
                 progress=False, gt=False)  # fmt: skip
    got = f.pivot(index="image", columns="metric", values="value").join(_published(drealsr_dir), how="inner")
    assert len(got) == 19 and np.abs(got["ssim"] - got["SSIM"]).max() < 1e-5
    err = np.abs(got["niqe"] - got["NIQE"])
    # published NIQE came from another machine (float reductions differ): most within 1e-3,
    # the worst 0.018 (sony_54); the values equal pyiqa's on this machine (test_bench_metrics)
    assert len(err) == 19 and (err < 2e-3).sum() >= 15 and err.max() < 0.02


def test_rerun_is_idempotent_and_recomputes_only_changes(tmp_path, monkeypatch, make_generic, save_png):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=4)
    outs = tmp_path / "outs"
    shutil.copytree(ds / "hr", outs)  # a "perfect" method: its outputs are the HR images
    store = ResultsStore(tmp_path / "r.db")
    methods = ["bicubic", f"folder:{outs}"]
    first = evaluate([ds], methods, "psnr,ssim", store=store, progress=False)
    assert first.attrs["stats"]["computed"] == 4 * 2 * 2
    assert (first.loc[first.metric == "ssim"].query("method == 'outs'")["value"] == 1.0).all()
    again = evaluate([ds], methods, "psnr,ssim", store=store, progress=False)
    assert again.attrs["stats"]["computed"] == 0
    pd.testing.assert_frame_equal(first, again)
    # change one precomputed output: only that pair's scores of that method are recomputed
    arr = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(outs / "img_2.png")).copy()
    arr[:8] = 0
    save_png(outs / "img_2.png", arr)
    third = evaluate([ds], methods, "psnr,ssim", store=store, progress=False)
    assert third.attrs["stats"]["computed"] == 2
    assert third.query("method == 'outs' and image == 'img_2' and metric == 'ssim'")["value"].iloc[0] < 1.0
    # a different metric setting is a different score, stored next to the old one
    fourth = evaluate([ds], ["bicubic"], "psnr@crop_border=4", store=store, progress=False)
    assert fourth.attrs["stats"]["computed"] == 4


def test_batched_methods_equal_single_runs(tmp_path, monkeypatch, make_generic):
    """psnr/ssim score all methods of a pair in one batch: equal to one method at a time."""
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=3)
    both = evaluate([ds], ["bicubic", "lanczos"], "psnr,ssim", store=ResultsStore("sqlite://"), progress=False)
    for m in ("bicubic", "lanczos"):
        alone = evaluate([ds], [m], "psnr,ssim", store=ResultsStore("sqlite://"), progress=False)
        a = both[both.method == m].set_index(["image", "metric"])["value"].sort_index()
        b = alone[alone.method == m].set_index(["image", "metric"])["value"].sort_index()
        np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=1e-6)


def test_gt_scores_once_per_dataset_and_unavailable_metric(tmp_path, monkeypatch, make_generic):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=2, lr_size=48)  # 192 px: NIQE needs 96 px blocks
    store = ResultsStore("sqlite://")
    f = evaluate([ds], ["bicubic", "lanczos"], "psnr,niqe,musiq", store=store, progress=False)
    assert "musiq" in f.attrs["unavailable"] and "musiq_koniq_ckpt" in f.attrs["unavailable"]["musiq"]
    assert set(f["metric"]) == {"psnr", "niqe"}  # never computed with random weights
    gt = f[f.method == GT]
    assert set(gt["metric"]) == {"niqe"} and len(gt) == 2  # NR only, once per image
    assert set(store.metrics_frame()["name"]) == {"psnr", "niqe"}


def test_sr_output_of_wrong_size_is_an_error(tmp_path, make_generic, save_png):
    ds = make_generic(tmp_path / "toy", n=2)
    outs = tmp_path / "bad"
    shutil.copytree(ds / "hr", outs)
    save_png(outs / "img_1.png", np.zeros((60, 64, 3), np.uint8))
    with pytest.raises(ImageFormatError, match=r"bad/img_1\.png is 64x60 .* never resized"):
        evaluate([ds], [f"folder:{outs}"], "psnr", store=ResultsStore("sqlite://"), progress=False)
    os.remove(outs / "img_1.png")
    with pytest.raises(FileNotFoundError, match="no SR output for pair 'img_1'"):
        evaluate([ds], [f"folder:{outs}"], "psnr", store=ResultsStore("sqlite://"), progress=False)


def test_capture_dataset_end_to_end(tmp_path, monkeypatch, capsys, make_capture):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    root = make_capture(tmp_path / "cap", n=4, rejected=1)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    screensr_main(["bench", "run", "--dataset", str(root), "--methods", "bicubic", "--metrics", "psnr",
                   "--store", url, "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert "skipping 1 pair(s) rejected" in captured.err
    assert "| cap " in captured.out
    assert sorted(ResultsStore(url).scores_frame()["image"]) == ["img_1", "img_2", "img_3"]
    assert ResultsStore(url).datasets_frame().loc[0, "layout"] == "capture"


def _sharded_equals_single(tmp_path, make_generic, metrics: str, n_per_pair: int) -> None:
    ds = make_generic(tmp_path / "toy", n=5, lr_size=48)
    one = evaluate([str(ds)], ["bicubic"], metrics, store=ResultsStore("sqlite://"), progress=False)
    url = f"sqlite:///{tmp_path / 'sharded.db'}"
    two = evaluate([str(ds)], ["bicubic"], metrics, store=url, workers=2, progress=False)
    assert two.attrs["stats"]["computed"] == 5 * n_per_pair  # totals over both ranks
    cols = ["image", "method", "metric", "value"]
    a = one[cols].sort_values(cols[:3]).reset_index(drop=True)
    b = two[cols].sort_values(cols[:3]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-9, rtol=0)
    assert len(a) == 5 * n_per_pair


def test_two_process_shards_equal_one_process(tmp_path, monkeypatch, make_generic):
    """Two spawned processes (gloo group) each take every other pair: same scores as one."""
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    _sharded_equals_single(tmp_path, make_generic, "psnr,ssim", 2)


def test_failing_worker_fails_the_run(tmp_path, monkeypatch, make_generic):
    """An error in another rank's shard (here a missing output) ends the run with that error."""
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=4)
    outs = tmp_path / "outs"
    shutil.copytree(ds / "hr", outs)
    os.remove(outs / "img_3.png")  # rank 1 of 2 takes img_1 and img_3
    with pytest.raises(WorkerError, match=r"worker\(s\) failed \(rank 1"):
        evaluate([str(ds)], [f"folder:{outs}"], "psnr", store=f"sqlite:///{tmp_path / 'r.db'}", workers=2,
                 progress=False)  # fmt: skip


@pytest.mark.slow
def test_two_process_shards_equal_one_process_niqe(tmp_path, monkeypatch, make_generic):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    _sharded_equals_single(tmp_path, make_generic, "psnr,ssim,niqe", 4)  # + NIQE of each GT image


def test_cli_errors_are_user_errors(tmp_path, capsys, drealsr_dir):
    assert screensr_main(["bench", "run", "--dataset", str(tmp_path / "missing"), "--methods", "bicubic"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert screensr_main(["bench", "run", "--dataset", str(drealsr_dir), "--methods", "bicubc",
                          "--store", f"sqlite:///{tmp_path / 'r.db'}"]) == 2  # fmt: skip
    assert "did you mean 'bicubic'" in capsys.readouterr().err


def test_help_has_examples():
    for verb in ("run", "report", "gt-quality", "metrics", "export"):
        proc = subprocess.run([sys.executable, "-m", "screensr.cli", "bench", verb, "--help"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0 and "example" in proc.stdout, verb
    assert Path(sys.executable).exists()


def test_gt_quality_cli(tmp_path, monkeypatch, make_generic):
    """`screensr bench gt-quality` scores each dataset's HR once (method GT) and prints Table 2."""
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=2, lr_size=48)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    out = _cli("bench", "gt-quality", "--dataset", str(ds), "--metrics", "niqe", "--store", url,
               "--format", "csv", "--no-progress")  # fmt: skip
    table = pd.read_csv(io.StringIO(out))
    gt = ResultsStore(url).scores_frame(method=GT)
    assert table.loc[0, "dataset"] == "toy" and table.loc[0, "n"] == 2
    assert table.loc[0, "niqe"] == pytest.approx(gt["value"].mean(), abs=1e-4)
    assert screensr_main(["bench", "gt-quality", "--dataset", str(ds), "--metrics", "psnr", "--store", url]) == 2


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(tmp_path, make_generic):
    """`torchrun --nproc_per_node 2 ... bench run` shards through torch.distributed (gloo)."""
    ds = make_generic(tmp_path / "toy", n=4, lr_size=48)
    env = {**os.environ, "SCREENSR_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    url = f"sqlite:///{tmp_path / 'tr.db'}"
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "screensr.cli", "bench", "run", "--dataset",
                    str(ds), "--methods", "bicubic", "--metrics", "psnr,ssim", "--store", url, "--no-progress"],
                   env=env, check=True, capture_output=True, timeout=600)  # fmt: skip
    one = evaluate([str(ds)], ["bicubic"], "psnr,ssim", store=ResultsStore("sqlite://"), progress=False)
    two = ResultsStore(url).scores_frame()
    cols = ["image", "method", "metric", "value"]
    pd.testing.assert_frame_equal(
        one[cols].sort_values(cols[:3]).reset_index(drop=True),
        two[cols].sort_values(cols[:3]).reset_index(drop=True),
        check_exact=False, atol=1e-9, rtol=0,
    )  # fmt: skip


def test_lr_only_dataset_gets_no_reference_scores(tmp_path, monkeypatch, capsys, make_generic):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=2, lr_size=48)
    shutil.rmtree(ds / "hr")
    f = evaluate([ds], ["bicubic"], "psnr,niqe", store=ResultsStore("sqlite://"), progress=False, scale=4)
    assert set(f["metric"]) == {"niqe"} and set(f["method"]) == {"bicubic"} and len(f) == 2
    assert "full-reference metrics psnr do not apply" in capsys.readouterr().err


# --------------------------------------------------------------------------- partial failure


def test_on_error_skip_lists_counts_and_stores_nothing_for_skipped_pairs(tmp_path, monkeypatch, make_generic):
    """One corrupt LR and one missing output: with skip, the rest is scored, the two pairs are
    listed and counted, nothing is stored for them, and the runs say partial."""
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=4)
    outs = tmp_path / "outs"
    shutil.copytree(ds / "hr", outs)
    os.remove(outs / "img_2.png")  # method "outs" has no output for img_2
    (ds / "lr" / "img_0.png").write_bytes((ds / "lr" / "img_0.png").read_bytes()[:60])  # truncated LR
    store = ResultsStore(tmp_path / "r.db")
    f = evaluate([ds], ["bicubic", f"folder:{outs}"], "psnr", store=store, progress=False, gt=False, on_error="skip")
    got = {(k["image"], k["method"]) for k in f.attrs["skipped"]}
    assert got == {("img_0", "*"), ("img_2", "outs")}
    assert f.attrs["stats"]["skipped_pairs"] == 2
    stored = store.scores_frame()
    assert sorted(map(tuple, stored[["image", "method"]].values.tolist())) == [
        ("img_1", "bicubic"), ("img_1", "outs"), ("img_2", "bicubic"), ("img_3", "bicubic"), ("img_3", "outs")]
    runs = store.runs_frame().set_index("method")
    assert runs.loc["outs", "status"] == "partial" and runs.loc["outs", "n_skipped"] == 2
    assert "img_2" in runs.loc["outs", "error"] and "no SR output" in runs.loc["outs", "error"]
    assert runs.loc["bicubic", "n_skipped"] == 1 and "img_0.png" in runs.loc["bicubic", "error"]
    # the report: both incomplete (3 and 2 of 4 images), neither ranked
    from benchmark.report import summary

    s = summary(stored, images=store.dataset_images_frame(), runs=store.runs_frame()).set_index("method")
    assert s["n"].to_dict() == {"bicubic": 3, "outs": 2} and (s["n_total"] == 4).all()
    assert s["rank"].isna().all() and set(s["status"]) == {"partial"}


def test_on_error_stop_records_the_failed_run_with_its_error(tmp_path, monkeypatch, make_generic):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=3)
    outs = tmp_path / "outs"
    shutil.copytree(ds / "hr", outs)
    os.remove(outs / "img_1.png")
    store = ResultsStore(tmp_path / "r.db")
    with pytest.raises(FileNotFoundError, match="no SR output for pair 'img_1'"):
        evaluate([ds], ["bicubic", f"folder:{outs}"], "psnr", store=store, progress=False, gt=False)
    runs = store.runs_frame().set_index("method")
    assert runs.loc["outs", "status"] == "failed" and "pair 'img_1'" in runs.loc["outs", "error"]
    assert runs.loc["bicubic", "status"] == "aborted" and "stopped by an error" in runs.loc["bicubic", "error"]
    # pair img_0 was scored before the failure; the failed method is incomplete, shown as failed
    from benchmark.report import summary

    s = summary(store.scores_frame(), images=store.dataset_images_frame(), runs=store.runs_frame())
    row = s.set_index("method").loc["outs"]
    assert (row["n"], row["n_total"], row["status"]) == (1, 3, "failed") and pd.isna(row["rank"])
    # a clean rerun completes both; the board and report then rank them
    shutil.copy(ds / "hr" / "img_1.png", outs / "img_1.png")
    evaluate([ds], ["bicubic", f"folder:{outs}"], "psnr", store=store, progress=False, gt=False)
    assert set(store.runs_frame()["status"]) == {"complete"}


def test_strict_exit_code_and_the_last_line_says_what_was_skipped(tmp_path, monkeypatch, capsys, make_generic):
    """Issue 12.4: a requested metric skipped for missing weights exited 0 and nothing said so at
    the end; --strict makes it non-zero."""
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=2)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    base = ["bench", "run", "--dataset", str(ds), "--methods", "bicubic", "--store", url, "--no-progress", "--no-gt"]
    assert screensr_main([*base, "--metrics", "psnr,musiq"]) == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "skipped: metric(s) musiq (no weights)" in last
    assert screensr_main([*base, "--metrics", "psnr,musiq", "--strict"]) == 1
    assert "musiq" in capsys.readouterr().err.strip().splitlines()[-1]
    assert screensr_main([*base, "--metrics", "psnr", "--strict"]) == 0
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("nothing skipped")
    # a skipped pair counts as well
    (ds / "lr" / "img_1.png").write_bytes(b"not an image")
    assert screensr_main([*base, "--metrics", "psnr", "--on-error", "skip", "--strict"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "1 pair(s) (toy/img_1)" in err[-1] and any("skipped: toy/img_1 for every method" in x for x in err)
    assert screensr_main([*base, "--metrics", "psnr"]) == 2  # default stop: one error line
    assert capsys.readouterr().err.startswith("error: ")


def test_a_pair_removed_from_the_dataset_leaves_the_run_summary(tmp_path, monkeypatch, capsys, make_generic):
    """Issue 12.1: after a pair is removed, the run (and the report) reported n=3."""
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=3)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["bench", "run", "--dataset", str(ds), "--methods", "bicubic", "--metrics", "psnr", "--store", url,
            "--no-progress", "--no-gt", "--format", "csv"]  # fmt: skip
    first = pd.read_csv(io.StringIO(_cli(*args)))
    assert first.loc[0, "n"] == 3
    for sub in ("hr", "lr"):
        os.remove(ds / sub / "img_2.png")
    again = pd.read_csv(io.StringIO(_cli(*args)))
    kept = ResultsStore(url).scores_frame()
    assert len(kept) == 3  # history stays in the store
    assert (again.loc[0, "n"], again.loc[0, "n_total"]) == (2, 2)
    assert again.loc[0, "mean"] == pytest.approx(kept[kept.image != "img_2"]["value"].mean())
    rep = pd.read_csv(io.StringIO(_cli("bench", "report", "--store", url, "--format", "csv")))
    assert (rep.loc[0, "n"], rep.loc[0, "n_stale"], rep.loc[0, "rank"]) == (2, 1, 1)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A few hundred bytes that declare a ``width x height`` RGB PNG (a pixel bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def test_pixel_bomb_is_refused_before_decoding_naming_the_file(tmp_path, monkeypatch, drealsr_dir):
    from benchmark.images import read_image
    from core.imagelimits import ImageTooLargeError

    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    t0 = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png: declares 400\.0 MP, over the pixel limit of 100\.0 MP"):
        read_image(bomb)
    with pytest.raises(ImageTooLargeError, match=r"wide\.png: 15000x7000 = 105\.0 MP exceeds the pixel limit"):
        read_image(_png_header_only(tmp_path / "wide.png", 15000, 7000))
    assert time.perf_counter() - t0 < 1.0
    monkeypatch.setenv("SCREENSR_MAX_PIXELS", "100")
    with pytest.raises(ImageTooLargeError, match="SCREENSR_MAX_PIXELS"):
        read_image(drealsr_dir / "test_LR" / "Canon_10_x1.png")  # 128 x 128 > 100 pixels


def test_pixel_limit_in_a_run_dataset_image_and_generated_output(tmp_path, monkeypatch, make_generic):
    """A bomb among the dataset's LR images is skipped (skip) or named (stop); a generated output
    over the limit is refused before the method runs."""
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    ds = make_generic(tmp_path / "toy", n=3, lr_size=48)  # 192 px outputs: NIQE needs 96 px blocks
    shutil.rmtree(ds / "hr")
    _png_header_only(ds / "lr" / "img_1.png", 30000, 30000)
    store = ResultsStore("sqlite://")
    f = evaluate([ds], ["bicubic"], "niqe", store=store, progress=False, scale=4, on_error="skip")
    assert [(k["image"], k["method"]) for k in f.attrs["skipped"]] == [("img_1", "*")]
    assert "img_1.png: declares 900.0 MP" in f.attrs["skipped"][0]["error"]
    from core.imagelimits import ImageTooLargeError

    with pytest.raises(ImageTooLargeError, match=r"lr/img_1\.png: declares 900\.0 MP"):
        evaluate([ds], ["bicubic"], "niqe", store=ResultsStore("sqlite://"), progress=False, scale=4)
    # generated outputs: 16x16 LR -> 64x64 = 4096 px; a 1000 px limit refuses before generating
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "counting_sr.py").write_text(
        "import numpy as np\nCALLS = []\n"
        "def up(img, scale):\n    CALLS.append(1)\n    return np.repeat(np.repeat(img, scale, 0), scale, 1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    import counting_sr

    small = make_generic(tmp_path / "small", n=1)
    shutil.rmtree(small / "hr")  # LR only: the 16x16 LR passes, only the output would be too large
    monkeypatch.setenv("SCREENSR_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError, match=r"the x4 output of .*img_0\.png by method 'c': 64x64"):
        evaluate([small], ["c=py:counting_sr:up"], "niqe", store=ResultsStore("sqlite://"), progress=False, scale=4)
    assert counting_sr.CALLS == []
