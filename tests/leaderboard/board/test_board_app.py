"""Streamlit AppTest of every leaderboard page on a populated store (no browser, no server)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leaderboard.board import data, display, loading

APP = str(Path(__file__).resolve().parents[3] / "leaderboard" / "app.py")


@pytest.fixture(scope="module")
def env(board_env):
    return board_env


@pytest.fixture
def app(env, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SCREENSR_STORE", env.url)
    monkeypatch.delenv("SCREENSR_BOARD_ADMIN_SHA256", raising=False)
    monkeypatch.delenv("SCREENSR_BOARD_ADMIN_HASH", raising=False)

    def start(page: str | None = None, **query):
        at = AppTest.from_file(APP, default_timeout=90)
        for k, v in query.items():
            at.query_params[k] = v
        at.run()
        if page:
            at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return start


def _frame(at, column: str):
    """The one dataframe on the page that has ``column`` (AppTest exposes no dataframe keys)."""
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(frames) == 1, f"expected one table with a {column!r} column, found {len(frames)}"
    return frames[0]


def _lb(at):
    """The leaderboard table shown."""
    return _frame(at, "Mean rank ↓")


def _lb_text(at):
    """The leaderboard table as the browser draws it (the Styler's display text of each cell)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    frames = [d for d in at.dataframe if "Mean rank ↓" in d.value.columns]
    assert len(frames) == 1
    return convert_arrow_bytes_to_pandas_df(frames[0].proto.arrow_data.styler.display_values)


# --------------------------------------------------------------------------- leaderboard


def test_leaderboard_default_table_ranks_and_direction_headers(app, env):
    at = app()
    table = _lb(at)
    assert sorted(table["Method"]) == env.board.methods
    assert table["Rank"].tolist() == sorted(table["Rank"].tolist())
    for header in ("PSNR ↑", "SSIM ↑", "LPIPS ↓", "NIQE ↓", "MUSIQ ↑", "Mean rank ↓", "Status", "Images"):
        assert header in table.columns
    # one column per metric, drawn as "mean [low, high]" (the cell's value stays the numeric mean)
    assert not any("CI" in c for c in table.columns)
    board = loading.load_board(env.url)
    expected = board.table("DRealSR", display.select_metric_set(board.columns("DRealSR"), "Default"))
    shown = _lb_text(at)
    for i, method in enumerate(table["Method"]):
        row = expected[expected["method"] == method].iloc[0]
        want = f"{row['psnr']:.2f} [{row['psnr ci_low']:.2f}, {row['psnr ci_high']:.2f}]"
        assert shown["PSNR ↑"].iloc[i] == want
        assert row["psnr ci_low"] <= table["PSNR ↑"].iloc[i] <= row["psnr ci_high"]
    assert set(table["Status"]) == {"complete"}
    # the GT-quality table: NR metrics of the HR images of both datasets
    gt = at.table[0].value
    assert gt["Dataset"].tolist() == ["DRealSR", "RealSR"] and "NIQE ↓" in gt.columns and "PSNR ↑" not in gt.columns
    assert any("Best by aggregated rank" in m.value for m in at.markdown)


def test_a_warmed_board_draws_the_first_page_without_computing_rank_intervals(app, env, monkeypatch):
    # what the server computes in the background (BoardCache's refresh, Board.warm) is exactly
    # what the Leaderboard asks for before a filter is touched
    from benchmark import report
    from leaderboard.board import cache

    calls: list[tuple] = []
    real = report.rank_intervals
    monkeypatch.setattr(report, "rank_intervals", lambda *a, **k: calls.append(a) or real(*a, **k))
    cache.clear_board_cache()
    app()
    assert calls, "a cold board computes the table's rank intervals on the page"  # the control
    cache.clear_board_cache()
    board = cache.cached_board(env.url)
    board.warm()
    calls.clear()
    at = app()
    assert calls == []
    assert any("Best by aggregated rank" in m.value for m in at.markdown)
    # the warm-up covers every dataset's default table, and only those
    assert len([k for k in board._memo if k.startswith("ranks:")]) == len(board.dataset_names())


def test_leaderboard_ranking_matches_pure_function(app, env):
    at = app()
    board = loading.load_board(env.url)
    cols = display.select_metric_set(board.columns("DRealSR"), "Default")
    expected = data.leaderboard_table(board.summary, "DRealSR", cols, methods=board.methods)
    table = _lb(at)
    assert table["Method"].tolist() == expected["method"].tolist()
    np.testing.assert_allclose(table["Mean rank ↓"], expected["mean_rank"])
    np.testing.assert_allclose(table["MUSIQ ↑"], expected["musiq"])


def test_family_filter_changes_the_table(app):
    at = app()
    at.multiselect(key="lb_families").set_value(["GAN", "regression"]).run()
    table = _lb(at)
    assert table["Method"].tolist() == ["m02", "m03"]
    assert set(table["Family"]) == {"GAN", "regression"}
    assert table["Rank"].tolist() == [1, 2]  # ranks are recomputed among the shown methods


def test_metric_set_and_custom_metrics_change_columns(app):
    at = app()
    at.selectbox(key="lb_metric_set").set_value("Perceptual (no-reference)").run()
    cols = _lb(at).columns
    assert "NIQE ↓" in cols and "MUSIQ ↑" in cols and "PSNR ↑" not in cols and "LPIPS ↓" not in cols
    at.selectbox(key="lb_metric_set").set_value("Custom").run()
    at.multiselect(key="lb_metrics").set_value(["lpips"]).run()
    table = _lb(at)
    assert [c for c in table.columns if c.endswith(("↑", "↓")) and c != "Mean rank ↓"] == ["LPIPS ↓"]
    assert table["Method"].iloc[0] == "m00"  # lowest LPIPS first


def test_dataset_sort_search_and_ci_toggle(app):
    at = app()
    before = _lb(at)["PSNR ↑"].tolist()
    at.selectbox(key="lb_dataset").set_value("RealSR").run()
    assert _lb(at)["PSNR ↑"].tolist() != before
    at.selectbox(key="lb_sort").set_value("niqe").run()
    niqe = _lb(at)["NIQE ↓"].tolist()
    assert niqe == sorted(niqe)  # lower is better: best first
    at.selectbox(key="lb_sort").set_value("musiq").run()
    musiq = _lb(at)["MUSIQ ↑"].tolist()
    assert musiq == sorted(musiq, reverse=True)
    assert "[" in _lb_text(at)["MUSIQ ↑"].iloc[0]
    at.toggle(key="lb_ci").set_value(False).run()
    assert "[" not in _lb_text(at)["MUSIQ ↑"].iloc[0]  # the mean alone
    at.text_input(key="lb_search").set_value("m0").run()
    assert len(_lb(at)) == 6
    at.text_input(key="lb_search").set_value("m05").run()
    assert _lb(at)["Method"].tolist() == ["m05"]


def test_protocol_filter_keeps_only_scores_with_the_protocol_settings(app, env, tmp_path, monkeypatch):
    """Scores computed with other settings (here: synthetic hashes) never enter a protocol table."""
    from benchmark.metrics import get_metric
    from benchmark.store import ResultsStore, ScoreRecord

    at = app()
    at.selectbox(key="lb_protocol").set_value("classical").run()
    assert not at.exception
    assert any("protocol" in i.value for i in at.info) and not [d for d in at.dataframe if "Mean rank ↓" in d.value.columns]

    # a store where one method has PSNR with the pinned settings and another with crop_border=4
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = ResultsStore(url)
    # the crop_border=4 spec built without get_metric's option check (which imports pyiqa: seconds);
    # the hash is the same one get_metric("psnr", crop_border=4) gives
    spec = get_metric("psnr")
    pinned = spec.settings_hash
    cropped = dataclasses.replace(spec, options={**spec.options, "crop_border": 4}).settings_hash
    store.add_scores(
        [ScoreRecord("D", f"i{k}", "pinned", "psnr", 25.0 + k, pinned, "h1", f"c{k}") for k in range(3)]
        + [ScoreRecord("D", f"i{k}", "cropped", "psnr", 30.0 + k, cropped, "h2", f"c{k}") for k in range(3)]
    )
    monkeypatch.setenv("SCREENSR_STORE", url)
    at = app()
    assert sorted(_lb(at)["Method"]) == ["cropped", "pinned"]
    at.selectbox(key="lb_protocol").set_value("classical").run()
    assert _lb(at)["Method"].tolist() == ["pinned"]


def test_downloads_offer_csv_and_json(app):
    at = app()
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download CSV", "Download JSON"]


def test_empty_store_explains_how_to_fill_it(app, tmp_path, monkeypatch):
    monkeypatch.setenv("SCREENSR_STORE", f"sqlite:///{tmp_path / 'empty.db'}")
    at = app()
    assert any("holds no scores yet" in i.value and "screensr bench run" in i.value for i in at.info)


# --------------------------------------------------------------------------- plots


def test_plots_page_pareto_front_and_axis_choice(app, env):
    at = app("board/pages/plots.py")
    assert any(m.value == "**Pareto front:** m00, m01, m02" for m in at.markdown)
    points = _frame(at, "On front")
    assert points.set_index("Method")["On front"].to_dict() == {
        "m00": True, "m01": True, "m02": True, "m03": False, "m04": False, "m05": False
    }  # fmt: skip
    assert len(at.get("vega_lite_chart")) == 2  # the plane and the distributions
    # LPIPS (lower is better) on x: the front follows the new axis' direction
    at.selectbox(key="pl_x").set_value("lpips").run()
    points = _frame(at, "On front")
    assert "LPIPS ↓" in points.columns
    expected = data.pareto_front(points["LPIPS ↓"], points["MUSIQ ↑"], x_higher=False, y_higher=True)
    assert points["On front"].tolist() == expected.tolist()


def test_plots_distribution_methods(app):
    at = app("board/pages/plots.py")
    at.multiselect(key="pl_dist_methods").set_value(["m05"]).run()
    assert any("8 per-image scores" in c.value for c in at.caption)


# --------------------------------------------------------------------------- compare


def test_compare_shows_the_chosen_methods_losslessly(app, env):
    at = app("board/pages/compare.py")
    at.multiselect(key="cmp_methods").set_value(["m03", "m01"]).run()
    assert not at.exception
    images = at.get("image")
    captions = [c for img in images for c in img.captions]
    assert captions == ["LR input", "HR reference", "m03", "m01"]
    assert all(url.endswith(".png") for img in images for url in img.value)  # served as PNG, not JPEG
    scores = _frame(at, "Method")
    assert scores["Method"].tolist() == ["m03", "m01", "GT"]
    assert "PSNR ↑" in scores.columns


def test_compare_crop_controls_and_missing_output(app, env):
    at = app("board/pages/compare.py")
    at.selectbox(key="cmp_crop").set_value(32).run()
    at.selectbox(key="cmp_zoom").set_value(4).run()
    assert any("every pixel is a 4x4 block" in c.value for c in at.caption)
    # RealSR's methods have no outputs folder for it: an explicit message per method, no crash
    at.selectbox(key="cmp_dataset").set_value("RealSR").run()
    assert not at.exception
    assert any("no output of" in e.value or "is 64x64" in e.value or "not on this machine" in e.value for e in at.error) or at.get("image")


# --------------------------------------------------------------------------- methods


def test_methods_page_shows_description_config_provenance(app):
    at = app("board/pages/methods.py")
    at.selectbox(key="mt_method").set_value("m02").run()
    assert at.header[0].value == "m02"
    assert [m.value for m in at.metric] == ["GAN", "1.0", "2"]
    assert any("Synthetic method m02" in m.value for m in at.markdown)
    assert any("https://example.org/m02" in m.value for m in at.markdown)
    coverage = _frame(at, "Dataset")
    assert coverage["Dataset"].tolist() == ["DRealSR", "RealSR"]
    assert '"quality"' in at.json[0].value


def test_methods_page_opens_from_query_parameter(app):
    at = app("board/pages/methods.py", method="m04")
    assert at.selectbox(key="mt_method").value == "m04"


# --------------------------------------------------------------------------- submit (access)


def test_submit_is_disabled_without_admin_secret(app):
    at = app("board/pages/submit.py")
    assert any("Submissions are disabled" in w.value for w in at.warning)
    assert not at.get("file_uploader")


@pytest.fixture
def limiter(monkeypatch):
    """A fresh admin-login limiter (3 failures, 60 s lockout) on a fake clock, recording its delays."""
    from core.secrets import AttemptLimiter
    from leaderboard.board import submissions

    clock = {"now": 1000.0, "slept": []}
    fresh = AttemptLimiter(
        max_failures=3, lockout_s=60.0, delay_s=0.5, clock=lambda: clock["now"], sleep=clock["slept"].append
    )
    monkeypatch.setattr(submissions, "_limiter", fresh)
    return clock


def _login(at, secret: str):
    at.text_input(key="sub_secret").set_value(secret)
    at.button[0].click().run()
    return at


def test_submit_rejects_wrong_secret(app, monkeypatch, limiter):
    from core.secrets import hash_secret

    monkeypatch.setenv("SCREENSR_BOARD_ADMIN_HASH", hash_secret("right-secret"))
    at = _login(app("board/pages/submit.py"), "wrong")
    assert any("Wrong admin secret" in e.value for e in at.error)
    assert not at.get("file_uploader")
    assert limiter["slept"] == [0.5]  # every wrong secret costs the delay
    _login(at, "right-secret")
    assert at.get("file_uploader")


def test_submit_locks_a_session_out_after_repeated_wrong_secrets(app, monkeypatch, limiter):
    from core.secrets import hash_secret

    monkeypatch.setenv("SCREENSR_BOARD_ADMIN_HASH", hash_secret("right-secret"))
    at = app("board/pages/submit.py")
    for guess in ("a", "b", "c"):
        _login(at, guess)
    assert limiter["slept"] == [0.5, 0.5, 0.5]
    assert [e.value for e in at.error] == ["Too many wrong admin secrets from this session: try again in 60 s."]
    assert not at.get("text_input")  # the login form is gone while locked out
    limiter["now"] += 30.0
    at.run()
    assert [e.value for e in at.error] == ["Too many wrong admin secrets from this session: try again in 30 s."]

    # the right secret does not help during the lockout; another browser session is not locked
    other = _login(app("board/pages/submit.py"), "right-secret")
    assert other.get("file_uploader")
    limiter["now"] += 31.0
    at.run()
    _login(at, "right-secret")
    assert at.get("file_uploader")


def test_submit_refuses_an_unsalted_sha256_with_the_fix(app, monkeypatch):
    monkeypatch.setenv("SCREENSR_BOARD_ADMIN_SHA256", hashlib.sha256(b"right").hexdigest())
    at = app("board/pages/submit.py")
    assert any("unsalted sha256" in e.value and "screensr board hash-secret" in e.value for e in at.error)
    assert not at.get("text_input") and not at.get("file_uploader")


def test_every_page_renders(app):
    for page in ("board/pages/leaderboard.py", "board/pages/plots.py", "board/pages/compare.py", "board/pages/methods.py", "board/pages/submit.py"):
        at = app(page)
        assert not at.exception and not at.error, (page, [e.value for e in at.error])


# --------------------------------------------------------------------------- compare: datasets and versions


def test_compare_selects_the_methods_of_the_dataset_switched_to(two_sets, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SCREENSR_STORE", two_sets[0])
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("board/pages/compare.py").run()
    assert at.multiselect(key="cmp_methods").value == ["MySR", "a1", "a2"]
    at.multiselect(key="cmp_methods").set_value(["a2"]).run()
    at.selectbox(key="cmp_dataset").set_value("B").run()
    assert not at.exception
    assert at.multiselect(key="cmp_methods").value == ["MySR", "b1", "b2"]  # A's choice exists nowhere in B
    assert [c for img in at.get("image") for c in img.captions] == ["LR input", "HR reference", "MySR", "b1", "b2"]
    at.multiselect(key="cmp_methods").set_value(["b2", "MySR"]).run()
    at.selectbox(key="cmp_dataset").set_value("A").run()
    assert at.multiselect(key="cmp_methods").value == ["MySR"]  # what of the choice exists in A is kept


def test_compare_shows_the_outputs_of_the_version_scored_on_that_dataset(two_sets, monkeypatch):
    """MySR 2.0 is the newest version, but dataset A's scores are 1.0's: A's crops must be 1.0's
    pixels (HR + 3), and the page must say which version it shows."""
    from streamlit.testing.v1 import AppTest

    from leaderboard import crops
    from leaderboard.board import loading, versions

    url, folders = two_sets
    monkeypatch.setenv("SCREENSR_STORE", url)
    board = loading.load_board(url)
    for dataset, key, version in (("A", "v1", "1.0"), ("B", "v2", "2.0")):
        shown = versions.shown_versions(_score_versions(url), board.methods, dataset)
        assert shown["MySR"].versions == (version,) and shown["MySR"].outputs == str(folders[key])
        files = crops.dataset_images(board.datasets, dataset)["i0"]
        _, panels = crops.comparison_crops(files, {"MySR": crops.method_output(shown["MySR"].outputs, files)},
                                           (0.5, 0.5), 16, 1)  # fmt: skip
        np.testing.assert_array_equal(panels["MySR"], panels["HR"] + np.uint8(_offset(key)))
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("board/pages/compare.py").run()
    assert any("Versions shown: MySR 1.0" in c.value for c in at.caption)
    at.selectbox(key="cmp_dataset").set_value("B").run()
    assert any("Versions shown: MySR 2.0" in c.value for c in at.caption)


def _score_versions(url):
    from benchmark.store import ResultsStore

    store = ResultsStore(url)
    try:
        return store.score_versions()
    finally:
        store.close()


def _offset(key: str) -> int:
    # write_image_folders adds k + 1 for the k-th method of its folder list: v1 is 3rd in A, v2 5th in B
    return {"v1": 3, "v2": 5}[key]


def test_methods_page_lists_every_version_and_where_it_is_shown(two_sets, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SCREENSR_STORE", two_sets[0])
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("board/pages/methods.py").run()
    at.selectbox(key="mt_method").set_value("MySR").run()
    assert not at.exception
    assert [m.value for m in at.metric][:2] == ["GAN", "2.0"]  # the current version described
    history = _frame(at, "Shown on")
    assert history[["Version", "Shown on"]].values.tolist() == [["2.0", "B"], ["1.0", "A"]]
    assert history["Outputs"].tolist() == [str(two_sets[1]["v2"]), str(two_sets[1]["v1"])]


def test_leaderboard_says_which_version_each_method_shows(two_sets, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SCREENSR_STORE", two_sets[0])
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert any(c.value == "Versions shown: MySR 1.0 · a1 · a2" for c in at.caption), [c.value for c in at.caption]
    at.selectbox(key="lb_dataset").set_value("B").run()
    assert any(c.value.startswith("Versions shown: MySR 2.0 · b1") for c in at.caption)


def test_table_and_its_downloads_have_a_version_column(two_sets, monkeypatch):
    """The leaderboard (and its CSV/JSON, which are the same frame) says per row which version the
    dataset's scores come from: A shows MySR 1.0, B MySR 2.0 (the newest), not only in a caption."""
    import json

    from streamlit.testing.v1 import AppTest

    url, _ = two_sets
    board = loading.load_board(url)
    for dataset, version in (("A", "1.0"), ("B", "2.0")):
        table = board.table(dataset, board.columns(dataset))
        assert list(table.columns[:3]) == ["rank", "method", "version"]
        assert table.set_index("method").loc["MySR", "version"] == version
        rows = json.loads(data.table_json(table, dataset, board.columns(dataset)))["rows"]
        assert {r["method"]: r["version"] for r in rows}["MySR"] == version
        assert "version" in table.to_csv(index=False).splitlines()[0].split(",")
    monkeypatch.setenv("SCREENSR_STORE", url)
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert _lb(at).set_index("Method").loc["MySR", "Version"] == "1.0"
    at.selectbox(key="lb_dataset").set_value("B").run()
    assert _lb(at).set_index("Method").loc["MySR", "Version"] == "2.0"


def test_export_shows_the_version_each_dataset_shows(two_sets, tmp_path):
    """The static export: the version column, the crops of the version scored on the dataset (A's
    MySR crop is 1.0's pixels, HR + 3), and every version on the methods page."""
    from PIL import Image

    from leaderboard.board.export import ExportOptions, export_site

    url, folders = two_sets
    site = tmp_path / "site"
    export_site(url, site, ExportOptions(crops=1, crop_size=16, zoom=1, methods_per_crop=3))
    page = (site / "index.html").read_text()
    assert "<th class='t' title='the version whose scores this dataset shows'>Version</th>" in page
    assert pd.read_csv(site / "data" / "A" / "leaderboard.csv").set_index("method").loc["MySR", "version"] == 1.0
    assert pd.read_csv(site / "data" / "B" / "leaderboard.csv").set_index("method").loc["MySR", "version"] == 2.0
    crop_dir = next((site / "crops" / "A").iterdir())
    mine = np.asarray(Image.open(crop_dir / "MySR.png"))
    hr = np.asarray(Image.open(crop_dir / "HR.png"))
    np.testing.assert_array_equal(mine, hr + np.uint8(_offset("v1")))
    assert "MySR 1.0" in page
    methods = (site / "methods.html").read_text()
    assert methods.count("<td data-v='2.0'>2.0</td>") == 1 and methods.count("<td data-v='1.0'>1.0</td>") == 1


def test_bench_report_labels_versions(two_sets, capsys):
    from screensr.cli import main

    url, _ = two_sets
    assert main(["bench", "report", "--store", url, "--format", "csv", "--n-boot", "20"]) == 0
    rep = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"version": str})
    assert rep.columns[-1] == "version"
    got = rep[rep["method"] == "MySR"].set_index("dataset")["version"].to_dict()
    assert got == {"A": "1.0", "B": "2.0"}
    assert main(["bench", "report", "--store", url, "--format", "csv", "--ranks"]) == 0
    ranks = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"version": str})
    assert ranks[ranks["method"] == "MySR"].set_index("dataset")["version"].to_dict() == {"A": "1.0", "B": "2.0"}


