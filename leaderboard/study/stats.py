"""Statistics of best-of-N votes: shares with intervals, tests, agreement.

Input is the vote log as a ``pandas.DataFrame`` with one row per vote (what
:meth:`leaderboard.study.store.StudyStore.votes_frame` returns); the columns used are
``participant, trial, image_id, criterion, choice, shown`` (``|``-joined candidates on screen),
``is_gold``. Gold trials are excluded from every method statistic (they serve voter screening,
:mod:`leaderboard.study.screening`). The other designs' scores are :mod:`leaderboard.study.scores`;
:mod:`leaderboard.study.report` assembles the report of each design.

What is computed, and with which library (no statistic is re-derived by hand where a library has it):

* votes and share per method and criterion, with Wilson intervals
  (``statsmodels ... proportion_confint(method='wilson')``; its default is the normal
  approximation) and simultaneous Goodman intervals (``multinomial_proportions_confint``);
* a two-way cluster bootstrap over participants and images (votes of one participant, or on one
  image, are correlated, so independent-binomial intervals are too narrow);
* a chi-square test against uniform preference (``scipy.stats.chisquare``; with varying candidate
  subsets the expected counts follow the subsets shown);
* binomial tests between the top methods with Holm correction (``scipy.stats.binomtest``,
  ``statsmodels ... multipletests``);
* agreement: Fleiss' kappa (``statsmodels``) when every trial has the same number of raters and
  shows every method, Krippendorff's alpha (``krippendorff``, nominal) otherwise.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from benchmark.report import holm as report_holm

VOTE_COLUMNS = ["method", "criterion", "votes", "n", "share", "ci_low", "ci_high", "sim_low", "sim_high",
                "boot_low", "boot_high", "shown", "win_rate"]  # fmt: skip


def _require_statsmodels() -> None:
    try:
        import statsmodels  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("study statistics need statsmodels: pip install 'screensr[board]'") from exc


def wilson_interval(votes: int | np.ndarray, n: int | np.ndarray, alpha: float = 0.05) -> tuple[Any, Any]:
    """Wilson score interval of a proportion ``votes / n`` (fractions in [0, 1]).

    Example:
        >>> lo, hi = wilson_interval(150, 300)
        >>> round(100 * lo, 1), round(100 * hi, 1)
        (44.4, 55.6)
    """
    _require_statsmodels()
    from statsmodels.stats.proportion import proportion_confint

    return proportion_confint(votes, n, alpha=alpha, method="wilson")


def holm(rows: list[dict[str, Any]], alpha: float = 0.05) -> None:
    """Add ``p_holm`` (Holm-adjusted) and ``significant`` to each row's ``p_value``, in place
    (one family: the rows given)."""
    # the one Holm adjustment of the suite (the board's pairwise tests use it too)
    for r, ph in zip(rows, report_holm([r["p_value"] for r in rows]), strict=True):
        r["p_holm"], r["significant"] = float(ph), bool(ph <= alpha)


def regular_votes(votes: pd.DataFrame) -> pd.DataFrame:
    """The votes of regular (non-gold) trials."""
    if "is_gold" in votes:
        return votes[~votes["is_gold"].astype(bool)]
    return votes


def _shown_sets(votes: pd.DataFrame, methods: list[str]) -> list[list[str]]:
    if "shown" not in votes:
        return [list(methods)] * len(votes)
    return [s.split("|") for s in votes["shown"].astype(str)]


def varying_subsets(votes: pd.DataFrame, methods: list[str]) -> bool:
    """Whether some regular trial showed fewer than all ``methods``."""
    full = set(methods)
    return any(set(s) != full for s in _shown_sets(regular_votes(votes), methods))


def cluster_bootstrap_shares(
    votes: pd.DataFrame, methods: list[str], n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of vote shares under a two-way cluster bootstrap.

    Each replicate draws participants and images independently with replacement; a vote is
    counted (multiplicity of its participant) x (multiplicity of its image) times (the
    "pigeonhole" bootstrap for crossed random effects, Owen 2007, Ann. Appl. Stat. 1(2)).

    Args:
        votes: votes of one criterion (regular trials only).
        methods: the methods, in the order of the returned arrays.

    Returns:
        ``(low, high)``, each of shape ``(len(methods),)``, as fractions.
    """
    if votes.empty:
        nan = np.full(len(methods), np.nan)
        return nan, nan
    rng = np.random.default_rng(seed)
    p_codes, p_levels = pd.factorize(votes["participant"])
    i_codes, i_levels = pd.factorize(votes["image_id"])
    m_index = {m: i for i, m in enumerate(methods)}
    m_codes = votes["choice"].map(m_index).to_numpy()
    onehot = np.zeros((len(votes), len(methods)))
    onehot[np.arange(len(votes)), m_codes] = 1.0
    n_p, n_i = len(p_levels), len(i_levels)
    wp = rng.multinomial(n_p, np.full(n_p, 1.0 / n_p), size=n_boot)  # (B, P)
    wi = rng.multinomial(n_i, np.full(n_i, 1.0 / n_i), size=n_boot)  # (B, I)
    weights = wp[:, p_codes] * wi[:, i_codes]  # (B, V)
    counts = weights @ onehot  # (B, M)
    totals = counts.sum(axis=1, keepdims=True)
    shares = counts[totals[:, 0] > 0] / totals[totals[:, 0] > 0]
    low, high = np.percentile(shares, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return low, high


def vote_table(
    votes: pd.DataFrame,
    methods: list[str],
    criteria: list[str],
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per method x criterion: votes, share and its intervals (the paper's Figure 2 numbers).

    Columns: ``method, criterion, votes, n`` (regular votes of the criterion), ``share``
    (votes / n), ``ci_low, ci_high`` (Wilson), ``sim_low, sim_high`` (Goodman simultaneous),
    ``boot_low, boot_high`` (cluster bootstrap), ``shown`` (trials where the method was a
    candidate) and ``win_rate`` (votes / shown); fractions in [0, 1]. Rows are sorted by
    criterion (in the given order) and votes, descending.
    """
    _require_statsmodels()
    from statsmodels.stats.proportion import multinomial_proportions_confint

    unknown = sorted(set(votes["choice"]) - set(methods) - {"__hr__", "__bicubic__"}) if len(votes) else []
    if unknown:
        raise ValueError(f"votes name methods {unknown} that are not in the study's methods {methods}")
    votes = regular_votes(votes)
    rows: list[dict[str, Any]] = []
    for criterion in criteria:
        sub = votes[votes["criterion"] == criterion]
        n = len(sub)
        counts = np.array([(sub["choice"] == m).sum() for m in methods], dtype=int)
        shown_count = np.zeros(len(methods), dtype=int)
        for s in _shown_sets(sub, methods):
            for m in s:
                if m in methods:
                    shown_count[methods.index(m)] += 1
        if n:
            lo, hi = wilson_interval(counts, n, alpha)
            # Goodman's simultaneous intervals need at least two categories with votes.
            sim = (
                multinomial_proportions_confint(counts, alpha=alpha, method="goodman")
                if (counts > 0).sum() >= 2
                else np.full((len(methods), 2), np.nan)
            )
            b_lo, b_hi = cluster_bootstrap_shares(sub, methods, n_boot, seed, alpha)
        else:
            lo = hi = b_lo = b_hi = np.full(len(methods), np.nan)
            sim = np.full((len(methods), 2), np.nan)
        for j, m in enumerate(methods):
            rows.append(
                {
                    "method": m,
                    "criterion": criterion,
                    "votes": int(counts[j]),
                    "n": n,
                    "share": counts[j] / n if n else np.nan,
                    "ci_low": float(lo[j]),
                    "ci_high": float(hi[j]),
                    "sim_low": float(sim[j][0]),
                    "sim_high": float(sim[j][1]),
                    "boot_low": float(b_lo[j]),
                    "boot_high": float(b_hi[j]),
                    "shown": int(shown_count[j]),
                    "win_rate": counts[j] / shown_count[j] if shown_count[j] else np.nan,
                }
            )
    table = pd.DataFrame(rows, columns=VOTE_COLUMNS)
    order = {c: i for i, c in enumerate(criteria)}
    table = table.sort_values(["criterion", "votes"], key=lambda s: s.map(order) if s.name == "criterion" else -s,
                              kind="stable")  # fmt: skip
    return table.reset_index(drop=True)


def uniformity_test(votes: pd.DataFrame, methods: list[str], criteria: list[str]) -> pd.DataFrame:
    """Chi-square test of "no method is preferred" per criterion (``scipy.stats.chisquare``).

    Under the null each vote goes to one of the candidates shown with equal probability, so a
    method's expected count is the sum over votes of 1 / (number shown) where it was shown.

    Columns: ``criterion, chi2, dof, p_value, n``.
    """
    from scipy.stats import chisquare

    votes = regular_votes(votes)
    rows = []
    for criterion in criteria:
        sub = votes[votes["criterion"] == criterion]
        if sub.empty:
            rows.append({"criterion": criterion, "chi2": np.nan, "dof": len(methods) - 1, "p_value": np.nan, "n": 0})
            continue
        observed = np.array([(sub["choice"] == m).sum() for m in methods], dtype=float)
        expected = np.zeros(len(methods))
        for s in _shown_sets(sub, methods):
            for m in s:
                if m in methods:
                    expected[methods.index(m)] += 1.0 / len(s)
        res = chisquare(observed, f_exp=expected)
        rows.append(
            {"criterion": criterion, "chi2": float(res.statistic), "dof": len(methods) - 1,
             "p_value": float(res.pvalue), "n": len(sub)}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["criterion", "chi2", "dof", "p_value", "n"])


def pairwise_tests(
    votes: pd.DataFrame, methods: list[str], criteria: list[str], top: int = 3, alpha: float = 0.05
) -> pd.DataFrame:
    """Two-sided binomial tests between every pair of the ``top`` methods, Holm-corrected per criterion.

    For a pair (a, b), only the votes of trials that showed both and went to one of them count:
    under "a and b are equally preferred" ``votes_a ~ Binomial(votes_a + votes_b, 1/2)``.

    Columns: ``criterion, method_a, method_b, votes_a, votes_b, p_value, p_holm, significant``.
    """
    from scipy.stats import binomtest

    votes = regular_votes(votes)
    cols = ["criterion", "method_a", "method_b", "votes_a", "votes_b", "p_value", "p_holm", "significant"]
    out: list[dict[str, Any]] = []
    for criterion in criteria:
        sub = votes[votes["criterion"] == criterion]
        ranked = sorted(methods, key=lambda m: -(sub["choice"] == m).sum())[: max(top, 2)]
        shown = _shown_sets(sub, methods)
        rows = []
        for a, b in combinations(ranked, 2):
            both = np.array([a in s and b in s for s in shown], dtype=bool)
            choice = sub["choice"].to_numpy()[both] if len(sub) else np.array([])
            ka, kb = int((choice == a).sum()), int((choice == b).sum())
            p = binomtest(ka, ka + kb, 0.5).pvalue if ka + kb else 1.0
            rows.append({"criterion": criterion, "method_a": a, "method_b": b, "votes_a": ka, "votes_b": kb,
                         "p_value": float(p)})  # fmt: skip
        holm(rows, alpha)
        out.extend(rows)
    return pd.DataFrame(out, columns=cols)


def agreement(votes: pd.DataFrame, methods: list[str], criteria: list[str]) -> pd.DataFrame:
    """Inter-rater agreement per criterion over regular trials (raters: participants; units: images).

    Fleiss' kappa when the design is complete (every image judged by the same number of
    participants, each seeing every method); Krippendorff's alpha (nominal), which handles
    missing ratings, otherwise.

    Columns: ``criterion, statistic`` (``fleiss_kappa`` or ``krippendorff_alpha``), ``value,
    units, raters``.
    """
    _require_statsmodels()
    from statsmodels.stats.inter_rater import fleiss_kappa

    votes = regular_votes(votes)
    rows = []
    full = not varying_subsets(votes, methods)
    for criterion in criteria:
        sub = votes[votes["criterion"] == criterion]
        table = pd.crosstab(sub["image_id"], pd.Categorical(sub["choice"], categories=methods), dropna=False)
        raters_per_unit = table.sum(axis=1)
        units, raters = len(table), sub["participant"].nunique()
        if units == 0 or raters < 2:
            rows.append({"criterion": criterion, "statistic": "none", "value": np.nan, "units": units,
                         "raters": raters})  # fmt: skip
            continue
        if full and raters_per_unit.nunique() == 1 and raters_per_unit.iloc[0] >= 2:
            # kappa is 0/0 (NaN) when every vote went to one method; say so without a warning
            with np.errstate(invalid="ignore", divide="ignore"):
                value, name = float(fleiss_kappa(table.to_numpy(), method="fleiss")), "fleiss_kappa"
        else:
            value, name = _krippendorff_nominal(sub, methods), "krippendorff_alpha"
        rows.append({"criterion": criterion, "statistic": name, "value": value, "units": units, "raters": raters})
    return pd.DataFrame(rows, columns=["criterion", "statistic", "value", "units", "raters"])


def _krippendorff_nominal(sub: pd.DataFrame, methods: list[str]) -> float:
    try:
        import krippendorff
    except ImportError as exc:
        raise ImportError("Krippendorff's alpha needs the krippendorff package: pip install krippendorff") from exc
    codes = {m: float(i) for i, m in enumerate(methods)}
    matrix = sub.assign(code=sub["choice"].map(codes)).pivot_table(
        index="participant", columns="image_id", values="code", aggfunc="first"
    )
    data = matrix.to_numpy(dtype=float)
    # alpha is undefined when fewer than two distinct values occur or no unit has two ratings
    if np.unique(data[~np.isnan(data)]).size < 2 or ((~np.isnan(data)).sum(axis=0) >= 2).sum() == 0:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
