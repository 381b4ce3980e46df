"""Reported results beside measured ones (issue 15.2): import, never mixed, reproduced or not."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import report
from benchmark.reported import (
    DIFFERS,
    NOT_MEASURED,
    OTHER_IMAGES,
    REPRODUCED,
    ReportedFileError,
    compare_reported,
    import_reported,
    parse_rows,
    printed_decimals,
    read_reported,
    shipped_files,
    tolerance,
)
from benchmark.store import ResultsStore, ScoreRecord

REPO = Path(__file__).resolve().parents[2]
DREALSR = REPO / "tests" / "data" / "drealsr_osediff"
# two of the 19 shipped pairs, one of them the pair whose NIQE is numerically the least stable
SUBSET = ("Canon_10_x1", "sony_54_x1")


def _store(tmp_path: Path, rows: list[tuple[str, str, str, str, float]]) -> ResultsStore:
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    store.add_scores([ScoreRecord(d, i, m, k, v, f"s-{k}", "h", f"c-{i}") for d, i, m, k, v in rows])
    return store


def _reported(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([r.row() for r in parse_rows(rows, where="test")])


# --------------------------------------------------------------------------- files


def test_csv_and_yaml_files_are_read_typed_with_their_citation(tmp_path):
    csv_file = tmp_path / "table.csv"
    csv_file.write_text("dataset,method,metric,value,source,table,n,link\nDRealSR,X,psnr,27.92,Paper A,3,93,https://doi.org/x\n")
    (row,) = read_reported(csv_file)
    assert (row.dataset, row.method, row.metric, row.value, row.n, row.source_table, row.decimals) == (
        "DRealSR", "X", "psnr", 27.92, 93, "3", 2)  # fmt: skip
    yaml_file = tmp_path / "table.yaml"
    yaml_file.write_text("source: Paper B\ntable: '2'\ndataset: RealSR\nrows:\n  - {method: GT, metric: niqe, value: 6.1167}\n"
                         "  - {method: GT, metric: musiq, value: 57.4564, note: full size}\n")  # fmt: skip
    rows = read_reported(yaml_file, overrides={"dataset": "realsr_crops"})
    assert [(r.dataset, r.metric, r.decimals, r.source) for r in rows] == [
        ("realsr_crops", "niqe", 4, "Paper B"), ("realsr_crops", "musiq", 4, "Paper B")]  # fmt: skip
    assert printed_decimals("0.7691") == 4 and printed_decimals("28") == 0 and printed_decimals("1.5e-3") == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dataset,method,metric,value,source,tabel\nD,M,psnr,1.0,S,2\n", r"row 1: unknown key 'tabel' \(did you mean 'table'"),
        ("dataset,method,metric,value,source\nD,M,psnr,abc,S\n", "row 1: could not convert string to float"),
        ("dataset,method,metric,value,source\nD,M,pnsr,1.0,S\n", r"row 1: unknown metric 'pnsr' \(did you mean 'psnr'"),
        ("dataset,method,metric,value,source\nD,M,psnr,1.0,\n", "row 1: .*missing required key 'source'"),
        ("dataset,method,metric,value,source\n", "holds no reported number"),
    ],
)
def test_bad_files_name_the_file_and_the_row(tmp_path, text, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    with pytest.raises(ReportedFileError, match=message) as info:
        read_reported(bad)
    assert str(bad) in str(info.value)


def test_the_shipped_files_parse_and_cite_their_sources():
    files = shipped_files()
    assert set(files) == {"vosr_appendix", "osediff_drealsr"}
    vosr = read_reported("vosr_appendix")
    niqe = [r for r in vosr if (r.dataset, r.method, r.metric) == ("RealSR", "GT", "niqe")]
    assert len(niqe) == 1 and niqe[0].value == 6.1167 and niqe[0].source_table == "2" and "2604.03225" in niqe[0].link
    assert {r.source_table for r in vosr} == {"1", "2", "4", "5"} and len(vosr) == 37
    osediff = read_reported("osediff_drealsr")
    per_image = [r for r in osediff if r.image]
    assert len(per_image) == 93 * 8 and all(r.source.startswith("OSEDiff") for r in osediff)
    canon = {r.metric: r.value for r in per_image if r.image == "Canon_10_x1"}
    assert canon["psnr"] == 29.260979 and canon["maniqa"] == 0.561399
    assert {r.metric: r.n for r in osediff if not r.image}["psnr"] == 93


# --------------------------------------------------------------------------- the store


def test_imported_rows_never_change_measured_means_and_import_is_idempotent(tmp_path):
    rng = np.random.default_rng(0)
    rows = [("D", f"i{k}", m, "psnr", float(v)) for m in ("a", "b") for k, v in enumerate(rng.normal(25, 1, 6))]
    store = _store(tmp_path, rows)
    before_scores = store.scores_frame()
    before = report.summary(before_scores, images=store.dataset_images_frame(), metrics=store.metrics_frame())
    records = parse_rows([{"dataset": "D", "method": "a", "metric": "psnr", "value": "99.0", "source": "P"},
                          {"dataset": "D", "method": "a", "metric": "psnr", "image": "i0", "value": "-5", "source": "P"},
                          {"dataset": "D", "method": "zz", "metric": "psnr", "value": "1", "source": "P"}],
                         where="test")  # fmt: skip
    assert import_reported(store, records) == 3
    assert import_reported(store, records) == 3  # the same rows again: updated in place, not added
    assert len(store.reported_frame()) == 3
    after_scores = store.scores_frame()
    pd.testing.assert_frame_equal(before_scores, after_scores)
    after = report.summary(after_scores, images=store.dataset_images_frame(), metrics=store.metrics_frame())
    pd.testing.assert_frame_equal(before, after)  # no mean, interval, n or rank moved
    assert "zz" not in set(after["method"])


# --------------------------------------------------------------------------- comparing


def test_compare_statuses_on_constructed_cases(tmp_path):
    measured = [("D", f"i{k}", "m", "psnr", 25.004 + k) for k in range(4)] + [("D", f"i{k}", "m", "ssim", 0.8) for k in range(4)]
    store = _store(tmp_path, measured)
    reported = _reported([
        # per image, printed with 2 decimals (25.00 for a measured 25.004): within PSNR's tolerance plus the
        # rounding of the printed value on every shared image (i3 is not reported)
        *({"dataset": "D", "method": "m", "metric": "psnr", "image": f"i{k}", "value": f"{25.0 + k:.2f}",
           "source": "S", "table": "per-image"} for k in range(3)),
        # a mean over the same 4 images, but off by 0.01: more than 1e-4 + half of the 4th decimal
        {"dataset": "D", "method": "m", "metric": "ssim", "value": "0.8100", "n": 4, "source": "S", "table": "1"},
        # a mean over 93 images: not comparable with the 4 measured ones
        {"dataset": "D", "method": "m", "metric": "psnr", "value": "26.50", "n": 93, "source": "S", "table": "1"},
        {"dataset": "D", "method": "other", "metric": "psnr", "value": "20.0", "source": "S", "table": "1"},
    ])  # fmt: skip
    out = compare_reported(reported, store.scores_frame())
    got = {(r.source_table, r.method, r.metric): r for r in out.itertuples(index=False)}
    per_image = got[("per-image", "m", "psnr")]
    assert per_image.status == REPRODUCED and per_image.reproduced and per_image.n_measured == 3
    assert per_image.max_abs_diff == pytest.approx(0.004, abs=1e-9)
    assert per_image.tolerance == pytest.approx(1e-3 + 5e-3)  # PSNR's reproduce_tol + half of 0.01
    assert got[("1", "m", "ssim")].status == DIFFERS and not got[("1", "m", "ssim")].reproduced
    assert got[("1", "m", "psnr")].status == OTHER_IMAGES and got[("1", "m", "psnr")].n_measured == 4
    assert got[("1", "other", "psnr")].status == NOT_MEASURED
    # the same reported mean over 4 images reproduces: 26.50 is the measured mean 26.504 as printed
    again = compare_reported(_reported([{"dataset": "D", "method": "m", "metric": "psnr", "value": "26.50", "n": 4,
                                         "source": "S"}]), store.scores_frame())  # fmt: skip
    assert again["status"].tolist() == [REPRODUCED]
    assert tolerance("niqe", 4) == pytest.approx(0.02 + 5e-5)


def _drealsr_subset(base: Path, stems=SUBSET) -> Path:
    root = base / "drealsr_osediff"
    for sub in ("test_HR", "test_LR", "osediff"):
        (root / sub).mkdir(parents=True)
        for stem in stems:
            shutil.copy(DREALSR / sub / f"{stem}.png", root / sub / f"{stem}.png")
    return root


def _measure(base: Path, metrics: list[str], stems=SUBSET) -> ResultsStore:
    from benchmark.runner import evaluate

    root = _drealsr_subset(base, stems)
    url = f"sqlite:///{base / 'results.db'}"
    evaluate([str(root)], [f"folder:{root / 'osediff'}"], metrics, store=url, progress=False, gt=False)
    store = ResultsStore(url)
    store.add_reported(r.row() for r in read_reported("osediff_drealsr", overrides={"dataset": "drealsr_osediff",
                                                                                     "method": "osediff"}))  # fmt: skip
    return store


def _badges(store: ResultsStore) -> dict[tuple[str, str], str]:
    out = compare_reported(store.reported_frame(), store.scores_frame(), images=store.dataset_images_frame(),
                           metrics_frame=store.metrics_frame())  # fmt: skip
    return {(r.source_table, r.metric): r.status for r in out.itertuples(index=False)}


def test_the_suite_reproduces_osediffs_published_drealsr_psnr_ssim_niqe(tmp_path):
    """The badge on real data: the harness's PSNR, SSIM and NIQE of DRealSR pairs (OSEDiff's own
    outputs) against OSEDiff's published per-image values for the same pairs; the published means
    are over all 93 pairs, so they are not comparable with a subset."""
    store = _measure(tmp_path, ["psnr", "ssim", "niqe"])
    badges = _badges(store)
    for metric in ("psnr", "ssim", "niqe"):
        assert badges[("per-image evaluation log", metric)] == REPRODUCED, metric
        assert badges[("published means", metric)] == OTHER_IMAGES
    assert badges[("per-image evaluation log", "lpips")] == NOT_MEASURED  # no weights here: not measured


def test_another_protocol_does_not_reproduce_the_published_psnr(tmp_path):
    """PSNR with a 4-pixel border crop (a common variant) is not OSEDiff's protocol: it differs."""
    store = _measure(tmp_path, ["psnr@crop_border=4"], stems=SUBSET[:1])
    assert _badges(store)[("per-image evaluation log", "psnr")] == DIFFERS


