"""Choice-model scores, concordance and voter screening against independent references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leaderboard.study.config import ScreeningConfig
from leaderboard.study.report import study_report
from leaderboard.study.scores import choice_scores, concordance, kendalls_w
from leaderboard.study.screening import RULES, apply_exclusions, parse_rules, screening_table


def _pairwise_log(outcomes: list[tuple[str, str, str]], participants: int = 4) -> pd.DataFrame:
    """Pairwise votes ``(a, b, winner or "")`` spread over ``participants``."""
    rows = []
    for k, (a, b, winner) in enumerate(outcomes):
        rows.append({"participant": k % participants, "trial": k, "image_id": f"im{k % 3}", "criterion": "q",
                     "shown": f"{a}|{b}", "choice": winner, "position": [a, b].index(winner) if winner else -1,
                     "n_shown": 2, "is_gold": False, "correct": False, "rating": np.nan, "ranking": "",
                     "dwell_s": 3.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_bradley_terry_matches_an_independent_maximum_likelihood_fit() -> None:
    """choix's fit (with ties as half wins) against scipy minimising the BT negative log-likelihood."""
    from scipy.optimize import minimize

    wins = {("x", "y"): (7, 3), ("y", "z"): (6, 4), ("x", "z"): (8, 2)}
    outcomes = []
    for (a, b), (wa, wb) in wins.items():
        outcomes += [(a, b, a)] * wa + [(a, b, b)] * wb
    outcomes += [("x", "y", "")] * 2  # two ties: half a win each way
    methods = ["x", "y", "z"]
    table = choice_scores(_pairwise_log(outcomes), methods, ["q"], "pairwise", n_boot=20, alpha=1e-9)
    got = table.set_index("method")["strength"].reindex(methods).to_numpy()

    def nll(theta: np.ndarray) -> float:
        t = {m: v for m, v in zip(methods, np.r_[0.0, theta], strict=True)}
        total = 0.0
        for a, b, w in outcomes:
            p = 1 / (1 + np.exp(t[b] - t[a]))
            total -= (np.log(p) + np.log(1 - p)) / 2 if w == "" else (np.log(p) if w == a else np.log(1 - p))
        return total

    theta = np.r_[0.0, minimize(nll, np.zeros(2)).x]
    expected = np.exp(theta) / np.exp(theta).sum()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    ranks = table.set_index("method")["rank"]
    assert ranks["x"] == 1 and (table["ci_low"] <= table["strength"]).all()


def test_arena_rank_rule() -> None:
    """Rank = 1 + methods whose lower bound is above this one's upper bound: a clearly worse method
    ranks below, methods that cannot be told apart share a rank."""
    outcomes = [("x", "y", "x"), ("x", "y", "y")] * 20 + [("x", "z", "x")] * 40 + [("y", "z", "y")] * 40
    table = choice_scores(_pairwise_log(outcomes, participants=8), ["x", "y", "z"], ["q"], "pairwise", n_boot=100)
    ranks = table.set_index("method")["rank"]
    assert ranks["x"] == ranks["y"] == 1 and ranks["z"] == 3


def test_kendalls_w_against_friedman() -> None:
    """Without ties W = chi2_Friedman / (m (n - 1)) (Kendall & Babington Smith 1939)."""
    from scipy.stats import friedmanchisquare

    rng = np.random.default_rng(4)
    ranks = np.array([rng.permutation(5) + 1 for _ in range(7)], dtype=float)
    stat = friedmanchisquare(*ranks.T).statistic
    assert kendalls_w(ranks) == pytest.approx(stat / (7 * 4))
    assert kendalls_w(np.array([[1, 2, 3], [3, 2, 1]])) == pytest.approx(0.0)


def test_concordance_per_image_and_its_test() -> None:
    rows = []
    for image, rankings in {"a": ["x|y|z", "x|y|z", "x|z|y"], "b": ["z|y|x", "y|z|x", "x|y|z"]}.items():
        for p, r in enumerate(rankings):
            rows.append({"participant": p, "image_id": image, "criterion": "q", "ranking": r, "is_gold": False})
    row = concordance(pd.DataFrame(rows), ["q"]).iloc[0]
    w_a = kendalls_w(np.array([[1, 2, 3], [1, 2, 3], [1, 3, 2]], dtype=float))
    w_b = kendalls_w(np.array([[3, 2, 1], [3, 1, 2], [1, 2, 3]], dtype=float))
    assert row["images"] == 2 and row["mean_w"] == pytest.approx((w_a + w_b) / 2)
    assert row["chi2"] == pytest.approx(3 * 2 * w_a + 3 * 2 * w_b) and row["dof"] == 4


