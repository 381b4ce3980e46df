"""Per-design method scores: choice models with cluster-bootstrap intervals, MOS, concordance.

Input is the tidy vote table (:meth:`leaderboard.study.store.StudyStore.votes_frame`); gold
trials are left out of every score.

* :func:`choice_scores`: the strength of each method under the choice model of its design,
  fitted with ``choix`` (Maystre & Grossglauser, NeurIPS 2015): Bradley-Terry for pairwise
  votes (``ilsr_pairwise_dense``; a "no preference" counts half a win each way, as FastChat's
  arena does with ties), Luce for best-of-N top-1 choices (``ilsr_top1``), Plackett-Luce for
  rankings (``ilsr_rankings``). Intervals are 95% percentile intervals of a bootstrap over
  participants (votes of one participant are correlated); the rank is 1 + the number of methods
  whose lower bound is above this method's upper bound (the Chatbot Arena rule).
* :func:`pair_table`: per pair of methods, decisive wins and ties, with a two-sided binomial
  test on the decisive votes and Holm's correction per criterion.
* :func:`mos_table`: ACR mean opinion scores per method (and per method and image) with the
  95% Student-t interval ``mean +- t(0.975, n-1) * sd / sqrt(n)`` (ITU-T P.1401, 7.2).
* :func:`concordance`: Kendall's coefficient of concordance W per image for the ranking design,
  ``W = 12 S / (m^2 (n^3 - n))`` with ``S`` the sum of squared deviations of the candidates' rank
  sums from their mean, ``m`` raters and ``n`` candidates (Kendall & Babington Smith, Ann. Math.
  Stat. 10(3), 1939; no ties: rankings are complete); the test of W = 0 is Friedman's
  ``chi2 = m (n - 1) W`` with ``n - 1`` degrees of freedom, summed over images.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from leaderboard.study.stats import holm, regular_votes

SCORE_COLUMNS = ["method", "criterion", "model", "strength", "ci_low", "ci_high", "rank", "n"]
PAIR_COLUMNS = ["criterion", "method_a", "method_b", "wins_a", "wins_b", "ties", "p_value", "p_holm", "significant"]
MOS_COLUMNS = ["method", "criterion", "n", "mos", "sd", "ci_low", "ci_high"]
CONCORDANCE_COLUMNS = ["criterion", "images", "mean_w", "min_w", "max_w", "chi2", "dof", "p_value"]

MODELS = {"pairwise": "bradley-terry", "best_of_n": "luce", "ranking": "plackett-luce"}


def _fit(design: str, sub: pd.DataFrame, methods: list[str], alpha: float) -> np.ndarray:
    """Strengths (shape ``(M,)``, summing to 1) of the design's choice model fitted to ``sub``."""
    import choix

    index = {m: i for i, m in enumerate(methods)}
    n = len(methods)
    if design == "pairwise":
        wins = np.zeros((n, n))
        for shown, choice in zip(sub["shown"], sub["choice"], strict=True):
            a, b = (index[m] for m in shown.split("|"))
            if choice == "":
                wins[a, b] += 0.5
                wins[b, a] += 0.5
            else:
                w = index[choice]
                wins[w, b if w == a else a] += 1
        if wins.sum() == 0:
            return np.full(n, np.nan)
        params = choix.ilsr_pairwise_dense(wins, alpha=alpha)
    elif design == "ranking":
        data = [tuple(index[m] for m in r.split("|")) for r in sub["ranking"] if r]
        if not data:
            return np.full(n, np.nan)
        params = choix.ilsr_rankings(n, data, alpha=alpha)
    else:
        top1 = []
        for shown, choice in zip(sub["shown"], sub["choice"], strict=True):
            losers = tuple(index[m] for m in shown.split("|") if m != choice and m in index)
            if choice in index and losers:
                top1.append((index[choice], losers))
        if not top1:
            return np.full(n, np.nan)
        params = choix.ilsr_top1(n, top1, alpha=alpha)
    strength = np.exp(params - params.max())
    return strength / strength.sum()


