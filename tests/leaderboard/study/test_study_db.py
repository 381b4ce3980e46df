"""Study storage: idempotent creation, tokens, one vote per key, append-only chain, concurrency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sqlite3
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from leaderboard.study.config import StudyConfigError
from leaderboard.study.store import StudyNotFound, StudyStore, check_secret, hash_secret
from leaderboard.study.validation import load_study


@pytest.fixture()
def new_study(tmp_path: Path, make_study_files):
    """``new_study(**yaml_overrides)``: a stored study in ``tmp_path/votes.sqlite`` and its config."""

    def make(**kw: object) -> tuple[StudyStore, object]:
        config = load_study(make_study_files(tmp_path, **kw))
        store = StudyStore(tmp_path / "votes.sqlite")
        store.create_study(config, admin_secret="s3cret")
        return store, config

    return make


def _vote_all(store: StudyStore, token: str, position: int = 0, repeats: int = 1) -> int:
    """Vote every criterion of every assigned trial ``repeats`` times; returns how many were recorded."""
    participant = store.participant(token)
    recorded = 0
    keys = [c.key for c in store.study(participant.study_name).config.criteria]
    for view in store.trial_views(participant.id):
        store.mark_served(view.assignment_id)
        for key in keys:
            for _ in range(repeats):
                pos = (position + view.order) % len(view.shown)
                recorded += store.record_vote(participant, view.assignment_id, key, pos).recorded
    return recorded


def test_create_is_idempotent_and_refuses_changed_definition(tmp_path: Path, make_study_files, new_study) -> None:
    store, config = new_study()
    info, secret, created = store.create_study(config)
    assert not created and secret is None and info.config_hash == config.config_hash()
    changed = load_study(make_study_files(tmp_path, seed=99))
    with pytest.raises(StudyConfigError, match="different definition; .*new name"):
        store.create_study(changed)
    assert store.study_names() == ["toy-study"]


def _without_seed(path: Path) -> Path:
    data = yaml.safe_load(path.read_text())
    data.pop("seed")
    path.write_text(yaml.safe_dump(data))
    return path


def _plans(store: StudyStore, tokens: list[str]) -> list[list[tuple[str, tuple[str, ...]]]]:
    return [[(v.image_id, v.shown) for v in store.trial_views(store.participant(t).id)] for t in tokens]


def test_candidate_order_uses_a_secret_seed_unless_the_yaml_fixes_one(tmp_path: Path, make_study_files) -> None:
    from leaderboard.study.assignment import assign_trials, build_trials

    config = load_study(_without_seed(make_study_files(tmp_path, n_images=8)))
    assert config.seed is None
    with pytest.raises(StudyConfigError, match="fixes no seed"):
        assign_trials(config, build_trials(config), 0, {})
    stores = [StudyStore(tmp_path / f"{k}.sqlite") for k in range(2)]
    infos = [store.create_study(config)[0] for store in stores]
    seeds = [info.assignment_seed for info in infos]
    assert None not in seeds and seeds[0] != seeds[1], "a fresh secret seed per study"
    plans = [_plans(store, store.add_participants(config.name, 2)) for store in stores]
    assert plans[0] != plans[1], "the same YAML twice: different, unpredictable screen orders"
    # ...and not the order anyone can recompute from a known seed (the old default was 0)
    public = assign_trials(config, build_trials(config), 0, {}, seed=0)
    by_position = {t.position: t.image_id for t in build_trials(config)}
    assert plans[0][0] != [(by_position[a.trial_position], a.shown) for a in public]
    # the drawn seed is kept: re-running create changes nothing, later participants use it too
    again, _, created = stores[0].create_study(config)
    assert not created and again.assignment_seed == seeds[0]
    # the secret stays in the store: not in the config that exports and reports carry
    assert str(seeds[0]) not in json.dumps(stores[0].study(config.name).config.to_dict())


def test_a_seed_fixed_in_the_yaml_reproduces_the_order(tmp_path: Path, make_study_files) -> None:
    from leaderboard.study.assignment import assign_trials, build_trials

    config = load_study(make_study_files(tmp_path, n_images=4))  # the fixture fixes seed: 7
    assert config.seed == 7
    plans = []
    for k in range(2):
        store = StudyStore(tmp_path / f"{k}.sqlite")
        info, _, _ = store.create_study(config)
        assert info.assignment_seed is None
        plans.append(_plans(store, store.add_participants(config.name, 1)))
    assert plans[0] == plans[1]
    by_position = {t.position: t.image_id for t in build_trials(config)}
    expected = [(by_position[a.trial_position], a.shown) for a in assign_trials(config, build_trials(config), 0, {}, {})]
    assert plans[0][0] == expected


def test_unknown_study_lists_known(tmp_path: Path, new_study) -> None:
    store, _ = new_study()
    with pytest.raises(StudyNotFound, match="'nope'.*known studies: toy-study"):
        store.study("nope")


def test_tokens_and_admin_secret_stored_as_hashes_only(tmp_path: Path, new_study) -> None:
    store, config = new_study()
    tokens = store.add_participants(config.name, 3)
    assert len(set(tokens)) == 3
    with sqlite3.connect(tmp_path / "votes.sqlite") as raw:
        dump = "\n".join(raw.iterdump())
    for token in tokens:
        assert token not in dump
        assert hashlib.sha256(token.encode()).hexdigest() in dump
    assert "s3cret" not in dump
    assert store.check_admin(config.name, "s3cret") and not store.check_admin(config.name, "S3cret")
    assert not store.check_admin(config.name, "")
    assert store.participant("not-a-token") is None and store.participant("") is None
    assert check_secret("x", hash_secret("x")) and not check_secret("x", "garbage")


def test_participants_get_server_assigned_trials(tmp_path: Path, new_study) -> None:
    store, config = new_study(n_images=4, votes_per_participant=2, gold={"images": ["img_00"]})
    tokens = store.add_participants(config.name, 4)
    views = [store.trial_views(store.participant(t).id) for t in tokens]
    assert all(len(v) == 3 and sum(x.is_gold for x in v) == 1 for v in views)
    regular = [x.image_id for v in views for x in v if not x.is_gold]
    assert sorted(regular) == sorted(["img_00", "img_01", "img_02", "img_03"] * 2), "balanced coverage"


def test_vote_once_per_participant_trial_criterion(tmp_path: Path, new_study) -> None:
    store, config = new_study()
    (token,) = store.add_participants(config.name, 1)
    p = store.participant(token)
    view = store.next_trial(p)
    served = store.mark_served(view.assignment_id)
    assert store.mark_served(view.assignment_id) == served, "first serve time is kept"
    first = store.record_vote(p, view.assignment_id, "perceptual", 2)
    again = store.record_vote(p, view.assignment_id, "perceptual", 0)
    assert first.recorded and first.choice == view.shown[2]
    assert not again.recorded and again.choice == view.shown[2] and again.seq == first.seq
    frame = store.votes_frame(config.name)
    assert len(frame) == 1 and frame.loc[0, "choice"] == view.shown[2] and frame.loc[0, "dwell_s"] >= 0
    assert store.next_trial(p).assignment_id == view.assignment_id, "consistency still open"
    store.record_vote(p, view.assignment_id, "consistency", 1)
    assert store.next_trial(p).assignment_id != view.assignment_id


def test_vote_validation(tmp_path: Path, new_study) -> None:
    store, config = new_study()
    a, b = (store.participant(t) for t in store.add_participants(config.name, 2))
    view_b = store.next_trial(b)
    with pytest.raises(PermissionError, match="not assigned"):
        store.record_vote(a, view_b.assignment_id, "perceptual", 0)
    view_a = store.next_trial(a)
    with pytest.raises(ValueError, match="position 3 is outside the 3"):
        store.record_vote(a, view_a.assignment_id, "perceptual", 3)
    with pytest.raises(ValueError, match="criterion 'beauty'"):
        store.record_vote(a, view_a.assignment_id, "beauty", 0)
    assert store.verify(config.name).n_votes == 0


def test_open_enrolment(tmp_path: Path, make_study_files, new_study) -> None:
    store, config = new_study()
    with pytest.raises(PermissionError, match="personal link"):
        store.enrol(config.name)
    path = make_study_files(tmp_path / "open", open_enrolment=True)
    data = yaml.safe_load(path.read_text())
    data["name"] = "open-study"
    path.write_text(yaml.safe_dump(data))
    store.create_study(load_study(path))
    token = store.enrol("open-study")
    assert store.participant(token).study_name == "open-study"
    assert store.progress("open-study")["enrolled_via"].tolist() == ["open"]


def test_votes_table_is_append_only(tmp_path: Path, new_study) -> None:
    store, config = new_study()
    (token,) = store.add_participants(config.name, 1)
    _vote_all(store, token)
    for statement in ("UPDATE study_votes SET choice = 'alpha'", "DELETE FROM study_votes"):
        with pytest.raises(DatabaseError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    assert store.verify(config.name).ok


def _tamper(db: Path, sql: str) -> None:
    # An attacker with write access to the file can drop the triggers; the chain still catches it.
    with sqlite3.connect(db) as raw:
        raw.execute("DROP TRIGGER study_votes_no_update")
        raw.execute("DROP TRIGGER study_votes_no_delete")
        raw.execute(sql)


def test_verify_detects_an_edited_vote(tmp_path: Path, new_study) -> None:
    store, config = new_study()
    for token in store.add_participants(config.name, 2):
        _vote_all(store, token)
    report = store.verify(config.name)
    assert report.ok and report.n_votes == 16
    _tamper(
        tmp_path / "votes.sqlite",
        "UPDATE study_votes SET choice = CASE choice WHEN 'gamma' THEN 'alpha' ELSE 'gamma' END WHERE seq = 5",
    )
    tampered = store.verify(config.name)
    assert not tampered.ok and any("seq 5" in p and "edited" in p for p in tampered.problems)


def test_verify_detects_deleted_and_truncated_votes(tmp_path: Path, new_study) -> None:
    store, config = new_study()
    for token in store.add_participants(config.name, 2):
        _vote_all(store, token)
    head = store.verify(config.name).head_hash
    _tamper(tmp_path / "votes.sqlite", "DELETE FROM study_votes WHERE seq = 16")
    assert store.verify(config.name).ok, "dropping the last vote leaves a valid shorter chain..."
    assert not store.verify(config.name, expected_head=head).ok, "...which the published head exposes"
    with sqlite3.connect(tmp_path / "votes.sqlite") as raw:
        raw.execute("DELETE FROM study_votes WHERE seq = 7")
    problems = store.verify(config.name).problems
    assert any("seq 8" in p for p in problems)


def test_threads_no_vote_lost_none_twice(tmp_path: Path, new_study) -> None:
    store, config = new_study(n_images=6)
    tokens = store.add_participants(config.name, 16)
    barrier = threading.Barrier(32)

    def worker(token: str) -> int:
        barrier.wait()
        return _vote_all(store, token, repeats=2)

    # two threads per participant race on the same keys
    with ThreadPoolExecutor(32) as pool:
        recorded = sum(pool.map(worker, tokens + tokens))
    expected = 16 * 6 * 2
    assert recorded == expected
    frame = store.votes_frame(config.name)
    assert len(frame) == expected
    assert not frame.duplicated(["participant", "trial", "criterion"]).any()
    assert frame["seq"].tolist() == list(range(1, expected + 1))
    assert store.verify(config.name).ok


def _process_worker(args: tuple[str, list[str]]) -> int:
    db, tokens = args
    store = StudyStore(db)
    try:
        return sum(_vote_all(store, t, repeats=2) for t in tokens)
    finally:
        store.close()


def test_processes_no_vote_lost_none_twice(tmp_path: Path, new_study) -> None:
    store, config = new_study(n_images=4)
    tokens = store.add_participants(config.name, 8)
    db = str(tmp_path / "votes.sqlite")
    # 4 processes; each participant is handled by two processes at once
    jobs = [(db, tokens[0:4]), (db, tokens[4:8]), (db, tokens[2:6]), (db, tokens[6:8] + tokens[0:2])]
    with ProcessPoolExecutor(4, mp_context=mp.get_context("spawn")) as pool:
        recorded = sum(pool.map(_process_worker, jobs))
    expected = 8 * 4 * 2
    frame = store.votes_frame(config.name)
    assert recorded == expected == len(frame)
    assert not frame.duplicated(["participant", "trial", "criterion"]).any()
    assert store.verify(config.name).ok


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from leaderboard.study.store import default_store_url, normalise_url

    monkeypatch.setenv("SCREENSR_STUDY_STORE", "sqlite:///x.db")
    assert default_store_url() == "sqlite:///x.db" and normalise_url(None) == "sqlite:///x.db"
    assert normalise_url(tmp_path / "a.sqlite") == f"sqlite:///{tmp_path / 'a.sqlite'}"
    monkeypatch.delenv("SCREENSR_STUDY_STORE")
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    assert default_store_url() == f"sqlite:///{tmp_path / 'home' / 'studies.sqlite'}"
    # an empty SCREENSR_HOME is unset (core.paths), never the working directory
    monkeypatch.setenv("SCREENSR_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_store_url() == f"sqlite:///{tmp_path / 'user' / '.cache' / 'screensr' / 'studies.sqlite'}"
    with pytest.raises(ValueError, match="cannot open study store"):
        StudyStore("nosuchdialect://x")


def test_group_commit_isolates_bad_requests(tmp_path: Path, new_study) -> None:
    from leaderboard.study.store import WriteRequest

    store, config = new_study()
    a, b = (store.participant(t) for t in store.add_participants(config.name, 2))
    va, vb = store.next_trial(a), store.next_trial(b)
    batch = [
        WriteRequest("vote", a, va.assignment_id, "perceptual", 0),
        WriteRequest("vote", a, vb.assignment_id, "perceptual", 0),  # not a's trial
        WriteRequest("vote", b, vb.assignment_id, "perceptual", 7),  # no such position
        WriteRequest("serve", None, vb.assignment_id),
        WriteRequest("vote", b, vb.assignment_id, "consistency", 1),
        WriteRequest("vote", a, va.assignment_id, "perceptual", 2),  # repeat inside the batch
    ]
    store._commit_batch(batch)
    assert all(r.done for r in batch)
    assert batch[0].outcome.recorded and batch[0].outcome.seq == 1
    assert isinstance(batch[1].error, PermissionError) and isinstance(batch[2].error, ValueError)
    assert batch[3].outcome == store.trial_views(b.id)[0].served_at
    assert batch[4].outcome.recorded and batch[4].outcome.seq == 2
    assert not batch[5].outcome.recorded and batch[5].outcome.choice == va.shown[0]
    report = store.verify(config.name)
    assert report.ok and report.n_votes == 2


def _vote_and_acknowledge(db: str, tokens: list[str], ack_file: str) -> None:
    """Vote forever-ish, appending one line per vote the store confirmed (fsynced, like a reply)."""
    store = StudyStore(db)
    with open(ack_file, "a") as ack:
        for token in tokens:
            p = store.participant(token)
            while (view := store.next_trial(p)) is not None:
                store.mark_served(view.assignment_id)
                for key in ("perceptual", "consistency"):
                    outcome = store.record_vote(p, view.assignment_id, key, 0)
                    ack.write(f"{outcome.seq} {outcome.row_hash}\n")
                    ack.flush()
                    os.fsync(ack.fileno())


def test_killed_writer_loses_no_confirmed_vote(tmp_path: Path, new_study) -> None:
    import signal
    import time

    store, config = new_study(n_images=4)
    tokens = store.add_participants(config.name, 40)
    ack_file = tmp_path / "acks.txt"
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_vote_and_acknowledge, args=(str(tmp_path / "votes.sqlite"), tokens, str(ack_file)))
    proc.start()
    deadline = time.monotonic() + 60
    while (not ack_file.exists() or len(ack_file.read_text().splitlines()) < 15) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-run, possibly mid-transaction
    proc.join(10)
    acked = [line.split() for line in ack_file.read_text().splitlines() if line.strip()]
    assert len(acked) >= 15, "the writer never got going"
    frame = store.votes_frame(config.name)
    stored = dict(zip(frame["seq"].astype(str), frame["row_hash"], strict=True))
    assert all(stored.get(seq) == row_hash for seq, row_hash in acked), "a confirmed vote is missing"
    assert len(frame) in (len(acked), len(acked) + 1)  # at most the vote in flight is beyond the acks
    assert store.verify(config.name).ok