# --------------------------------------------------------------------------- rank intervals, NTIRE score, reported rows


@pytest.fixture(scope="module")
def confidence_store(tmp_path_factory):
    """Methods a and b identical, c clearly worse, on the six NTIRE 2025 components (with metric
    rows), and two reported numbers: one the store reproduces, one it does not."""
    from benchmark.reported import parse_rows
    from benchmark.store import DatasetRecord, MethodRecord, MetricRecord, ResultsStore, ScoreRecord

    base = tmp_path_factory.mktemp("confidence")
    url = f"sqlite:///{base / 'r.db'}"
    store = ResultsStore(url)
    specs = {"lpips": ("FR", False, 0.30, 0.05), "dists": ("FR", False, 0.20, 0.05), "clipiqa": ("NR", True, 0.6, -0.1),
             "maniqa_koniq": ("NR", True, 0.5, -0.1), "musiq": ("NR", True, 60.0, -10.0), "niqe": ("NR", False, 5.0, 1.0)}  # fmt: skip
    for name, (kind, higher, _, _) in specs.items():
        store.upsert_metric(MetricRecord(name, kind, higher, {}, f"s-{name}", "0.1.16"))
    store.upsert_dataset(DatasetRecord("D", "/nowhere", "generic", 4, 12))
    rng = np.random.default_rng(5)
    image_effect = rng.normal(0.0, 0.02, 12)
    records = []
    for method, worse in (("a", 0.0), ("b", 0.0), ("c", 1.0)):
        store.upsert_method(MethodRecord(method, "GAN"))
        for name, (_, _, value, step) in specs.items():
            records += [ScoreRecord("D", f"i{k:02d}", method, name, value + worse * step + image_effect[k] * abs(value),
                                    f"s-{name}", "h", f"c{k}") for k in range(12)]  # fmt: skip
    store.add_scores(records)
    mean_a = float(np.mean([0.30 + e * 0.30 for e in image_effect]))
    store.add_reported(r.row() for r in parse_rows([
        {"dataset": "D", "method": "a", "metric": "lpips", "value": f"{mean_a:.4f}", "n": 12, "source": "Paper", "table": "1"},
        {"dataset": "D", "method": "c", "metric": "lpips", "value": "0.2000", "n": 12, "source": "Paper", "table": "1"},
    ], where="test"))  # fmt: skip
    store.close()
    return url


