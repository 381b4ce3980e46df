"""The results store: idempotent writes, provenance, filters, concurrent writers, export."""

from __future__ import annotations

import multiprocessing as mp

import pandas as pd
import pytest

from benchmark.store import (
    GT,
    DatasetRecord,
    MethodRecord,
    MetricRecord,
    ResultsStore,
    ScoreRecord,
    canonical_hash,
)


def _rec(image="a", method="bicubic", metric="psnr", value=1.0, mh="m1", ch="c1"):
    return ScoreRecord("demo", image, method, metric, value, "s1", mh, ch, {"pyiqa": "0.1.16"})


def test_writes_are_idempotent(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path / 'r.db'}")
    recs = [_rec(image=i, value=float(k)) for k, i in enumerate("abc")]
    assert store.add_scores(recs) == 3
    assert store.add_scores(recs) == 0
    assert store.add_scores(recs[:1] + [_rec(image="d")]) == 1
    frame = store.scores_frame()
    assert list(frame.columns[:5]) == ["dataset", "image", "method", "metric", "value"]
    assert frame["image"].tolist() == ["a", "b", "c", "d"]
    assert frame["versions"].iloc[0] == '{"pyiqa": "0.1.16"}'


def test_latest_row_wins_when_provenance_changes(tmp_path):
    store = ResultsStore(tmp_path / "r.db")  # a plain path is a SQLite file
    store.add_scores([_rec(value=1.0, mh="old")])
    store.add_scores([_rec(value=2.0, mh="new")])
    assert store.scores_frame()["value"].tolist() == [2.0]
    assert sorted(store.scores_frame(latest=False)["value"].tolist()) == [1.0, 2.0]


def test_filters_and_gt_pseudo_method():
    store = ResultsStore("sqlite://")
    store.add_scores(
        [_rec(method="bicubic"), _rec(method=GT, metric="niqe"), _rec(method="lanczos", metric="ssim")]
    )
    assert store.scores_frame(method=GT)["metric"].tolist() == ["niqe"]
    assert len(store.scores_frame(metric=["psnr", "ssim"])) == 2
    assert len(store.scores_frame(dataset="other")) == 0


def test_nan_is_refused():
    store = ResultsStore("sqlite://")
    with pytest.raises(ValueError, match="NaN"):
        store.add_scores([_rec(value=float("nan"))])


def test_descriptions_round_trip():
    store = ResultsStore("sqlite://")
    store.upsert_dataset(DatasetRecord("demo", "/data/demo", "generic", 4, 3, {"crop": None}))
    store.upsert_dataset(DatasetRecord("demo", "/data/demo", "generic", 4, 5, {}))
    m = MethodRecord("bicubic", "interpolation", "cv2 bicubic", {"kind": "bicubic"}, links=["https://x"])
    store.upsert_method(m)
    store.upsert_metric(MetricRecord("psnr", "FR", True, {"crop_border": 0}, "abc", "0.1.16"))
    d = store.datasets_frame()
    assert d.loc[0, "n_pairs"] == 5 and len(d) == 1
    mf = store.methods_frame()
    assert mf.loc[0, "config"] == {"kind": "bicubic"} and mf.loc[0, "links"] == ["https://x"]
    assert mf.loc[0, "config_hash"] == canonical_hash({"kind": "bicubic"})
    assert bool(store.metrics_frame().loc[0, "higher_is_better"]) is True
    with pytest.raises(ValueError, match="family"):
        MethodRecord("x", family="diffusion")


def test_bad_urls_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ResultsStore(f"sqlite:///{tmp_path / 'missing' / 'r.db'}")
    with pytest.raises(ValueError, match="sqlite:///"):
        ResultsStore("nosuchdb://x")


def test_export_formats(tmp_path):
    store = ResultsStore("sqlite://")
    store.add_scores([_rec(image="a"), _rec(image="b", value=3.0)])
    for ext in ("csv", "json", "parquet"):
        out = store.export(tmp_path / f"s.{ext}")
        back = {"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[ext](out)
        assert back["value"].tolist() == [1.0, 3.0]
    with pytest.raises(ValueError, match="unknown format"):
        store.export(tmp_path / "s.xlsx")


def _writer(url: str, worker: int) -> None:
    store = ResultsStore(url)
    for i in range(40):
        store.add_scores([_rec(image=f"{worker}-{i}", value=float(i)), _rec(image=f"shared-{i}")])


def test_concurrent_writers_sqlite_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    ResultsStore(url)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    frame = ResultsStore(url).scores_frame()
    assert len(frame) == 40 * 2 + 40  # shared rows written once