def choice_scores(
    votes: pd.DataFrame,
    methods: list[str],
    criteria: list[str],
    design: str,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.01,
) -> pd.DataFrame:
    """One row per method and criterion: the choice model's strength and its bootstrap interval.

    Args:
        design: ``pairwise``, ``best_of_n`` or ``ranking`` (see the module docstring).
        n_boot: bootstrap replicates (participants resampled with replacement).
        alpha: ``choix``'s regularisation (a method that never wins would have strength 0 and the
            maximum-likelihood estimate would not exist).

    Columns: ``method, criterion, model, strength`` (fraction, summing to 1 per criterion),
    ``ci_low, ci_high, rank, n`` (judgements fitted); sorted by criterion and strength.
    """
    votes = regular_votes(votes)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for criterion in criteria:
        sub = votes[votes["criterion"] == criterion]
        if sub.empty:
            rows += [{"method": m, "criterion": criterion, "model": MODELS[design], "strength": np.nan,
                      "ci_low": np.nan, "ci_high": np.nan, "rank": np.nan, "n": 0} for m in methods]  # fmt: skip
            continue
        point = _fit(design, sub, methods, alpha)
        groups = [g for _, g in sub.groupby("participant", sort=True)]
        boot = np.empty((n_boot, len(methods)))
        for b in range(n_boot):
            picks = rng.integers(0, len(groups), len(groups))
            boot[b] = _fit(design, pd.concat([groups[i] for i in picks]), methods, alpha)
        low, high = np.nanpercentile(boot, [2.5, 97.5], axis=0)
        rank = 1 + (low[None, :] > high[:, None]).sum(axis=1)
        rows += [{"method": m, "criterion": criterion, "model": MODELS[design], "strength": float(point[i]),
                  "ci_low": float(low[i]), "ci_high": float(high[i]), "rank": int(rank[i]), "n": len(sub)}
                 for i, m in enumerate(methods)]  # fmt: skip
    table = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    return _sort(table, criteria, "strength")


def luce_strengths(votes: pd.DataFrame, methods: list[str], criteria: list[str], alpha: float = 0.01) -> pd.DataFrame:
    """Luce choice-model strengths from top-1 choices among the shown subsets (``choix.ilsr_top1``),
    normalised to sum to 1: comparable to vote shares, and equal to them when every trial shows
    every method (then the model adds nothing; it matters when trials show varying subsets).

    Columns: ``method, criterion, strength``.
    """
    votes = regular_votes(votes)
    rows: list[dict[str, Any]] = []
    for criterion in criteria:
        sub = votes[votes["criterion"] == criterion]
        strength = _fit("best_of_n", sub, methods, alpha) if len(sub) else np.full(len(methods), np.nan)
        rows.extend({"method": m, "criterion": criterion, "strength": float(strength[i])} for i, m in enumerate(methods))
    return pd.DataFrame(rows, columns=["method", "criterion", "strength"])


def _sort(table: pd.DataFrame, criteria: list[str], by: str) -> pd.DataFrame:
    order = {c: i for i, c in enumerate(criteria)}
    key: Callable[[pd.Series], pd.Series] = lambda s: s.map(order) if s.name == "criterion" else -s  # noqa: E731
    return table.sort_values(["criterion", by], key=key, kind="stable").reset_index(drop=True)


def pair_table(votes: pd.DataFrame, methods: list[str], criteria: list[str], alpha: float = 0.05) -> pd.DataFrame:
    """Pairwise (2AFC) votes per pair of methods, with a binomial test on the decisive votes.

    Under "a and b are equally preferred", ``wins_a ~ Binomial(wins_a + wins_b, 1/2)``; ties
    ("no preference") are reported and left out of the test. Holm's correction per criterion.

    Columns: :data:`PAIR_COLUMNS`.
    """
    from scipy.stats import binomtest

    votes = regular_votes(votes)
    out: list[dict[str, Any]] = []
    for criterion in criteria:
        sub = votes[votes["criterion"] == criterion]
        pairs = [frozenset(s.split("|")) for s in sub["shown"].astype(str)]
        rows = []
        for a, b in combinations(methods, 2):
            mine = sub[np.array([p == frozenset((a, b)) for p in pairs], dtype=bool)]
            if mine.empty:
                continue
            wa, wb = int((mine["choice"] == a).sum()), int((mine["choice"] == b).sum())
            p = binomtest(wa, wa + wb, 0.5).pvalue if wa + wb else 1.0
            rows.append({"criterion": criterion, "method_a": a, "method_b": b, "wins_a": wa, "wins_b": wb,
                         "ties": int((mine["choice"] == "").sum()), "p_value": float(p)})  # fmt: skip
        holm(rows, alpha)
        out.extend(rows)
    return pd.DataFrame(out, columns=PAIR_COLUMNS)


