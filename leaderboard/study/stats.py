"""Statistics of user-study votes: shares with intervals, tests, agreement, per-participant checks.

Input is the vote log as a ``pandas.DataFrame`` with one row per vote (what
:meth:`leaderboard.study.store.StudyStore.votes_frame` returns); the columns used are
``participant, trial, image_id, criterion, choice, shown`` (``|``-joined candidates on screen),
``is_gold, correct, dwell_s``. Gold trials are excluded from every method statistic and used
only for participant accuracy.

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
  shows every method, Krippendorff's alpha (``krippendorff``, nominal) otherwise;
* a Luce choice model (``choix.ilsr_top1``) when trials show varying subsets of methods: with the
  full set always shown its maximum-likelihood strengths equal the vote shares, so it is only
  reported when it adds information.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

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
    from statsmodels.stats.multitest import multipletests

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
        if rows:
            reject, p_holm, _, _ = multipletests([r["p_value"] for r in rows], alpha=alpha, method="holm")
            for r, rej, ph in zip(rows, reject, p_holm, strict=True):
                r["p_holm"], r["significant"] = float(ph), bool(rej)
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


def luce_strengths(votes: pd.DataFrame, methods: list[str], criteria: list[str], alpha: float = 0.01) -> pd.DataFrame:
    """Luce choice-model strengths from top-1 choices among the shown subsets (``choix.ilsr_top1``).

    ``alpha`` regularises (a method without votes would otherwise have strength 0 and the ML
    estimate would not exist). Strengths are returned normalised to sum to 1, comparable to
    vote shares (and equal to them when every trial shows every method).

    Columns: ``method, criterion, strength``.
    """
    import choix

    votes = regular_votes(votes)
    index = {m: i for i, m in enumerate(methods)}
    rows: list[dict[str, Any]] = []
    for criterion in criteria:
        sub = votes[votes["criterion"] == criterion]
        data = []
        for choice, shown in zip(sub["choice"], _shown_sets(sub, methods), strict=True):
            losers = tuple(index[m] for m in shown if m != choice and m in index)
            if choice in index and losers:
                data.append((index[choice], losers))
        if data:
            params = choix.ilsr_top1(len(methods), data, alpha=alpha)
            strength = np.exp(params - params.max())
            strength /= strength.sum()
        else:
            strength = np.full(len(methods), np.nan)
        rows.extend({"method": m, "criterion": criterion, "strength": float(strength[i])} for i, m in enumerate(methods))
    return pd.DataFrame(rows, columns=["method", "criterion", "strength"])


def participant_table(votes: pd.DataFrame, min_dwell_s: float = 1.0, min_gold_accuracy: float = 0.5) -> pd.DataFrame:
    """Per participant: votes, dwell times (seconds from first serve to vote) and gold accuracy.

    Columns: ``participant, votes, median_dwell_s, mean_dwell_s, gold_votes, gold_correct,
    gold_accuracy`` (NaN without gold votes) and ``flagged``: a median dwell under
    ``min_dwell_s`` (clicking through) or gold accuracy under ``min_gold_accuracy`` (careless);
    flagged voters are reported for the analyst to judge, never dropped silently.
    """
    cols = ["participant", "votes", "median_dwell_s", "mean_dwell_s", "gold_votes", "gold_correct", "gold_accuracy",
            "flagged"]  # fmt: skip
    if votes.empty:
        return pd.DataFrame(columns=cols)
    is_gold = votes["is_gold"].astype(bool) if "is_gold" in votes else pd.Series(False, index=votes.index)
    correct = votes["correct"].astype(bool) if "correct" in votes else pd.Series(False, index=votes.index)
    frame = votes.assign(_gold=is_gold, _correct=correct & is_gold)
    grouped = frame.groupby("participant", sort=True)
    out = pd.DataFrame(
        {
            "votes": grouped.size(),
            "median_dwell_s": grouped["dwell_s"].median(),
            "mean_dwell_s": grouped["dwell_s"].mean(),
            "gold_votes": grouped["_gold"].sum().astype(int),
            "gold_correct": grouped["_correct"].sum().astype(int),
        }
    )
    out["gold_accuracy"] = np.where(out["gold_votes"] > 0, out["gold_correct"] / out["gold_votes"].clip(lower=1), np.nan)
    out["flagged"] = (out["median_dwell_s"] < min_dwell_s) | (out["gold_accuracy"] < min_gold_accuracy)
    return out.reset_index()[cols]


@dataclass
class StudyReport:
    """All tables of a study's analysis (see the module docstring for each)."""

    study: str
    methods: list[str]
    criteria: list[str]
    votes: pd.DataFrame
    uniformity: pd.DataFrame
    pairwise: pd.DataFrame
    agreement: pd.DataFrame
    participants: pd.DataFrame
    strengths: pd.DataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The report as JSON (tables as lists of records; NaN as null)."""

        def records(df: pd.DataFrame | None) -> Any:
            if df is None:
                return None
            return json.loads(df.to_json(orient="records", date_format="iso"))

        payload = {
            "study": self.study,
            "methods": self.methods,
            "criteria": self.criteria,
            "meta": self.meta,
            "votes": records(self.votes),
            "uniformity": records(self.uniformity),
            "pairwise": records(self.pairwise),
            "agreement": records(self.agreement),
            "participants": records(self.participants),
            "strengths": records(self.strengths),
        }
        return json.dumps(payload, indent=2)

    def to_markdown(self) -> str:
        """A Markdown report: the vote table (percentages), then tests, agreement and participants."""
        pct = self.votes.copy()
        for c in ("share", "ci_low", "ci_high", "boot_low", "boot_high"):
            pct[c] = (100 * pct[c]).round(1)
        parts = [f"# User study `{self.study}`", ""]
        for key, value in self.meta.items():
            parts.append(f"- {key}: `{value}`")
        parts += ["", "## Votes per method (share and 95% intervals in %)", "",
                  markdown_table(pct[["method", "criterion", "votes", "n", "share", "ci_low", "ci_high",
                                      "boot_low", "boot_high"]]),
                  "", "## Uniform preference (chi-square)", "", markdown_table(self.uniformity),
                  "", "## Top methods, pairwise (binomial, Holm)", "", markdown_table(self.pairwise),
                  "", "## Agreement", "", markdown_table(self.agreement),
                  "", "## Participants (dwell time, gold accuracy)", "", markdown_table(self.participants)]  # fmt: skip
        if self.strengths is not None:
            parts += ["", "## Luce choice-model strengths (varying candidate subsets)", "",
                      markdown_table(self.strengths)]  # fmt: skip
        return "\n".join(parts) + "\n"


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (floats to ``digits`` significant digits)."""

    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.{digits}g}"
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def study_report(
    study: str,
    votes: pd.DataFrame,
    methods: list[str],
    criteria: list[str],
    n_boot: int = 2000,
    seed: int = 0,
    top: int = 3,
    meta: dict[str, Any] | None = None,
) -> StudyReport:
    """Every analysis of a vote log (see :class:`StudyReport`)."""
    return StudyReport(
        study=study,
        methods=list(methods),
        criteria=list(criteria),
        votes=vote_table(votes, methods, criteria, n_boot=n_boot, seed=seed),
        uniformity=uniformity_test(votes, methods, criteria),
        pairwise=pairwise_tests(votes, methods, criteria, top=top),
        agreement=agreement(votes, methods, criteria),
        participants=participant_table(votes),
        strengths=luce_strengths(votes, methods, criteria) if varying_subsets(votes, methods) else None,
        meta=dict(meta or {}),
    )


