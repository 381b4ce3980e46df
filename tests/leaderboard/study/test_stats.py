"""Vote statistics against hand-checked and published values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leaderboard.study import report as study_reports
from leaderboard.study import scores, stats
from leaderboard.study.config import ScreeningConfig
from leaderboard.study.screening import screening_table

# VOSR appendix A.5 (docs/study-and-leaderboard.md, "The study the product must support"): votes
# out of 300 per method, multi-step and one-step settings.
PAPER_MULTISTEP = {"VOSR-1.4B-ms": 70, "SeeSR": 61, "PASD": 55, "VOSR-0.5B-ms": 54, "StableSR": 40, "ResShift": 20}
PAPER_ONESTEP = {"VOSR-1.4B-os": 80, "PiSA-SR": 67, "OSEDiff": 64, "VOSR-0.5B-os": 62, "SinSR": 27}


def test_paper_counts_are_300_votes_per_setting() -> None:
    assert sum(PAPER_MULTISTEP.values()) == 300 and sum(PAPER_ONESTEP.values()) == 300


def _log(choices_per_image: list[list[str]], methods: list[str], criterion: str = "perceptual",
         shown: list[list[str]] | None = None) -> pd.DataFrame:  # fmt: skip
    """A vote log: image i gets the votes ``choices_per_image[i]``, participant j casts the j-th."""
    rows = []
    for i, choices in enumerate(choices_per_image):
        for j, choice in enumerate(choices):
            rows.append({
                "participant": j, "trial": i, "image_id": f"im{i:02d}", "criterion": criterion,
                "choice": choice, "shown": "|".join(shown[i] if shown else methods),
                "is_gold": False, "correct": False, "dwell_s": 2.0,
            })  # fmt: skip
    columns = ["participant", "trial", "image_id", "criterion", "choice", "shown", "is_gold", "correct", "dwell_s"]
    return pd.DataFrame(rows, columns=columns)


def _paper_log(counts: dict[str, int], criterion: str, seed: int = 0) -> pd.DataFrame:
    """10 participants x 30 images, with the paper's per-method totals, in random order."""
    choices = np.array([m for m, c in counts.items() for _ in range(c)])
    np.random.default_rng(seed).shuffle(choices)
    return _log(choices.reshape(30, 10).tolist(), list(counts), criterion)


def test_wilson_published_values() -> None:
    lo, hi = stats.wilson_interval(150, 300)
    assert (round(100 * lo, 1), round(100 * hi, 1)) == (44.4, 55.6)
    lo, hi = stats.wilson_interval(30, 300)
    assert (round(100 * lo, 1), round(100 * hi, 1)) == (7.1, 13.9)


@pytest.mark.parametrize(
    "counts,top_share",
    [(PAPER_MULTISTEP, 23.3), (PAPER_ONESTEP, 26.7)],
)
def test_paper_figure2_counts_reproduced(counts: dict[str, int], top_share: float) -> None:
    methods = list(counts)
    votes = pd.concat([_paper_log(counts, "perceptual", 1), _paper_log(counts, "consistency", 2)])
    table = stats.vote_table(votes, methods, ["perceptual", "consistency"], n_boot=200)
    assert list(table.columns[:7]) == ["method", "criterion", "votes", "n", "share", "ci_low", "ci_high"]
    for criterion in ("perceptual", "consistency"):
        sub = table[table["criterion"] == criterion]
        assert dict(zip(sub["method"], sub["votes"], strict=True)) == counts
        assert (sub["n"] == 300).all()
        assert sub["votes"].is_monotonic_decreasing
        assert round(100 * sub["share"].iloc[0], 1) == top_share
        assert ((sub["ci_low"] <= sub["share"]) & (sub["share"] <= sub["ci_high"])).all()
        assert ((sub["sim_low"] <= sub["ci_low"]) & (sub["ci_high"] <= sub["sim_high"])).all(), "simultaneous is wider"
        assert ((sub["boot_low"] <= sub["share"]) & (sub["share"] <= sub["boot_high"])).all()


def test_chi_square_hand_checked() -> None:
    votes = _paper_log(PAPER_MULTISTEP, "perceptual")
    res = stats.uniformity_test(votes, list(PAPER_MULTISTEP), ["perceptual"]).iloc[0]
    # expected 50 each: (20^2 + 11^2 + 5^2 + 4^2 + 10^2 + 30^2) / 50 = 1562 / 50
    assert res["chi2"] == pytest.approx(31.24)
    assert res["dof"] == 5 and res["p_value"] == pytest.approx(8.40e-6, rel=1e-2)


