"""``verify``: recompute everything a study's hash chain covers, from the stored rows.

Checks (chain version 3; the study's rows are read afresh, never from a cache):

* the stored ``config_json`` against its ``config_hash``, and the trials (images, candidates,
  gold answers) against the trials hash; the genesis hash must derive from both, and the chain
  must start at it;
* every participant's planned assignments (trial order, candidates in screen order) and
  enrolment record (platform and the hashes of its ids, the number of adaptive trials) against
  the plan hash stored when the participant was created; every assignment made later
  (adaptive) against its own hash, tied to that plan hash;
* every consent against its hash and the study's consent text, and, for a study with a consent
  text, that nobody voted before consenting;
* every vote: ``seq`` without gaps, ``prev_hash`` linking to the previous row, and its hash over
  the vote row (with the design and the whole response) plus what was shown with it (image,
  screen order, gold answer, plan hash), its assignment belonging to the voter and trial, its
  choice being the candidate at its screen position;
* with ``expected_head`` (a published head hash): that the chain still ends there. This is the
  only check that detects votes removed from the end (a shorter chain is otherwise valid), or a
  chain rewritten as a whole by someone with write access to the database, who can recompute
  every hash.

Studies created by older versions are checked for what their chain covers: version 2 (before the
study designs) everything but enrolment records, adaptive assignments and consents, which it
cannot have; version 1 the votes and the config; ``notes`` says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from leaderboard.study.chain import (
    CHAIN_VERSION,
    VoteContext,
    assignment_digest,
    canonical_vote,
    chain_hash,
    config_digest,
    consent_digest,
    genesis_digest,
    plan_digest,
    sha256_hex,
    trials_digest,
)
from leaderboard.study.schema import assignments, consents, participants, trials, votes


@dataclass
class VerifyReport:
    """Outcome of a verification: ``ok`` only when every check holds.

    Attributes:
        study: the study's name.
        n_votes: votes in the chain.
        head_hash: hash of the last vote (the genesis hash when there is none): publish it.
        chain_version: 3 for studies created now; 2 for studies created before the designs (no
            enrolment records, adaptive assignments or consents); 1 for studies whose chain covers
            the votes and the config only.
        problems: one line per failed check (empty when ``ok``).
        notes: limits of what was checked (e.g. an older chain version), not failures.
    """

    study: str
    n_votes: int
    head_hash: str
    chain_version: int = CHAIN_VERSION
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def enrolment_record(row: Any, adaptive_slots: int | None) -> dict[str, Any]:
    """The enrolment part of a (chain version 3) participant's plan hash, from its stored row."""
    return {
        "platform": row["platform"],
        "platform_id": row["platform_id_hash"],
        "platform_study": row["platform_study_hash"],
        "platform_session": row["platform_session_hash"],
        "adaptive_slots": adaptive_slots,
    }


