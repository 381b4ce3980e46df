"""Voter screening: per-participant quality measures, and the exclusion rules built on them.

Measures (one row per participant, :func:`screening_table`), thresholds from the study's
``screening:`` block (:class:`leaderboard.study.config.ScreeningConfig`):

* ``failed-gold``: gold-trial accuracy below ``min_gold_accuracy``;
* ``too-fast``: median response time (first serve to vote) below ``min_response_s``;
* ``straight-lining``: a share of at least ``max_same_position`` of the participant's choices at
  one screen position (one rating, for ACR), over at least 6 judgements;
* ``position-bias``: the chosen screen positions differ from what position-blind choices would
  give (chi-square, ``scipy.stats.chisquare``: a position's expected count is the sum over the
  participant's votes of ``1 / candidates shown`` where it was shown), p below ``position_bias_p``;
* ``low-agreement``: for the choice designs, the share of the participant's regular votes that
  match the majority of the other participants on the same trial and criterion, below
  ``min_agreement`` (default: below chance, the expected share for random choices); for ACR the
  Pearson correlation of the participant's ratings with the others' mean ratings of the same
  stimuli below ``min_correlation`` (ITU-T P.913, 12.4, screens subjects with r < 0.75).

Flagged participants are listed, never dropped silently: :func:`apply_exclusions` removes the
votes of participants flagged by the rules asked for (``--exclude failed-gold,too-fast``) and
says who was excluded and why; the report shows results with and without the exclusions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from core.errors import ConfigError, did_you_mean
from leaderboard.study.config import ScreeningConfig

RULES = ("failed-gold", "too-fast", "straight-lining", "position-bias", "low-agreement")
MIN_JUDGEMENTS = 6  # below this a share or a test says nothing about a participant

SCREENING_COLUMNS = [
    "participant", "votes", "median_dwell_s", "mean_dwell_s", "gold_votes", "gold_correct", "gold_accuracy",
    "same_position_share", "position_p", "agreement", "chance", "flags", "flagged",
]  # fmt: skip


def parse_rules(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"failed-gold,too-fast"`` -> the rule names, checked (``"all"`` means every rule).

    Raises:
        ConfigError: an unknown rule (with a did-you-mean).
    """
    if text is None:
        return ()
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if items == ["all"]:
        return RULES
    for item in items:
        if item not in RULES:
            raise ConfigError(f"unknown exclusion rule {item!r}{did_you_mean(item, RULES)}")
    return tuple(dict.fromkeys(items))


def _position_test(sub: pd.DataFrame) -> float:
    """p-value of the chi-square test of chosen screen positions against position-blind choices."""
    from scipy.stats import chisquare

    sub = sub[(sub["position"] >= 0) & (sub["n_shown"] >= 2)]
    if len(sub) < MIN_JUDGEMENTS:
        return np.nan
    width = int(sub["n_shown"].max())
    observed = np.bincount(sub["position"].astype(int), minlength=width).astype(float)
    expected = np.zeros(width)
    for n in sub["n_shown"].astype(int):
        expected[:n] += 1.0 / n
    keep = expected > 0
    if keep.sum() < 2:
        return np.nan
    return float(chisquare(observed[keep], f_exp=expected[keep] * observed[keep].sum() / expected[keep].sum()).pvalue)


def _agreement(votes: pd.DataFrame, design: str) -> dict[Any, tuple[float, float]]:
    """participant -> ``(agreement, chance)``; for ACR ``(pearson r, nan)``."""
    regular = votes[~votes["is_gold"].astype(bool)]
    out: dict[Any, tuple[float, float]] = {}
    if design == "acr":
        key = ["trial", "criterion"]
        total = regular.groupby(key)["rating"].agg(["sum", "count"])
        for participant, mine in regular.groupby("participant"):
            joined = mine.join(total, on=key)
            others = joined["count"] - 1
            keep = others > 0
            if keep.sum() < 3:
                out[participant] = (np.nan, np.nan)
                continue
            mean_others = (joined["sum"] - joined["rating"])[keep] / others[keep]
            own = joined["rating"][keep]
            r = np.nan if own.std() == 0 or mean_others.std() == 0 else float(np.corrcoef(own, mean_others)[0, 1])
            out[participant] = (r, np.nan)
        return out
    counts = regular.groupby(["trial", "criterion", "choice"]).size()
    for participant, mine in regular.groupby("participant"):
        hits, chance, n = 0.0, 0.0, 0
        for trial, criterion, choice, shown in zip(mine["trial"], mine["criterion"], mine["choice"], mine["n_shown"],
                                                   strict=True):  # fmt: skip
            tally = counts.loc[(trial, criterion)].copy()
            tally[choice] -= 1  # leave this participant's own vote out
            tally = tally[tally > 0]
            if tally.empty:
                continue
            modes = tally[tally == tally.max()].index
            hits += (1.0 / len(modes)) if choice in modes else 0.0
            chance += 1.0 / max(int(shown), 1)
            n += 1
        out[participant] = (hits / n, chance / n) if n else (np.nan, np.nan)
    return out


