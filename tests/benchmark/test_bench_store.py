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


# --------------------------------------------------------------------------- method versions

# The methods table as releases before method versions wrote it (``name`` alone unique, no owner).
OLD_METHODS_DDL = """CREATE TABLE methods (
    name VARCHAR(200) NOT NULL, family VARCHAR(30) NOT NULL, description TEXT NOT NULL,
    config TEXT NOT NULL, config_hash VARCHAR(64) NOT NULL, version VARCHAR(100) NOT NULL,
    outputs TEXT NOT NULL, links TEXT NOT NULL, updated DATETIME NOT NULL, PRIMARY KEY (name))"""


def _old_store(path) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute(OLD_METHODS_DDL)
    conn.execute(
        "INSERT INTO methods VALUES ('bicubic', 'interpolation', 'OpenCV bicubic', '{\"kind\": \"resize\"}', "
        "'abc', 'opencv 4.10', '/cache/bicubic', '[\"https://x\"]', '2025-01-02 03:04:05')"
    )
    conn.execute(
        "INSERT INTO methods VALUES ('MySR', 'GAN', 'theirs', '{}', 'def', '1.0', '/sub/MySR/1.0', '[]', "
        "'2025-02-03 04:05:06')"
    )
    conn.commit()
    conn.close()


def test_a_new_version_is_a_new_row_beside_the_old_one():
    store = ResultsStore("sqlite://")
    v1 = MethodRecord("MySR", "GAN", "first", {"kind": "folder", "folder": "/s/1.0"}, "1.0", "/s/1.0", owner="ana")
    v2 = MethodRecord("MySR", "GAN", "second", {"kind": "folder", "folder": "/s/2.0"}, "2.0", "/s/2.0", owner="ana")
    store.upsert_method(v1)
    store.upsert_method(v2)
    every = store.methods_frame(all_versions=True)
    assert every[["name", "version", "outputs", "owner"]].values.tolist() == [
        ["MySR", "2.0", "/s/2.0", "ana"],  # the current version first
        ["MySR", "1.0", "/s/1.0", "ana"],
    ]
    assert every.set_index("version").loc["1.0", "config_hash"] == v1.config_hash  # untouched by v2
    current = store.methods_frame()
    assert current["version"].tolist() == ["2.0"] and current["description"].tolist() == ["second"]
    store.upsert_method(dataclass_replace(v1, description="first, edited"))  # same (name, version): an update
    assert len(store.methods_frame(all_versions=True)) == 2


def dataclass_replace(rec, **changes):
    import dataclasses

    return dataclasses.replace(rec, **changes)


def test_a_name_keeps_its_owner():
    from benchmark.store import MethodOwnershipError

    store = ResultsStore("sqlite://")
    store.upsert_method(MethodRecord("bicubic", "interpolation", version="opencv 4.10"))  # the suite's
    store.upsert_method(MethodRecord("MySR", "GAN", version="1.0", owner="ana"))
    with pytest.raises(MethodOwnershipError, match="belongs to the suite's own methods"):
        store.upsert_method(MethodRecord("bicubic", "GAN", version="2.0", outputs="/evil", owner="eve"))
    with pytest.raises(MethodOwnershipError, match="belongs to another submitter"):
        store.upsert_method(MethodRecord("MySR", "GAN", version="1.0", outputs="/evil", owner="eve"))
    with pytest.raises(MethodOwnershipError, match="belongs to another submitter"):
        store.upsert_method(MethodRecord("MySR", "GAN", version="9.0"))  # not even the suite's runs
    every = store.methods_frame(all_versions=True)
    assert every[["name", "version", "owner", "outputs"]].values.tolist() == [
        ["MySR", "1.0", "ana", ""],
        ["bicubic", "opencv 4.10", "", ""],
    ]


