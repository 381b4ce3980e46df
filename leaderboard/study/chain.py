"""The hash chain of a user study: the canonical forms that are hashed, and how they link.

A study's votes form one chain per study: ``row_hash = sha256(prev_hash || "\\n" || canonical
vote)``, starting at a genesis hash. What each hash covers (chain version 2):

* genesis: the study's name, its config hash (:func:`config_digest`, over the stored config
  JSON, which holds every image file's content hash) and its trials hash (:func:`trials_digest`:
  each trial's image, candidates and gold answer);
* a participant's plan hash (:func:`plan_digest`): their token hash and every assignment (order,
  trial, candidates in screen order), fixed when the participant is created;
* a vote (:func:`canonical_vote`): the vote row (participant, trial, criterion, screen position,
  choice, times, app version, config hash) plus :class:`VoteContext`: the image, the candidates
  in the order that voter saw them, the trial's gold answer and the participant's plan hash.

So the head hash of a chain pins the config, the trials, the plans of everyone who voted and
every vote. Chain version 1 (studies created before version 2) hashed the vote rows alone, from
a genesis over name and config hash; it is kept so that those chains, and heads published from
them, still verify.

Everything here is a pure function of plain values; :class:`leaderboard.study.store.StudyStore`
reads the rows and calls them.

Example:
    >>> genesis = genesis_digest("s", "c" * 64, "t" * 64, version=2)
    >>> len(chain_hash(genesis, "{}"))
    64
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

CHAIN_VERSION = 2  # chain of the studies this code creates; 1 = votes only (before trials/plans)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def sha256_hex(text: str) -> str:
    """sha256 of ``text`` (UTF-8) as 64 hex digits."""
    return hashlib.sha256(text.encode()).hexdigest()


def config_digest(config_json: str) -> str:
    """The config hash of a stored ``config_json`` (its canonical JSON form, hashed).

    Equals :meth:`StudyConfig.config_hash` of the config that was stored, but is computed from
    the stored text itself: re-parsing it into a :class:`StudyConfig` could normalise an edit away.

    Raises:
        ValueError: ``config_json`` is not JSON.
    """
    return sha256_hex(_canonical(json.loads(config_json)))


def trials_digest(rows: list[tuple[int, str, list[str], str | None]]) -> str:
    """sha256 over a study's trials: ``(position, image id, candidates, gold answer)`` by position."""
    items = [
        {"position": int(pos), "image": image, "candidates": list(cands), "gold": gold}
        for pos, image, cands, gold in sorted(rows, key=lambda r: int(r[0]))
    ]
    return sha256_hex(_canonical(items))


def genesis_digest(name: str, config_hash: str, trials_hash: str | None, version: int) -> str:
    """The hash a study's vote chain starts from (version 1: name and config only)."""
    if version == 1:
        return sha256_hex(f"screensr-study|{name}|{config_hash}")
    return sha256_hex(f"screensr-study|v{version}|{name}|{config_hash}|{trials_hash}")


def plan_digest(study_name: str, number: int, token_hash: str, items: list[tuple[int, int, list[str]]]) -> str:
    """sha256 over one participant's assignments: ``(order, trial position, candidates in screen order)``."""
    payload = {
        "study": study_name,
        "participant": int(number),
        "token": token_hash,
        "trials": [[int(o), int(t), list(shown)] for o, t, shown in sorted(items, key=lambda i: int(i[0]))],
    }
    return sha256_hex(_canonical(payload))


@dataclass(frozen=True)
class VoteContext:
    """What a vote was cast on (chain version 2 hashes it with the vote).

    Attributes:
        image_id: the trial's image.
        shown: candidate names in screen order, as recorded for the participant.
        gold: the trial's gold answer (``None`` for a regular trial).
        plan: the participant's plan hash.
    """

    image_id: str
    shown: tuple[str, ...]
    gold: str | None
    plan: str | None


def canonical_vote(row: dict[str, Any], study_name: str, context: VoteContext | None = None) -> str:
    """The canonical text of a vote that its hash covers (sorted-key compact JSON).

    Chain version 1 hashes the vote row alone (``context=None``); version 2 adds the
    :class:`VoteContext`, so editing what a voter was shown, or a gold answer, breaks the vote's hash.
    """
    fields = {
        "study": study_name,
        "seq": int(row["seq"]),
        "participant": int(row["participant_id"]),
        "trial": int(row["trial_id"]),
        "assignment": int(row["assignment_id"]),
        "criterion": row["criterion"],
        "position": int(row["position"]),
        "choice": row["choice"],
        "served_at": row["served_at"],
        "voted_at": row["voted_at"],
        "app_version": row["app_version"],
        "config_hash": row["config_hash"],
    }
    if context is not None:
        fields.update(image=context.image_id, shown=list(context.shown), gold=context.gold, plan=context.plan)
    return _canonical(fields)


def chain_hash(prev_hash: str, canonical: str) -> str:
    """``sha256(prev_hash || "\\n" || canonical)`` as hex."""
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()