def screening_table(votes: pd.DataFrame, design: str = "best_of_n", config: ScreeningConfig | None = None) -> pd.DataFrame:
    """Per-participant quality measures and the rules each participant trips (see the module docstring).

    Columns: :data:`SCREENING_COLUMNS`; ``flags`` is a comma-separated list of rule names
    (empty when none), ``flagged`` whether there is any.
    """
    cfg = config or ScreeningConfig()
    if votes.empty:
        return pd.DataFrame(columns=SCREENING_COLUMNS)
    agreement = _agreement(votes, design)
    rows = []
    for participant, mine in votes.groupby("participant", sort=True):
        gold = mine[mine["is_gold"].astype(bool)]
        regular = mine[~mine["is_gold"].astype(bool)]
        gold_correct = int(gold["correct"].astype(bool).sum())
        accuracy = gold_correct / len(gold) if len(gold) else np.nan
        median = float(mine["dwell_s"].median())
        if design == "acr":
            values = mine["rating"].dropna()
            same = float(values.value_counts().max() / len(values)) if len(values) >= MIN_JUDGEMENTS else np.nan
            position_p = np.nan
        else:
            chosen = mine[mine["position"] >= 0]
            same = (float(chosen["position"].value_counts().max() / len(chosen))
                    if len(chosen) >= MIN_JUDGEMENTS else np.nan)  # fmt: skip
            position_p = _position_test(regular)
        agree, chance = agreement.get(participant, (np.nan, np.nan))
        if design == "acr":
            low_agreement = agree < cfg.min_correlation
        else:
            low_agreement = agree < (cfg.min_agreement if cfg.min_agreement is not None else chance)
        flags = [
            name for name, hit in (
                ("failed-gold", accuracy < cfg.min_gold_accuracy),
                ("too-fast", median < cfg.min_response_s),
                ("straight-lining", same >= cfg.max_same_position),
                ("position-bias", position_p < cfg.position_bias_p),
                ("low-agreement", low_agreement),
            ) if bool(hit)  # NaN compares False: a measure without enough data flags nothing
        ]  # fmt: skip
        rows.append({
            "participant": participant, "votes": len(mine), "median_dwell_s": median,
            "mean_dwell_s": float(mine["dwell_s"].mean()), "gold_votes": len(gold), "gold_correct": gold_correct,
            "gold_accuracy": accuracy, "same_position_share": same, "position_p": position_p, "agreement": agree,
            "chance": chance, "flags": ",".join(flags), "flagged": bool(flags),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=SCREENING_COLUMNS)


def apply_exclusions(
    votes: pd.DataFrame, screening: pd.DataFrame, rules: Iterable[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The votes without the participants that ``rules`` flag, and who was excluded and why.

    Returns:
        ``(kept votes, excluded)``; ``excluded`` has columns ``participant, reasons`` (the rules
        it tripped among ``rules``, comma-separated).
    """
    wanted = set(parse_rules(list(rules)))
    excluded = []
    for participant, flags in zip(screening["participant"], screening["flags"], strict=True):
        hit = [f for f in str(flags).split(",") if f in wanted]
        if hit:
            excluded.append({"participant": participant, "reasons": ",".join(hit)})
    table = pd.DataFrame(excluded, columns=["participant", "reasons"])
    kept = votes[~votes["participant"].isin(set(table["participant"]))].reset_index(drop=True)
    return kept, table