def test_a_store_of_the_old_schema_is_migrated_keeping_every_row(tmp_path):
    from sqlalchemy import inspect

    path = tmp_path / "old.db"
    _old_store(path)
    store = ResultsStore(path)
    frame = store.methods_frame(all_versions=True)
    assert frame[["name", "version", "family", "outputs", "owner"]].values.tolist() == [
        ["MySR", "1.0", "GAN", "/sub/MySR/1.0", ""],
        ["bicubic", "opencv 4.10", "interpolation", "/cache/bicubic", ""],
    ]
    assert frame.set_index("name").loc["bicubic", "links"] == ["https://x"]
    assert str(frame.set_index("name").loc["bicubic", "updated"]) == "2025-01-02 03:04:05"
    insp = inspect(store.engine)
    assert insp.get_pk_constraint("methods")["constrained_columns"] == ["name", "version"]
    assert "methods_before_versions" not in insp.get_table_names()
    # versions are rows now, and reopening does not migrate twice
    store.upsert_method(MethodRecord("bicubic", "interpolation", version="opencv 4.11"))
    store.close()
    again = ResultsStore(path)
    assert len(again.methods_frame(all_versions=True)) == 3


def test_a_failed_migration_leaves_the_old_table(tmp_path, monkeypatch):
    import sqlite3

    path = tmp_path / "old.db"
    _old_store(path)

    def broken(self, conn):
        conn.exec_driver_sql("ALTER TABLE methods RENAME TO methods_before_versions")
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(ResultsStore, "_rebuild_methods", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        ResultsStore(path)
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "methods" in tables and "methods_before_versions" not in tables
    assert conn.execute("SELECT count(*) FROM methods").fetchone() == (2,)
    conn.close()


def _open_store(url: str) -> None:
    ResultsStore(url).close()


def test_two_processes_opening_an_old_store_migrate_it_once(tmp_path):
    path = tmp_path / "old.db"
    _old_store(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_open_store, args=(f"sqlite:///{path}",)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    frame = ResultsStore(path).methods_frame(all_versions=True)
    assert sorted(frame["name"]) == ["MySR", "bicubic"]


def test_score_versions_say_which_version_the_current_scores_come_from():
    store = ResultsStore("sqlite://")
    v1 = MethodRecord("MySR", "GAN", config={"kind": "folder", "folder": "/s/1.0"}, version="1.0", outputs="/s/1.0", owner="ana")
    v2 = MethodRecord("MySR", "GAN", config={"kind": "folder", "folder": "/s/2.0"}, version="2.0", outputs="/s/2.0", owner="ana")
    bic = MethodRecord("bicubic", "interpolation", config={"kind": "resize"}, version="opencv 4.10")
    for rec in (v1, bic, v2):
        store.upsert_method(rec)
    store.add_scores(
        [_rec(image=i, method="MySR", mh=v1.config_hash) for i in "abc"]
        + [_rec(image=i, method="MySR", metric="ssim", mh=v1.config_hash) for i in "abc"]
        + [_rec(image=i, method="bicubic", mh=bic.config_hash) for i in "abc"]
        + [_rec(image="a", method=GT, metric="niqe")]
    )
    got = store.score_versions()
    assert got[["dataset", "method", "version", "outputs", "images"]].values.tolist() == [
        ["demo", "MySR", "1.0", "/s/1.0", 3],
        ["demo", "bicubic", "opencv 4.10", "", 3],
    ]
    # version 2.0 rescored psnr only: its psnr is current, 1.0's ssim still is: both are listed
    store.add_scores([_rec(image=i, method="MySR", mh=v2.config_hash, value=9.0) for i in "abc"])
    got = store.score_versions("demo")
    assert got[got["method"] == "MySR"][["version", "images"]].values.tolist() == [["1.0", 3], ["2.0", 3]]
    assert store.score_versions("other").empty


# --------------------------------------------------------------------------- registration races


def _register_at_once(url: str, name: str, n: int) -> list[BaseException]:
    """``n`` threads open the store and register the same dataset, metric and method at the same
    moment (a barrier), as the processes of synchronised start-ups do."""
    import threading

    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def one() -> None:
        store = ResultsStore(url)
        barrier.wait()
        try:
            store.upsert_dataset(DatasetRecord(name, "/d", "generic", 4, 3))
            store.upsert_metric(MetricRecord(f"m-{name}", "FR", True, {}, "s", "0.1.16"))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_concurrent_first_registration_is_race_free(tmp_path):
    """Select-then-insert let two start-ups both insert the same name (IntegrityError, 39 of 90
    synchronised start-ups); the upsert is one statement now."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    ResultsStore(url).close()
    errors = [e for k in range(12) for e in _register_at_once(url, f"ds{k}", 6)]
    assert errors == []
    store = ResultsStore(url)
    assert sorted(store.datasets_frame()["name"]) == sorted(f"ds{k}" for k in range(12))
    assert len(store.metrics_frame()) == 12


def test_upsert_updates_the_description():
    store = ResultsStore("sqlite://")
    store.upsert_dataset(DatasetRecord("d", "/a", "generic", 4, 3, {"x": 1}))
    store.upsert_dataset(DatasetRecord("d", "/b", "capture", 2, 7, {"x": 2}))
    row = store.datasets_frame().iloc[0]
    assert (row["root"], row["layout"], row["scale"], row["n_pairs"], row["config"]) == ("/b", "capture", 2, 7, {"x": 2})


# --------------------------------------------------------------------------- dataset images and runs


def test_dataset_images_are_replaced_not_accumulated():
    store = ResultsStore("sqlite://")
    store.set_dataset_images("d", {"a": True, "b": True, "c": False})
    store.set_dataset_images("e", {"a": True})
    store.set_dataset_images("d", {"a": True, "c": True, "n": True})  # b removed, c gained an HR
    got = store.dataset_images_frame("d")
    assert got[["image", "has_reference"]].values.tolist() == [["a", True], ["c", True], ["n", True]]
    assert store.dataset_images_frame()["dataset"].tolist().count("e") == 1
    # 1200 images: more than one IN (...) chunk both ways
    many = {f"i{k:04d}": True for k in range(1200)}
    store.set_dataset_images("d", many)
    assert len(store.dataset_images_frame("d")) == 1200
    store.set_dataset_images("d", {"i0000": True})
    assert store.dataset_images_frame("d")["image"].tolist() == ["i0000"]


def test_runs_first_outcome_wins_and_killed_runs_show_interrupted():
    store = ResultsStore("sqlite://")
    store.start_runs("r1", "d", [("a", "ha"), ("b", "hb")], n_pairs=3, metrics=["psnr"], unavailable=["musiq"])
    store.start_runs("r1", "d", [("a", "ha")], n_pairs=3, metrics=["psnr"])  # another rank: a no-op
    assert store.finish_runs("r1", "d", ["a"], "failed", error="pair 'x': boom") == 1
    assert store.finish_runs("r1", "d", ["a", "b"], "aborted", error="stopped") == 1  # only b was running
    runs = store.runs_frame().set_index("method")
    assert runs.loc["a", "status"] == "failed" and runs.loc["a", "error"] == "pair 'x': boom"
    assert runs.loc["b", "status"] == "aborted" and runs.loc["a", "unavailable"] == ["musiq"]
    with pytest.raises(ValueError, match="run status"):
        store.finish_runs("r1", "d", ["a"], "done")
    # a newer run of the same method replaces it in the latest view; a dead process shows interrupted
    store.start_runs("r2", "d", [("a", "ha")], n_pairs=3, metrics=["psnr"])
    from sqlalchemy import update

    with store.engine.begin() as conn:
        conn.execute(update(store.runs).where(store.runs.c.run_id == "r2").values(pid=2**22 + 12345))
    latest = store.runs_frame().set_index("method")
    assert latest.loc["a", "run_id"] == "r2" and latest.loc["a", "status"] == "interrupted"
    assert len(store.runs_frame(latest=False)) == 3


def test_store_url_that_is_not_a_database_is_one_error_line(tmp_path, capsys):
    from benchmark.store import StoreError
    from screensr.cli import main

    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    text = tmp_path / "notes.txt"
    text.write_text("these are notes, not a database\n" * 20)
    for target, needle in ((png, "not a database"), (text, "not a database"), (tmp_path, "is a folder")):
        with pytest.raises(StoreError, match=needle):
            ResultsStore(target)
        assert main(["bench", "report", "--store", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob("photo.png-*"))


def test_store_error_hides_the_password():
    from benchmark.store import StoreError

    with pytest.raises((StoreError, ValueError), match=r"u:\*\*\*@") as info:  # ValueError: no psycopg
        ResultsStore("postgresql+psycopg://u:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in str(info.value)
