"""SIGKILL of ``bench run`` at several moments, then a rerun: exact resume.

Guarantee: a killed run loses at most the pair in flight; the store then holds whole pairs only,
the killed run is shown as ``interrupted`` (never as a silent partial result), and the rerun
computes exactly what is missing, giving the scores an uninterrupted run gives.
"""

from __future__ import annotations

import pandas as pd
import pytest

from benchmark.report import summary
from benchmark.runner import evaluate
from benchmark.store import ResultsStore

N_PAIRS = 6
METRICS = "psnr,ssim"  # two scores per pair


def _runs_started(db) -> bool:
    import sqlite3

    if not db.exists():
        return False
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("select count(*) from runs").fetchone()[0] > 0
    except sqlite3.OperationalError:
        return False
    finally:
        con.close()


@pytest.mark.parametrize(
    "moment",
    [
        "registered",  # datasets, methods and runs registered, no pair stored yet
        "last pair",  # all but the last pair stored
        pytest.param("first pair", marks=pytest.mark.slow),
        pytest.param("half", marks=pytest.mark.slow),
    ],
)
def test_sigkill_then_resume_is_exact(tmp_path, monkeypatch, moment, count_scores, kill, make_pairs, slow_method_env, start_run, wait_for):
    ds = make_pairs(tmp_path / "toy", n=N_PAIRS)
    db = tmp_path / "killed.db"
    env = slow_method_env(tmp_path, delay=0.5)
    for key in ("SCREENSR_TEST_PIDS", "SCREENSR_TEST_DELAY", "SCREENSR_HOME"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))  # the resume runs here, with the same method
    method = ["slow=py:slow_sr_mod:slow_nearest"]
    proc = start_run(f"""
        from benchmark.runner import evaluate
        evaluate([{str(ds)!r}], {method!r}, {METRICS!r}, store={f"sqlite:///{db}"!r}, progress=False, gt=False)
    """, env)
    per_pair = 2
    target = {"registered": None, "first pair": 1, "half": N_PAIRS // 2, "last pair": N_PAIRS - 1}[moment]
    if target is None:
        wait_for(lambda: _runs_started(db), what="the run to register", proc=proc)
    else:
        wait_for(lambda: count_scores(db) >= target * per_pair, what=f"{target} pair(s) stored", proc=proc)
    kill(proc)

    store = ResultsStore(db)
    before = store.scores_frame()
    assert len(before) % per_pair == 0 and len(before) < N_PAIRS * per_pair  # whole pairs only, not finished
    runs = store.runs_frame()
    assert runs["status"].tolist() == ["interrupted"]  # killed: shown as such, not as a partial success
    if len(before):
        s = summary(before, images=store.dataset_images_frame(), runs=runs)
        assert (~s["complete"]).all() and set(s["status"]) == {"interrupted"} and s["rank"].isna().all()

    resumed = evaluate([ds], method, METRICS, store=store, progress=False, gt=False)
    assert resumed.attrs["stats"]["computed"] == N_PAIRS * per_pair - len(before)
    after = store.scores_frame()
    kept = after.merge(before, on=["image", "metric"], suffixes=("", "_old"))
    assert (kept["created"] == kept["created_old"]).all()  # nothing stored was recomputed
    assert store.runs_frame()["status"].tolist() == ["complete"]
    clean = evaluate([ds], method, METRICS, store=ResultsStore("sqlite://"), progress=False, gt=False)
    cols = ["image", "method", "metric", "value"]
    pd.testing.assert_frame_equal(resumed[cols], clean[cols])
    s = summary(after, images=store.dataset_images_frame(), runs=store.runs_frame())
    assert s["complete"].all() and (s["n"] == N_PAIRS).all()