def test_chi_square_uses_the_subsets_shown() -> None:
    # a always shown with b (pair trials), c shown alone with a in a triple: expected counts follow
    methods = ["a", "b", "c"]
    shown = [["a", "b"], ["a", "b"], ["a", "b", "c"]]
    votes = _log([["a"] * 4, ["b"] * 4, ["c"] * 3 + ["a"]], methods, shown=shown)
    res = stats.uniformity_test(votes, methods, ["perceptual"]).iloc[0]
    expected = np.array([4 / 2 * 2 + 4 / 3, 4 / 2 * 2 + 4 / 3, 4 / 3])
    observed = np.array([5, 4, 3])
    assert res["chi2"] == pytest.approx(((observed - expected) ** 2 / expected).sum())


def test_pairwise_holm_hand_checked() -> None:
    from scipy.stats import binomtest

    votes = _paper_log(PAPER_MULTISTEP, "perceptual")
    res = stats.pairwise_tests(votes, list(PAPER_MULTISTEP), ["perceptual"], top=3)
    pairs = [("VOSR-1.4B-ms", "SeeSR", 70, 61), ("VOSR-1.4B-ms", "PASD", 70, 55), ("SeeSR", "PASD", 61, 55)]
    assert list(zip(res["method_a"], res["method_b"], res["votes_a"], res["votes_b"], strict=True)) == pairs
    p = np.array([binomtest(a, a + b).pvalue for *_, a, b in pairs])
    # Holm by hand: sort ascending, multiply by (m - rank), running maximum, cap at 1
    order = np.argsort(p)
    adjusted = np.maximum.accumulate(np.minimum(1, p[order] * np.array([3, 2, 1])))
    expected = np.empty(3)
    expected[order] = adjusted
    np.testing.assert_allclose(res["p_holm"], expected)
    assert not res["significant"].any()


def test_fleiss_kappa_published_example() -> None:
    # Fleiss' kappa worked example (Wikipedia, "Fleiss' kappa"): 10 subjects, 14 raters, kappa = 0.210
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]  # fmt: skip
    methods = ["m1", "m2", "m3", "m4", "m5"]
    choices = [[m for m, c in zip(methods, row, strict=True) for _ in range(c)] for row in table]
    res = stats.agreement(_log(choices, methods), methods, ["perceptual"]).iloc[0]
    assert res["statistic"] == "fleiss_kappa"
    assert res["value"] == pytest.approx(0.210, abs=5e-4)
    assert (res["units"], res["raters"]) == (10, 14)


def test_krippendorff_alpha_published_example_with_missing() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", nominal example with
    # missing values: 4 observers x 12 units, alpha = 0.743
    nan = None
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
    methods = ["m1", "m2", "m3", "m4", "m5"]
    rows = [
        {"participant": r, "trial": u, "image_id": f"u{u:02d}", "criterion": "perceptual",
         "choice": methods[v - 1], "shown": "|".join(methods), "is_gold": False}
        for r, observer in enumerate(data) for u, v in enumerate(observer) if v is not None
    ]  # fmt: skip
    res = stats.agreement(pd.DataFrame(rows), methods, ["perceptual"]).iloc[0]
    assert res["statistic"] == "krippendorff_alpha"
    assert res["value"] == pytest.approx(0.743, abs=5e-4)


def test_luce_model_equals_shares_with_full_sets_and_handles_subsets() -> None:
    methods = list(PAPER_ONESTEP)
    votes = _paper_log(PAPER_ONESTEP, "perceptual")
    assert not stats.varying_subsets(votes, methods)
    strengths = scores.luce_strengths(votes, methods, ["perceptual"], alpha=1e-9)
    np.testing.assert_allclose(strengths["strength"], np.array(list(PAPER_ONESTEP.values())) / 300, atol=1e-5)
    # pairs only: a beats b 3:1, b beats c 3:1 -> Bradley-Terry a/b = b/c = 3, so a:b:c = 9:3:1
    pairs = [["a", "b"]] * 4 + [["b", "c"]] * 4
    choices = [["a"], ["a"], ["a"], ["b"], ["b"], ["b"], ["b"], ["c"]]
    sub = _log(choices, ["a", "b", "c"], shown=pairs)
    assert stats.varying_subsets(sub, ["a", "b", "c"])
    s = scores.luce_strengths(sub, ["a", "b", "c"], ["perceptual"], alpha=1e-9)["strength"].to_numpy()
    np.testing.assert_allclose(s, np.array([9, 3, 1]) / 13, atol=1e-4)