def test_leaderboard_shows_shared_ranks_ntire_score_and_reported_rows(confidence_store, monkeypatch):
    """Issue 15: identical methods share rank 1-2 on the board, the NTIRE 2025 score is shown with
    its components, and reported numbers stand beside the measured ones with the badge."""
    from streamlit.testing.v1 import AppTest

    from benchmark.derived import derived_table

    monkeypatch.setenv("SCREENSR_STORE", confidence_store)
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="lb_metric_set").set_value("All").run()
    table = _lb(at).set_index("Method")
    assert table.loc["a", "Rank (95% interval)"] == table.loc["b", "Rank (95% interval)"] == "1-2"
    assert table.loc["c", "Rank (95% interval)"] == "3"
    ntire = _frame(at, "Score ↑").set_index("Method")
    board = loading.load_board(confidence_store)
    expected = derived_table(board.scores, "ntire2025").set_index("method")
    assert ntire.loc["a", "Score ↑"].startswith(f"{expected.loc['a', 'score']:.4f} [")
    assert ntire.loc["c", "Rank"] == "3"
    reported = _frame(at, "Measured - reported").set_index("Method")
    assert reported.loc["a", ""] == "✓" and reported.loc["a", "Status"] == "reproduced"
    assert reported.loc["c", ""] == "" and reported.loc["c", "Status"] == "differs"
    assert not [d for d in at.dataframe if "Aggregated" in d.value.columns]  # the details wait for the toggle
    at.toggle(key="lb_rank_details").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    boxes = _frame(at, "Aggregated").set_index("Method")
    assert boxes.loc["a", "Aggregated"] == "1-2" and boxes.loc["c", "LPIPS ↓"] == "3"
    pairwise = [d.value for d in at.dataframe if "method" in d.value.columns and "c" in d.value.columns]
    assert len(pairwise) == 1 and pairwise[0].set_index("method").loc["a", "b"] == 1.0


def test_export_writes_rank_intervals_ntire_and_reported(confidence_store, tmp_path):
    from leaderboard.board.export import ExportOptions, export_site

    site = tmp_path / "site"
    export_site(confidence_store, site, ExportOptions(crops=0))
    page = (site / "index.html").read_text()
    assert "Rank (95% interval)" in page and "NTIRE 2025 perceptual score" in page and "Reported vs measured" in page
    boxes = pd.read_csv(site / "data" / "D" / "rank_intervals.csv", dtype={"shared_rank": str})
    agg = boxes[boxes["metric"] == "aggregate"].set_index("method")
    assert agg.loc["a", "shared_rank"] == "1-2"
    compared = pd.read_csv(site / "data" / "D" / "reported_vs_measured.csv").set_index("method")
    assert bool(compared.loc["a", "reproduced"]) and not bool(compared.loc["c", "reproduced"])
    assert len(pd.read_csv(site / "data" / "D" / "ntire2025.csv")) == 3
    table = pd.read_csv(site / "data" / "D" / "leaderboard.csv", dtype={"shared_rank": str}).set_index("method")
    assert table.loc["a", "shared_rank"] == "1-2"
