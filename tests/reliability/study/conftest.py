"""Fixtures of the study attack tests: a small voted study, and edits made as an attacker would.

The attacker has write access to the SQLite file: they drop the triggers that freeze the tables
and edit rows with raw SQL, bypassing the store. Whatever they change, ``verify`` must notice, or
(for a chain rewritten as a whole, or votes removed from the end) the published head must.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from leaderboard.study.store import StudyStore
from leaderboard.study.validation import load_study

METHODS = ("alpha", "beta", "gamma")


@dataclass
class VotedStudy:
    """A study with a gold trial, three participants (all, some and none of their trials voted)."""

    db: Path
    store: StudyStore
    name: str
    tokens: list[str]
    head: str
    n_votes: int


def _write_study(root: Path, n_images: int = 3, methods: tuple[str, ...] = METHODS, **overrides: object) -> Path:
    """LR/HR/SR PNGs (8x8 LR, x4) and a study YAML with a gold trial; returns the YAML path.

    Each method's outputs sit in a folder named after the method (so a leaked path names it).
    """
    rng = np.random.default_rng(0)
    for folder in ("lr", "hr", *methods):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        lr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(lr).save(root / "lr" / f"img_{i:02d}.png")
        hr = np.kron(lr, np.ones((4, 4, 1), dtype=np.uint8))
        Image.fromarray(hr).save(root / "hr" / f"img_{i:02d}.png")
        for k, m in enumerate(methods):
            sr = hr.copy()
            sr[0, 0, 0] = 10 * (k + 1)
            Image.fromarray(sr).save(root / m / f"img_{i:02d}.png")
    definition = {
        "name": "attacked",
        "images": {"lr": "lr", "hr": "hr"},
        "methods": {m: m for m in methods},
        "gold": {"images": ["img_00"]},
        "crop": 16,
        **overrides,
    }
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False), encoding="utf-8")
    return path


def _copy_study(template: VotedStudy, root: Path) -> VotedStudy:
    """A private copy of ``template`` in ``root`` (built once per module: tests stay fast)."""
    import shutil

    db = root / "votes.sqlite"
    shutil.copyfile(template.db, db)
    return VotedStudy(db, StudyStore(db), template.name, template.tokens, template.head, template.n_votes)


def _voted_study(root: Path) -> VotedStudy:
    """Create the study in ``root/votes.sqlite`` and vote: participant 0 all, 1 half, 2 nothing.

    The store is closed when this returns (so the file is complete on its own, WAL checkpointed);
    ``store`` is a fresh one on the same file.
    """
    db = root / "votes.sqlite"
    config = load_study(_write_study(root))
    store = StudyStore(db)
    store.create_study(config, admin_secret="adm1n")
    tokens = store.add_participants(config.name, 3)
    for k, token in enumerate(tokens):
        p = store.participant(token)
        views = store.trial_views(p.id)
        for view in views[: len(views) * (2 - k) // 2]:
            store.mark_served(view.assignment_id)
            for c in config.criteria:
                store.record_vote(p, view.assignment_id, c.key, (view.order + k) % len(view.shown))
    report = store.verify(config.name)
    assert report.ok and report.n_votes > 0, report.problems
    store.close()
    return VotedStudy(db, StudyStore(db), config.name, tokens, report.head_hash, report.n_votes)


def _attack(db: Path, *statements: str | tuple[str, tuple]) -> None:
    """Drop every trigger of the file, then run ``statements`` (raw SQL, or ``(sql, parameters)``)."""
    with sqlite3.connect(db) as raw:
        for (trigger,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            raw.execute(f"DROP TRIGGER {trigger}")
        for statement in statements:
            sql, params = (statement, ()) if isinstance(statement, str) else statement
            raw.execute(sql, params)


def _query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a read-only query on the raw file."""
    with sqlite3.connect(db) as raw:
        return raw.execute(sql, params).fetchall()


def _swapped(shown_json: str) -> str:
    """``shown_json`` with its first two candidates swapped (what a voter saw, rewritten)."""
    shown = json.loads(shown_json)
    shown[0], shown[1] = shown[1], shown[0]
    return json.dumps(shown)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def write_study() -> Callable[..., Path]:
    """``write_study(root, n_images=3, methods=METHODS, **yaml_overrides)`` -> the YAML path."""
    return _write_study


@pytest.fixture(scope="session")
def voted_study() -> Callable[[Path], VotedStudy]:
    """``voted_study(root)``: create and vote a study in ``root/votes.sqlite`` (see ``_voted_study``)."""
    return _voted_study


@pytest.fixture(scope="session")
def attack() -> Callable[..., None]:
    """``attack(db, *statements)``: drop every trigger of the file, then run raw SQL."""
    return _attack


@pytest.fixture(scope="session")
def query() -> Callable[..., list[tuple]]:
    """``query(db, sql, params=())``: rows of a read-only query on the raw file."""
    return _query


@pytest.fixture(scope="session")
def swapped() -> Callable[[str], str]:
    """``swapped(shown_json)``: the JSON list with its first two candidates swapped."""
    return _swapped


@pytest.fixture(scope="session")
def voted_template(tmp_path_factory: pytest.TempPathFactory) -> VotedStudy:
    """One voted study for the whole run; tests attack private copies (``voted_copy``)."""
    built = _voted_study(tmp_path_factory.mktemp("template"))
    built.store.close()
    return built


@pytest.fixture()
def voted_copy(voted_template: VotedStudy, tmp_path: Path) -> Iterator[VotedStudy]:
    """A private copy of the voted template study in ``tmp_path``."""
    copy = _copy_study(voted_template, tmp_path)
    yield copy
    copy.store.close()