def verify_study(conn: Connection, srow: Any, expected_head: str | None = None) -> VerifyReport:
    """Verify the study whose ``study_studies`` row is ``srow``, reading through ``conn``."""
    name, sid = srow["name"], srow["id"]
    trial_rows = conn.execute(
        select(trials.c.id, trials.c.position, trials.c.image_id, trials.c.candidates_json, trials.c.gold_answer)
        .where(trials.c.study_id == sid)
    ).all()  # fmt: skip
    people = conn.execute(
        select(participants).where(participants.c.study_id == sid).order_by(participants.c.number)
    ).mappings().all()
    plans = conn.execute(
        select(assignments.c.participant_id, assignments.c.ord, trials.c.position, assignments.c.shown_json,
               assignments.c.assignment_hash)
        .select_from(assignments.join(trials, assignments.c.trial_id == trials.c.id))
        .join(participants, assignments.c.participant_id == participants.c.id)
        .where(participants.c.study_id == sid)
    ).all()  # fmt: skip
    consent_rows = conn.execute(
        select(consents).join(participants, consents.c.participant_id == participants.c.id)
        .where(participants.c.study_id == sid)
    ).mappings().all()  # fmt: skip
    vote_rows = conn.execute(
        select(
            votes,
            assignments.c.participant_id.label("a_participant"),
            assignments.c.trial_id.label("a_trial"),
            assignments.c.shown_json.label("a_shown"),
            trials.c.image_id.label("t_image"),
            trials.c.gold_answer.label("t_gold"),
            trials.c.study_id.label("t_study"),
            participants.c.plan_hash.label("p_plan"),
            participants.c.study_id.label("p_study"),
        )
        .select_from(
            votes.outerjoin(assignments, votes.c.assignment_id == assignments.c.id)
            .outerjoin(trials, assignments.c.trial_id == trials.c.id)
            .outerjoin(participants, votes.c.participant_id == participants.c.id)
        )
        .where(votes.c.study_id == sid)
        .order_by(votes.c.seq)
    ).mappings().all()
    version = srow["chain_version"] or 1
    report = VerifyReport(study=name, n_votes=0, head_hash=srow["genesis_hash"], chain_version=version)
    problems = report.problems
    config_hash = srow["config_hash"]
    config: dict[str, Any] = {}
    try:
        config = json.loads(srow["config_json"])
        if config_digest(srow["config_json"]) != config_hash:
            problems.append("study config (config_json) does not match its config_hash (edited)")
    except ValueError:
        problems.append("study config (config_json) is not valid JSON (edited)")
    if version == 1:
        report.notes.append(
            f"study {name!r} was created by an older version of ScreenSR (chain version 1): its chain covers "
            "the votes and the study config, not what each voter was shown nor the gold answers; a study "
            "created now covers both"
        )
    else:
        trials_hash = trials_digest([(r[1], r[2], json.loads(r[3]), r[4]) for r in trial_rows])
        if trials_hash != srow["trials_hash"]:
            problems.append("trials (images, candidates or gold answers) do not match the study's trials hash (edited)")
    if genesis_digest(name, config_hash, srow["trials_hash"], version) != srow["genesis_hash"]:
        problems.append("genesis hash does not derive from the study's config and trials hashes (edited)")
    adaptive = config.get("assignment") == "adaptive"
    slots = config.get("votes_per_participant") if adaptive else None
    _verify_plans(name, version, people, plans, slots, problems)
    if version < 3 and (consent_rows or any(r["assignment_hash"] is not None for r in _as_dicts(plans))):
        problems.append(f"consents or adaptive assignments in a chain version {version} study (inserted)")
    first_vote: dict[int, str] = {}
    for row in vote_rows:
        first_vote.setdefault(row["participant_id"], row["voted_at"])
    if version >= 3:
        _verify_consents(people, consent_rows, str(config.get("consent") or ""), first_vote, problems)
    prev = srow["genesis_hash"]
    expected_seq = 1
    chain: list[str] = []
    for row in vote_rows:
        report.n_votes += 1
        seq = row["seq"]
        if seq != expected_seq:
            problems.append(f"vote seq {seq}: expected seq {expected_seq} (rows missing)")
        if row["prev_hash"] != prev:
            problems.append(f"vote seq {seq}: prev_hash does not match the previous row")
        context = None
        if version >= 2:
            context = _vote_context(row, sid, bool(config.get("no_preference")), problems)
            if context is None:
                problems.append(f"vote seq {seq}: its assignment, trial or participant is missing (deleted)")
        if row["config_hash"] != config_hash:
            problems.append(f"vote seq {seq}: cast under config {row['config_hash'][:12]}, not the study's")
        if version == 1 or context is not None:
            recomputed = chain_hash(row["prev_hash"], canonical_vote(dict(row), name, context))
            if recomputed != row["row_hash"]:
                problems.append(
                    f"vote seq {seq}: content does not match its hash (the vote, or what was shown with it, "
                    f"was edited)"
                )
        prev = row["row_hash"]
        chain.append(prev)
        expected_seq = seq + 1
    report.head_hash = prev
    if expected_head is not None and expected_head != prev:
        if expected_head in chain:
            k = chain.index(expected_head) + 1
            problems.append(
                f"the expected head is vote {k} of {len(chain)}: {len(chain) - k} vote(s) were added after it"
            )
        else:
            problems.append(
                f"head hash {prev} differs from the expected {expected_head} (votes removed from the end, "
                f"or the chain was rewritten)"
            )
    return report


def _as_dicts(plans: Any) -> list[dict[str, Any]]:
    return [dict(zip(("pid", "ord", "position", "shown_json", "assignment_hash"), p, strict=True)) for p in plans]


def _shown(shown_json: str) -> list[str]:
    try:
        shown = json.loads(shown_json)
    except ValueError:
        return [f"<invalid: {shown_json[:40]}>"]
    return shown if isinstance(shown, list) else [f"<invalid: {shown_json[:40]}>"]