# --------------------------------------------------------------------------- screening


def _people_log() -> pd.DataFrame:
    """Best-of-3 votes of seven participants of five kinds on 12 trials (+ 2 gold trials each); the
    screen order rotates, so each method sits at each position equally often."""
    methods = ["m1", "m2", "m3"]
    rows = []
    kinds = {0: "honest", 1: "honest", 2: "honest", 3: "fast", 4: "straight", 5: "gold-failer", 6: "contrarian"}
    for participant, kind in kinds.items():
        for trial in range(14):
            shown = methods[trial % 3:] + methods[: trial % 3]
            gold = trial >= 12
            if gold:
                shown = ["__hr__", "__bicubic__"]
            if kind == "straight":
                position = 0
            elif kind == "contrarian" and not gold:
                position = shown.index("m3")
            elif gold:
                position = shown.index("__bicubic__" if kind == "gold-failer" else "__hr__")
            else:
                position = shown.index("m1")
            choice = shown[position]
            rows.append({"participant": participant, "trial": trial, "image_id": f"im{trial}", "criterion": "q",
                         "shown": "|".join(shown), "n_shown": len(shown), "position": position, "choice": choice,
                         "is_gold": gold, "correct": gold and choice == "__hr__", "rating": np.nan, "ranking": "",
                         "dwell_s": 0.3 if kind == "fast" else 4.0 + trial % 3})  # fmt: skip
    return pd.DataFrame(rows)


def test_screening_flags_each_kind_of_careless_voter() -> None:
    table = screening_table(_people_log()).set_index("participant")
    flags = table["flags"].to_dict()
    assert flags[0] == flags[1] == flags[2] == ""
    assert flags[3] == "too-fast"
    assert flags[4] == "straight-lining,position-bias" and table.loc[4, "same_position_share"] == 1.0
    assert flags[5] == "failed-gold" and table.loc[5, "gold_accuracy"] == 0.0
    assert flags[6] == "low-agreement" and table.loc[6, "agreement"] == 0.0
    assert table.loc[0, "agreement"] == 1.0 and table.loc[0, "chance"] == pytest.approx(1 / 3)
    looser = screening_table(_people_log(), config=ScreeningConfig(min_response_s=0.1)).set_index("participant")
    assert looser.loc[3, "flags"] == "", "the threshold comes from the study's screening settings"


def test_exclusions_change_the_report_and_say_who_and_why() -> None:
    votes = _people_log()
    methods = ["m1", "m2", "m3"]
    report = study_report("s", votes, methods, ["q"], n_boot=50, fit_boot=10, exclude=["failed-gold", "too-fast"])
    assert report.excluded.set_index("participant")["reasons"].to_dict() == {3: "too-fast", 5: "failed-gold"}
    kept_n = report.votes.set_index("method").loc["m1", "n"]
    all_n = report.unfiltered.votes.set_index("method").loc["m1", "n"]
    assert (kept_n, all_n) == (5 * 12, 7 * 12)
    md = report.to_markdown()
    assert "## Exclusions (failed-gold, too-fast): 2 participant(s) excluded" in md
    assert "| 3 | too-fast |" in md and "## Without exclusions" in md
    plain = study_report("s", votes, methods, ["q"], n_boot=50, fit_boot=10)
    assert plain.excluded is None and plain.unfiltered is None and "Exclusions" not in plain.to_markdown()
    kept, excluded = apply_exclusions(votes, screening_table(votes), ["low-agreement"])
    assert excluded["participant"].tolist() == [6] and 6 not in set(kept["participant"])


def test_exclusion_rules_are_checked() -> None:
    assert parse_rules("failed-gold, too-fast") == ("failed-gold", "too-fast")
    assert parse_rules("all") == RULES
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'too-fast'"):
        parse_rules("too-fsat")
