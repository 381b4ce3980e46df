"""A study's report: the tables of its design, voter screening, exclusions, Markdown/JSON, figures.

:func:`study_report` computes, by design (gold trials left out of every method statistic):

* ``best_of_n``: votes and shares with Wilson, Goodman and cluster-bootstrap intervals, the
  chi-square test of uniform preference, binomial tests between the top methods, agreement
  (:mod:`leaderboard.study.stats`), Luce scores with bootstrap intervals, and the Luce strengths
  of varying candidate subsets (:mod:`leaderboard.study.scores`);
* ``pairwise``: Bradley-Terry scores with bootstrap intervals, per-pair wins, ties and binomial
  tests, agreement;
* ``acr``: mean opinion scores with 95% intervals per method and per method and image;
* ``ranking``: Plackett-Luce scores with bootstrap intervals and Kendall's W;
* every design: the per-participant screening table (:mod:`leaderboard.study.screening`).

With exclusion rules (``--exclude failed-gold,too-fast``) the report's tables are computed
without the excluded participants, the ``excluded`` table says who and why, and ``unfiltered``
holds the same report over every vote, so both results are shown.

Example:
    >>> report = study_report("s", votes, ["A", "B"], ["perceptual"], design="pairwise")  # doctest: +SKIP
    >>> print(report.to_markdown())                                                        # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leaderboard.study.config import ScreeningConfig
from leaderboard.study.scores import choice_scores, concordance, luce_strengths, mos_table, pair_table
from leaderboard.study.screening import apply_exclusions, parse_rules, screening_table
from leaderboard.study.stats import agreement, pairwise_tests, uniformity_test, varying_subsets, vote_table

# The tables of a report, in the order the Markdown shows them, with their headings.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("votes", "Votes per method (share and 95% intervals in %)"),
    ("scores", "Choice-model scores (95% bootstrap intervals over participants)"),
    ("mos", "Mean opinion score per method (ACR, 95% t intervals)"),
    ("mos_images", "Mean opinion score per method and image"),
    ("concordance", "Agreement of the rankings (Kendall's W per image)"),
    ("pairs", "Pairs of methods (decisive votes, binomial tests, Holm)"),
    ("uniformity", "Uniform preference (chi-square)"),
    ("pairwise", "Top methods, pairwise (binomial, Holm)"),
    ("agreement", "Agreement"),
    ("strengths", "Luce choice-model strengths (varying candidate subsets)"),
    ("participants", "Participants (screening: dwell time, gold accuracy, position, agreement)"),
)
# The one table a design is summarised by (CSV output, figures, the "without exclusions" part).
MAIN_TABLE = {"best_of_n": "votes", "pairwise": "scores", "acr": "mos", "ranking": "scores"}
_PERCENT = ("share", "ci_low", "ci_high", "boot_low", "boot_high")


@dataclass
class StudyReport:
    """All tables of a study's analysis (see the module docstring; ``None`` where the design has
    no such table)."""

    study: str
    methods: list[str]
    criteria: list[str]
    design: str = "best_of_n"
    votes: pd.DataFrame | None = None
    scores: pd.DataFrame | None = None
    mos: pd.DataFrame | None = None
    mos_images: pd.DataFrame | None = None
    concordance: pd.DataFrame | None = None
    pairs: pd.DataFrame | None = None
    uniformity: pd.DataFrame | None = None
    pairwise: pd.DataFrame | None = None
    agreement: pd.DataFrame | None = None
    strengths: pd.DataFrame | None = None
    participants: pd.DataFrame | None = None
    excluded: pd.DataFrame | None = None
    exclusion_rules: list[str] = field(default_factory=list)
    unfiltered: StudyReport | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def main(self) -> pd.DataFrame:
        """The design's main table (votes for best-of-N, scores for pairwise and ranking, MOS for ACR)."""
        table = getattr(self, MAIN_TABLE[self.design])
        assert table is not None  # study_report always fills the design's main table
        return table

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (tables as lists of records; NaN as ``None``)."""

        def records(df: pd.DataFrame | None) -> Any:
            return None if df is None else json.loads(df.to_json(orient="records", date_format="iso"))

        out: dict[str, Any] = {"study": self.study, "design": self.design, "methods": self.methods,
                               "criteria": self.criteria, "meta": self.meta}  # fmt: skip
        for name, _ in SECTIONS:
            out[name] = records(getattr(self, name))
        out["exclusion_rules"] = list(self.exclusion_rules)
        out["excluded"] = records(self.excluded)
        out["unfiltered"] = None if self.unfiltered is None else self.unfiltered.to_dict()
        return out

    def to_json(self) -> str:
        """The report as JSON (:meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        """A Markdown report: exclusions (if any), then every table of the design."""
        parts = [f"# User study `{self.study}` ({self.design})", ""]
        for key, value in self.meta.items():
            parts.append(f"- {key}: `{value}`")
        if self.exclusion_rules:
            excluded = self.excluded if self.excluded is not None else pd.DataFrame(columns=["participant", "reasons"])
            parts += ["", f"## Exclusions ({', '.join(self.exclusion_rules)}): {len(excluded)} participant(s) excluded",
                      "", "The tables below leave their votes out; the results over every vote follow at the end.",
                      "", markdown_table(excluded)]  # fmt: skip
        parts += self._sections()
        if self.unfiltered is not None:
            parts += ["", "## Without exclusions (every participant)"]
            parts += self.unfiltered._sections(only=(MAIN_TABLE[self.design],), level="###")
        return "\n".join(parts) + "\n"

    def _sections(self, only: Iterable[str] | None = None, level: str = "##") -> list[str]:
        wanted = set(only) if only is not None else None
        parts: list[str] = []
        for name, title in SECTIONS:
            table = getattr(self, name)
            if table is None or (wanted is not None and name not in wanted):
                continue
            if name == "votes":
                table = table.copy()
                for c in _PERCENT:
                    table[c] = (100 * table[c]).round(1)
                table = table[["method", "criterion", "votes", "n", "share", "ci_low", "ci_high", "boot_low",
                               "boot_high"]]  # fmt: skip
            parts += ["", f"{level} {title}", "", markdown_table(table)]
        return parts


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


def _complete(votes: pd.DataFrame) -> pd.DataFrame:
    """Fill the columns a hand-made (or older) vote log may lack, from the ones it has."""
    frame = votes.copy()
    defaults: dict[str, Any] = {"is_gold": False, "correct": False, "rating": np.nan, "ranking": "",
                                "dwell_s": np.nan, "trial": 0}  # fmt: skip
    for column, value in defaults.items():
        if column not in frame:
            frame[column] = value
    if "n_shown" not in frame:
        frame["n_shown"] = frame["shown"].astype(str).str.split("|").map(len) if len(frame) else 0
    if "position" not in frame:
        frame["position"] = [s.split("|").index(c) if c in s.split("|") else -1
                             for s, c in zip(frame["shown"].astype(str), frame["choice"], strict=True)]  # fmt: skip
    return frame


def study_report(
    study: str,
    votes: pd.DataFrame,
    methods: list[str],
    criteria: list[str],
    n_boot: int = 2000,
    seed: int = 0,
    top: int = 3,
    meta: dict[str, Any] | None = None,
    design: str = "best_of_n",
    screening: ScreeningConfig | None = None,
    exclude: Iterable[str] = (),
    fit_boot: int = 200,
) -> StudyReport:
    """Every analysis of a vote log for its design (see the module docstring).

    Args:
        votes: the tidy vote table (:meth:`leaderboard.study.store.StudyStore.votes_frame`).
        n_boot: replicates of the vote-share bootstrap (vectorised; best-of-N).
        fit_boot: replicates of the choice-model bootstrap (each refits the model).
        exclude: exclusion rules (:data:`leaderboard.study.screening.RULES`).

    Raises:
        ConfigError: an unknown exclusion rule.
    """
    rules = list(parse_rules(list(exclude)))
    votes = _complete(votes)
    people = screening_table(votes, design, screening)
    kept, excluded = apply_exclusions(votes, people, rules) if rules else (votes, None)
    report = _analyse(study, kept, list(methods), list(criteria), design, n_boot, seed, top, fit_boot)
    report.participants = people
    report.meta = dict(meta or {})
    if rules:
        report.exclusion_rules, report.excluded = rules, excluded
        report.unfiltered = _analyse(study, votes, list(methods), list(criteria), design, n_boot, seed, top, fit_boot)
    return report


def _analyse(
    study: str, votes: pd.DataFrame, methods: list[str], criteria: list[str], design: str, n_boot: int, seed: int,
    top: int, fit_boot: int,
) -> StudyReport:  # fmt: skip
    report = StudyReport(study=study, methods=methods, criteria=criteria, design=design)
    if design == "best_of_n":
        report.votes = vote_table(votes, methods, criteria, n_boot=n_boot, seed=seed)
        report.scores = choice_scores(votes, methods, criteria, design, n_boot=fit_boot, seed=seed)
        report.uniformity = uniformity_test(votes, methods, criteria)
        report.pairwise = pairwise_tests(votes, methods, criteria, top=top)
        report.agreement = agreement(votes, methods, criteria)
        report.strengths = luce_strengths(votes, methods, criteria) if varying_subsets(votes, methods) else None
    elif design == "pairwise":
        report.scores = choice_scores(votes, methods, criteria, design, n_boot=fit_boot, seed=seed)
        report.pairs = pair_table(votes, methods, criteria)
        report.agreement = agreement(votes[votes["choice"] != ""], methods, criteria)
    elif design == "acr":
        report.mos = mos_table(votes, methods, criteria)
        report.mos_images = mos_table(votes, methods, criteria, by_image=True)
    elif design == "ranking":
        report.scores = choice_scores(votes, methods, criteria, design, n_boot=fit_boot, seed=seed)
        report.concordance = concordance(votes, criteria)
    else:
        raise ValueError(f"unknown design {design!r}")
    return report


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


def plot_scores(table: pd.DataFrame, value: str, title: str = "", xlabel: str = "") -> Any:
    """Horizontal bars of ``table[value]`` per method and criterion with ``ci_low``/``ci_high``
    error bars (scores of pairwise and ranking studies, MOS of ACR). Returns a ``Figure``."""
    from matplotlib.figure import Figure

    criteria = list(dict.fromkeys(table["criterion"]))
    fig = Figure(figsize=(5.5 * max(len(criteria), 1), 0.45 * table["method"].nunique() + 1.6))
    axes = fig.subplots(1, max(len(criteria), 1), squeeze=False)[0]
    for ax, criterion in zip(axes, criteria, strict=False):
        sub = table[table["criterion"] == criterion].sort_values(value)
        err = np.clip(np.vstack([sub[value] - sub["ci_low"], sub["ci_high"] - sub[value]]), 0, None)
        ax.barh(sub["method"], sub[value], xerr=np.nan_to_num(err), color="#4c72b0", capsize=3)
        ax.set_title(criterion)
        ax.set_xlabel(xlabel or value)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_report(report: StudyReport) -> Any:
    """The figure of a report's main table: Figure 2 for best-of-N, scores or MOS otherwise."""
    if report.design == "best_of_n":
        return plot_votes(report.main, title=report.study)
    if report.design == "acr":
        return plot_scores(report.main, "mos", report.study, "mean opinion score (1-5)")
    return plot_scores(report.main, "strength", report.study, "choice-model strength")