def _verify_plans(
    name: str, version: int, people: Any, plans: Any, slots: int | None, problems: list[str]
) -> None:
    """Each participant's planned assignments and enrolment against the plan hash stored at
    enrolment; each later (adaptive) assignment against its own hash."""
    items: dict[int, list[tuple[int, int, list[str]]]] = {}
    later: dict[int, list[dict[str, Any]]] = {}
    for plan in _as_dicts(plans):
        if plan["assignment_hash"] is None:
            items.setdefault(plan["pid"], []).append((plan["ord"], plan["position"], _shown(plan["shown_json"])))
        else:
            later.setdefault(plan["pid"], []).append(plan)
    for person in people:
        pid, number, plan_hash = person["id"], person["number"], person["plan_hash"]
        if plan_hash is None:
            if version >= 2:
                problems.append(f"participant {number}: no plan hash (its assignments are not covered)")
            continue  # created by an older version: nothing was hashed
        enrolment = enrolment_record(person, slots) if version >= 3 else None
        if plan_digest(name, number, person["token_hash"], items.get(pid, []), enrolment) != plan_hash:
            covers = "; the hash also covers the enrolment record" if enrolment is not None else ""
            problems.append(
                f"participant {number}: assignments (trial order or candidates shown) or token do not match "
                f"the participant's plan hash (edited{covers})"
            )
        for plan in later.get(pid, []):
            if slots is None:
                problems.append(f"participant {number}: an adaptive assignment in a study that assigns none (inserted)")
            expected = assignment_digest(plan_hash, plan["ord"], plan["position"], _shown(plan["shown_json"]))
            if expected != plan["assignment_hash"]:
                problems.append(
                    f"participant {number}: assignment {plan['ord']} (trial or candidates shown) does not match "
                    f"its hash (edited)"
                )


def _verify_consents(
    people: Any, consent_rows: Any, consent_text: str, first_vote: dict[int, str], problems: list[str]
) -> None:
    """Consents against their hashes and the study's text; no vote before consent."""
    plan_of = {p["id"]: (p["number"], p["plan_hash"]) for p in people}
    given: dict[int, str] = {}
    text_hash = sha256_hex(consent_text)
    for row in consent_rows:
        number, plan_hash = plan_of.get(row["participant_id"], (None, None))
        if consent_digest(str(plan_hash), row["consented_at"], row["text_hash"]) != row["consent_hash"]:
            problems.append(f"participant {number}: consent record does not match its hash (edited)")
        if row["text_hash"] != text_hash:
            problems.append(f"participant {number}: consented to a text that is not the study's consent text")
        given[row["participant_id"]] = row["consented_at"]
    if consent_text:
        for pid, voted_at in first_vote.items():
            number = plan_of.get(pid, (pid, None))[0]
            if pid not in given:
                problems.append(f"participant {number}: voted without a consent record (consent deleted?)")
            elif given[pid] > voted_at:
                problems.append(f"participant {number}: voted before consenting")


def _vote_context(row: Any, study_id: int, no_preference: bool, problems: list[str]) -> VoteContext | None:
    """What a stored vote was cast on, from the joined rows (``None`` when a row is missing)."""
    seq = row["seq"]
    if row["a_shown"] is None or row["t_image"] is None or row["p_study"] is None:
        return None
    if row["a_participant"] != row["participant_id"] or row["a_trial"] != row["trial_id"]:
        problems.append(f"vote seq {seq}: its assignment belongs to another participant or trial")
    if row["t_study"] != study_id or row["p_study"] != study_id:
        problems.append(f"vote seq {seq}: its trial or participant belongs to another study")
    try:
        shown = tuple(json.loads(row["a_shown"]))
    except ValueError:
        problems.append(f"vote seq {seq}: the candidates shown are not valid JSON (edited)")
        shown = (row["a_shown"],)  # hashed as it is, so the hash check fails too
    no_choice = no_preference and row["design"] == "pairwise" and row["position"] == -1 and row["choice"] == ""
    if not no_choice and not (0 <= row["position"] < len(shown) and shown[row["position"]] == row["choice"]):
        problems.append(f"vote seq {seq}: its choice is not the candidate shown at its position")
    return VoteContext(row["t_image"], shown, row["t_gold"], row["p_plan"])