def plot_votes(table: pd.DataFrame, title: str = "") -> Any:
    """The paper's Figure 2: per criterion, horizontal bars of votes labelled "votes (share %)".

    Error bars are the Wilson 95% interval, in votes. Returns a ``matplotlib.figure.Figure``.
    """
    from matplotlib.figure import Figure

    criteria = list(dict.fromkeys(table["criterion"]))
    fig = Figure(figsize=(5.5 * max(len(criteria), 1), 0.45 * table["method"].nunique() + 1.6))
    axes = fig.subplots(1, max(len(criteria), 1), squeeze=False)[0]
    for ax, criterion in zip(axes, criteria, strict=False):
        sub = table[table["criterion"] == criterion].sort_values("votes")
        n = sub["n"].iloc[0] if len(sub) else 0
        # clipped: at a share of exactly 0 or 1 the Wilson bound equals it up to rounding
        err = np.clip(np.vstack([(sub["share"] - sub["ci_low"]) * n, (sub["ci_high"] - sub["share"]) * n]), 0, None)
        bars = ax.barh(sub["method"], sub["votes"], xerr=np.nan_to_num(err), color="#4c72b0", capsize=3)
        for bar, (_, r), upper in zip(bars, sub.iterrows(), err[1], strict=True):
            label = f"{r['votes']} ({100 * r['share']:.1f}%)" if n else "0"
            # placed past the interval's end so the error bar never crosses the label
            ax.text(bar.get_width() + upper, bar.get_y() + bar.get_height() / 2, f"  {label}", va="center",
                    fontsize=9)  # fmt: skip
        ax.set_title(f"{criterion} (n = {n})")
        ax.set_xlabel("votes")
        ax.set_xlim(0, max(1, (sub["votes"] + err[1]).max() if len(sub) else 1) * 1.4)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a matplotlib figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()