@pytest.mark.slow
def test_all_19_shipped_pairs_reproduce(tmp_path):
    stems = tuple(sorted(p.stem for p in (DREALSR / "osediff").glob("*.png")))
    assert len(stems) == 19
    badges = _badges(_measure(tmp_path, ["psnr", "ssim", "niqe"], stems=stems))
    assert all(badges[("per-image evaluation log", m)] == REPRODUCED for m in ("psnr", "ssim", "niqe"))


def test_import_reported_on_the_command_line(tmp_path, capsys, monkeypatch):
    from screensr.cli import main

    monkeypatch.delenv("SCREENSR_DEBUG", raising=False)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["bench", "import-reported", "vosr_appendix", "--store", url]) == 0
    assert "imported 37 reported number(s)" in capsys.readouterr().err
    assert len(ResultsStore(url).reported_frame()) == 37
    assert main(["bench", "import-reported", "--list"]) == 0
    assert "osediff_drealsr" in capsys.readouterr().out
    assert main(["bench", "import-reported", "nope.csv", "--store", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.csv does not exist" in err and "vosr_appendix" in err


def test_bench_report_reported_applies_the_report_filters(tmp_path, capsys):
    """`bench report --reported --dataset RealSR` shows the RealSR rows only; markdown drops the
    long citation cells that CSV keeps; a measured GT NIQE of 6.1167 carries the badge."""
    import io

    from screensr.cli import main

    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = _store(tmp_path, [("RealSR", f"i{k}", "GT", "niqe", 6.1167 + (0.01 if k % 2 else -0.01)) for k in range(4)])
    store.close()
    assert main(["bench", "import-reported", "vosr_appendix", "--store", url]) == 0
    capsys.readouterr()
    assert main(["bench", "report", "--store", url, "--reported", "--dataset", "RealSR", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(table["dataset"]) == {"RealSR"} and len(table) == 6 + 5 + 10  # Tables 1, 2 (RealSR GT) and 4
    niqe = table[(table["method"] == "GT") & (table["metric"] == "niqe")].iloc[0]
    assert niqe["status"] == REPRODUCED and niqe["measured"] == pytest.approx(6.1167)
    assert {"link", "protocol"} <= set(table.columns)
    assert main(["bench", "report", "--store", url, "--reported", "--metric", "niqe"]) == 0
    text = capsys.readouterr().out
    assert "arxiv.org" not in text and "| ScreenSR " in text and "| lpips " not in text


def test_bench_report_reported_works_before_anything_is_measured(tmp_path, capsys, monkeypatch):
    """The README's first step after an import: the published rows, each "not measured", instead
    of "no scores"; every other report still needs scores."""
    import io

    from screensr.cli import main

    monkeypatch.delenv("SCREENSR_DEBUG", raising=False)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["bench", "import-reported", "vosr_appendix", "--store", url]) == 0
    capsys.readouterr()
    assert main(["bench", "report", "--store", url, "--reported", "--dataset", "RealSR", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(table) == 6 + 5 + 10 and set(table["status"]) == {"not measured"}
    assert main(["bench", "report", "--store", url]) == 2
    assert "no scores in" in capsys.readouterr().err