def _mos(ratings: np.ndarray) -> tuple[float, float, float, float]:
    """``(mos, sd, ci_low, ci_high)`` with the Student-t 95% interval (NaN bounds below 2 ratings)."""
    from scipy.stats import t

    n = len(ratings)
    if n == 0:
        return np.nan, np.nan, np.nan, np.nan
    mos = float(np.mean(ratings))
    if n < 2:
        return mos, np.nan, np.nan, np.nan
    sd = float(np.std(ratings, ddof=1))
    half = float(t.ppf(0.975, n - 1)) * sd / np.sqrt(n)
    return mos, sd, mos - half, mos + half


def mos_table(votes: pd.DataFrame, methods: list[str], criteria: list[str], by_image: bool = False) -> pd.DataFrame:
    """ACR mean opinion scores with 95% intervals, per method (and per image with ``by_image``).

    Columns: :data:`MOS_COLUMNS` (with ``image_id`` after ``method`` when ``by_image``); sorted by
    criterion and MOS.
    """
    votes = regular_votes(votes)
    rows: list[dict[str, Any]] = []
    for criterion in criteria:
        sub = votes[votes["criterion"] == criterion]
        for m in methods:
            mine = sub[sub["choice"] == m]
            groups = mine.groupby("image_id", sort=True) if by_image else [(None, mine)]
            for image_id, g in groups:
                mos, sd, lo, hi = _mos(g["rating"].to_numpy(dtype=float))
                row = {"method": m, "criterion": criterion, "n": len(g), "mos": mos, "sd": sd, "ci_low": lo,
                       "ci_high": hi}  # fmt: skip
                if by_image:
                    row["image_id"] = image_id
                rows.append(row)
    cols = MOS_COLUMNS[:1] + ["image_id"] + MOS_COLUMNS[1:] if by_image else MOS_COLUMNS
    return _sort(pd.DataFrame(rows, columns=cols), criteria, "mos")


def kendalls_w(ranks: np.ndarray) -> float:
    """Kendall's W of an ``(m raters, n objects)`` matrix of ranks without ties (1..n per row).

    Example:
        >>> kendalls_w(np.array([[1, 2, 3], [1, 2, 3]]))
        1.0
    """
    m, n = ranks.shape
    sums = ranks.sum(axis=0)
    s = float(((sums - sums.mean()) ** 2).sum())
    return 12.0 * s / (m**2 * (n**3 - n))


def concordance(votes: pd.DataFrame, criteria: list[str]) -> pd.DataFrame:
    """Kendall's W of the rankings of each image (raters: the participants who ranked it), summarised
    per criterion, with Friedman's test summed over images.

    Images ranked by fewer than two participants, or whose rankings are over different candidate
    sets, are left out. Columns: :data:`CONCORDANCE_COLUMNS`.
    """
    from scipy.stats import chi2 as chi2_dist

    votes = regular_votes(votes)
    rows = []
    for criterion in criteria:
        sub = votes[(votes["criterion"] == criterion) & (votes["ranking"] != "")]
        ws, stat, dof = [], 0.0, 0
        for _, g in sub.groupby("image_id", sort=True):
            rankings = [r.split("|") for r in g["ranking"]]
            items = sorted(rankings[0])
            if len(rankings) < 2 or len(items) < 2 or any(sorted(r) != items for r in rankings):
                continue
            ranks = np.array([[r.index(it) + 1 for it in items] for r in rankings], dtype=float)
            w = kendalls_w(ranks)
            ws.append(w)
            stat += len(rankings) * (len(items) - 1) * w
            dof += len(items) - 1
        rows.append({
            "criterion": criterion, "images": len(ws), "mean_w": float(np.mean(ws)) if ws else np.nan,
            "min_w": float(np.min(ws)) if ws else np.nan, "max_w": float(np.max(ws)) if ws else np.nan,
            "chi2": stat if ws else np.nan, "dof": dof,
            "p_value": float(chi2_dist.sf(stat, dof)) if ws else np.nan,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=CONCORDANCE_COLUMNS)
