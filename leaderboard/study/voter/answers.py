"""The answer widgets of each design and what their values mean, as pure functions.

The vote page asks one question per criterion; what it offers depends on the design:

* ``best_of_n``: one choice among the neutral labels (A, B, C...);
* ``pairwise``: A or B, plus "No preference" when the study allows it;
* ``acr``: the ITU-T P.910 five-grade scale ("5 Excellent" ... "1 Bad");
* ``ranking``: a rank (1 = best) for every result, each rank used once.

:func:`answer_to_vote` turns the widgets' values into the arguments of
:meth:`leaderboard.study.store.StudyStore.record_vote` (screen positions or a rating), never a
method name: the server maps positions to methods.

Example:
    >>> answer_to_vote("pairwise", ["A", "B"], "No preference")
    {'position': None}
    >>> answer_to_vote("ranking", ["A", "B", "C"], {"A": "2", "B": "3", "C": "1"})
    {'ranking': [2, 0, 1]}
"""

from __future__ import annotations

from typing import Any

from leaderboard.study.assignment import position_label
from leaderboard.study.config import ACR_SCALE

NO_PREFERENCE = "No preference"
ACR_OPTIONS = [f"{level} {name}" for level, name in ACR_SCALE]


class IncompleteAnswer(ValueError):
    """Widget values that are not a whole answer yet (nothing picked, ranks missing or repeated);
    the message is what to tell the participant."""


def labels(n_shown: int) -> list[str]:
    """The neutral labels of ``n_shown`` results in screen order: A, B, C..."""
    return [position_label(i) for i in range(n_shown)]


def options(design: str, n_shown: int, no_preference: bool = False) -> list[str]:
    """The options of the one question widget of ``best_of_n``, ``pairwise`` and ``acr``; for
    ``ranking`` the ranks each result's widget offers ("1" = best)."""
    if design == "acr":
        return list(ACR_OPTIONS)
    if design == "ranking":
        return [str(r) for r in range(1, n_shown + 1)]
    out = labels(n_shown)
    if design == "pairwise" and no_preference:
        out.append(NO_PREFERENCE)
    return out


def answer_to_vote(design: str, shown_labels: list[str], value: Any) -> dict[str, Any]:
    """The keyword arguments of ``record_vote`` for the widgets' value(s).

    Args:
        design: the study's design.
        shown_labels: the results' labels in screen order.
        value: the chosen option (``best_of_n``, ``pairwise``, ``acr``), or for ``ranking`` a
            mapping label -> chosen rank (``None`` where none was chosen).

    Raises:
        IncompleteAnswer: nothing picked, or a ranking that leaves a result out or repeats a rank.
    """
    if design == "ranking":
        ranks = dict(value or {})
        if any(ranks.get(label) is None for label in shown_labels):
            raise IncompleteAnswer("Please give every result a rank before submitting.")
        chosen = [int(ranks[label]) for label in shown_labels]
        if sorted(chosen) != list(range(1, len(shown_labels) + 1)):
            raise IncompleteAnswer("Please give each result a different rank (1 = best).")
        return {"ranking": sorted(range(len(shown_labels)), key=lambda i: chosen[i])}
    if value is None:
        raise IncompleteAnswer("Please pick one of the answers before submitting.")
    if design == "acr":
        return {"rating": int(str(value).split()[0])}
    if design == "pairwise" and value == NO_PREFERENCE:
        return {"position": None}
    return {"position": shown_labels.index(value)}