def test_cluster_bootstrap_widens_under_participant_clustering() -> None:
    methods = ["a", "b"]
    # each participant always votes the same method: 5 "a" voters, 5 "b" voters, 30 images
    clustered = _log([["a"] * 5 + ["b"] * 5 for _ in range(30)], methods)
    # same totals, no clustering: each participant alternates
    mixed = _log([(["a", "b"] * 5 if i % 2 else ["b", "a"] * 5) for i in range(30)], methods)
    wide = stats.vote_table(clustered, methods, ["perceptual"], n_boot=1000, seed=3).iloc[0]
    narrow = stats.vote_table(mixed, methods, ["perceptual"], n_boot=1000, seed=3).iloc[0]
    assert wide["share"] == narrow["share"] == 0.5
    assert wide["ci_low"] == narrow["ci_low"], "Wilson ignores clustering"
    assert wide["boot_high"] - wide["boot_low"] > 3 * (narrow["boot_high"] - narrow["boot_low"])
    again = stats.vote_table(clustered, methods, ["perceptual"], n_boot=1000, seed=3).iloc[0]
    assert again["boot_low"] == wide["boot_low"], "seeded"


def test_gold_votes_excluded_and_participant_table() -> None:
    votes = _log([["a", "b"], ["a", "a"]], ["a", "b"])
    gold = pd.DataFrame([
        {"participant": 0, "trial": 9, "image_id": "g", "criterion": "perceptual", "choice": "__hr__",
         "shown": "__hr__|__bicubic__", "is_gold": True, "correct": True, "dwell_s": 4.0},
        {"participant": 1, "trial": 9, "image_id": "g", "criterion": "perceptual", "choice": "__bicubic__",
         "shown": "__hr__|__bicubic__", "is_gold": True, "correct": False, "dwell_s": 8.0},
    ])  # fmt: skip
    votes = pd.concat([votes, gold], ignore_index=True)
    table = stats.vote_table(votes, ["a", "b"], ["perceptual"], n_boot=50)
    assert table.set_index("method")["votes"].to_dict() == {"a": 3, "b": 1}
    people = screening_table(votes.assign(position=0, n_shown=2, rating=float("nan"))).set_index("participant")
    assert people.loc[0, "gold_accuracy"] == 1.0 and people.loc[1, "gold_accuracy"] == 0.0
    assert people.loc[1, "median_dwell_s"] == pytest.approx(2.0) and people.loc[1, "mean_dwell_s"] == pytest.approx(4.0)
    assert people["flagged"].tolist() == [False, True], "participant 1 failed the gold trial"
    fast = screening_table(votes.assign(position=0, n_shown=2, rating=float("nan")),
                           config=ScreeningConfig(min_response_s=3.0)).set_index("participant")
    assert fast.loc[0, "flagged"], "median dwell 2 s < 3 s"


def test_unknown_method_in_votes_rejected() -> None:
    with pytest.raises(ValueError, match=r"\['zeta'\]"):
        stats.vote_table(_log([["zeta"]], ["a", "b"]), ["a", "b"], ["perceptual"])


def test_report_formats_and_figure() -> None:
    methods = list(PAPER_MULTISTEP)
    votes = _paper_log(PAPER_MULTISTEP, "perceptual")
    report = study_reports.study_report("vosr-ms", votes, methods, ["perceptual"], n_boot=100, meta={"head_hash": "ab"})
    md = report.to_markdown()
    assert "| VOSR-1.4B-ms | perceptual | 70 | 300 | 23.3 |" in md and "fleiss_kappa" in md
    import json

    payload = json.loads(report.to_json())
    assert payload["votes"][0]["method"] == "VOSR-1.4B-ms" and payload["meta"]["head_hash"] == "ab"
    fig = study_reports.plot_votes(report.votes, title="multi-step")
    labels = [t.get_text().strip() for t in fig.axes[0].texts]
    assert "70 (23.3%)" in labels and "20 (6.7%)" in labels
    png = study_reports.figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_votes_give_empty_rows() -> None:
    empty = _log([], ["a", "b"])
    report = study_reports.study_report("s", empty, ["a", "b"], ["perceptual"], n_boot=10)
    assert report.votes["votes"].tolist() == [0, 0] and report.votes["share"].isna().all()
