"""The hash chain of a user study: the canonical forms that are hashed, and how they link.

A study's votes form one chain per study: ``row_hash = sha256(prev_hash || "\\n" || canonical
vote)``, starting at a genesis hash. What each hash covers (chain version 3):

* genesis: the study's name, its config hash (:func:`config_digest`, over the stored config
  JSON, which holds every image file's content hash) and its trials hash (:func:`trials_digest`:
  each trial's image, candidates and gold answer);
* a participant's plan hash (:func:`plan_digest`): their token hash, their enrolment record (the
  platform and the hashes of its ids, for participants who came through Prolific or MTurk), the
  number of trials assigned adaptively later, and every assignment planned at enrolment (order,
  trial, candidates in screen order);
* an assignment made later (``assignment: adaptive``): :func:`assignment_digest` over the plan
  hash, its order, trial and candidates in screen order, stored with it;
* a consent (:func:`consent_digest`): the plan hash, the time, and the hash of the consent text;
* a vote (:func:`canonical_vote`): the vote row (participant, trial, criterion, screen position,
  choice, the design and the whole response: choice, rating or ranking, times, app version,
  config hash) plus :class:`VoteContext`: the image, the candidates in the order that voter saw
  them, the trial's gold answer and the participant's plan hash.

So the head hash of a chain pins the config, the trials, the plans of everyone who voted and
every vote. Chain version 2 (studies created before the study designs) is version 3 without the
enrolment record, the adaptive assignments, consents and the design fields; version 1 (before
version 2) hashed the vote rows alone, from a genesis over name and config hash. Both are kept so
that those chains, and heads published from them, still verify.

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

CHAIN_VERSION = 3  # chain of the studies this code creates; 2 = before designs, 1 = votes only


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


def plan_digest(
    study_name: str,
    number: int,
    token_hash: str,
    items: list[tuple[int, int, list[str]]],
    enrolment: dict[str, Any] | None = None,
) -> str:
    """sha256 over one participant's planned assignments: ``(order, trial position, candidates in
    screen order)``.

    Args:
        enrolment: chain version 3: ``{"platform", "platform_id", "platform_study",
            "platform_session", "adaptive_slots"}`` (hashes of the platform's ids, ``None`` where
            absent); ``None`` gives the version-2 digest.
    """
    payload: dict[str, Any] = {
        "study": study_name,
        "participant": int(number),
        "token": token_hash,
        "trials": [[int(o), int(t), list(shown)] for o, t, shown in sorted(items, key=lambda i: int(i[0]))],
    }
    if enrolment is not None:
        payload["enrolment"] = dict(enrolment)
    return sha256_hex(_canonical(payload))


def assignment_digest(plan_hash: str, order: int, trial_position: int, shown: list[str]) -> str:
    """sha256 of an assignment made after enrolment (adaptive), tied to its participant's plan."""
    return sha256_hex(_canonical({"plan": plan_hash, "order": int(order), "trial": int(trial_position),
                                  "shown": list(shown)}))  # fmt: skip


def consent_digest(plan_hash: str, consented_at: str, text_hash: str) -> str:
    """sha256 of a participant's consent: who (their plan hash), when, and to which text."""
    return sha256_hex(_canonical({"plan": plan_hash, "consented_at": consented_at, "text": text_hash}))


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
    :class:`VoteContext`, so editing what a voter was shown, or a gold answer, breaks the vote's hash;
    version 3 adds the row's ``design`` and ``response_json`` (the canonical JSON of the response),
    which older rows leave ``NULL`` (a value set there later is hashed too, and so breaks the hash).
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
    if row.get("design") is not None or row.get("response_json") is not None:
        fields["design"] = row.get("design")
        try:
            fields["response"] = None if row.get("response_json") is None else json.loads(row["response_json"])
        except ValueError:
            fields["response"] = {"invalid": row["response_json"]}  # hashed as it is: the check fails
    return _canonical(fields)


def chain_hash(prev_hash: str, canonical: str) -> str:
    """``sha256(prev_hash || "\\n" || canonical)`` as hex."""
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()
