"""Adaptive pairwise assignment: the Bradley-Terry posterior, the pair chosen, and the store's lazy plans."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from leaderboard.study.assignment import (
    BTPosterior,
    bradley_terry,
    choose_pair,
    expected_information,
)
from leaderboard.study.store import StudyStore
from leaderboard.study.validation import load_study


def test_laplace_covariance_is_the_inverse_hessian_of_the_log_posterior() -> None:
    """Against finite differences of the BT log-posterior (prior precision alpha) at the fit."""
    wins = np.array([[0, 6, 8], [4, 0, 5], [2, 5, 0]], dtype=float)
    alpha = 0.1
    post = bradley_terry(3, wins, alpha)

    def log_post(t: np.ndarray) -> float:
        d = t[:, None] - t[None, :]
        return float((wins * -np.log1p(np.exp(-d))).sum() - alpha / 2 * (t @ t))

    eps, t0 = 1e-4, post.strength
    hess = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            e_i, e_j = np.eye(3)[i] * eps, np.eye(3)[j] * eps
            hess[i, j] = (log_post(t0 + e_i + e_j) - log_post(t0 + e_i - e_j) - log_post(t0 - e_i + e_j)
                          + log_post(t0 - e_i - e_j)) / (4 * eps**2)  # fmt: skip
    np.testing.assert_allclose(post.cov, np.linalg.inv(-hess), rtol=1e-3)
    gradient = [(log_post(t0 + np.eye(3)[i] * eps) - log_post(t0 - np.eye(3)[i] * eps)) / (2 * eps) for i in range(3)]
    np.testing.assert_allclose(gradient, 0, atol=1e-3)  # the fit is the posterior mode
    assert post.strength[0] > post.strength[1] > post.strength[2]


def test_the_pair_chosen_is_the_close_uncertain_one() -> None:
    post = BTPosterior(np.array([2.0, 0.1, 0.0, -2.0]), np.diag([0.05, 0.3, 0.3, 0.05]))
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    rng = np.random.default_rng(0)
    assert pairs[choose_pair(post, pairs, [0] * 6, rng, exploration=0.0)] == (1, 2)
    assert expected_information(post, 1, 2) > expected_information(post, 0, 3)
    # exploration 1: always the least-compared pair (uniform coverage)
    picks = {choose_pair(post, pairs, [5, 5, 1, 5, 5, 5], rng, exploration=1.0) for _ in range(20)}
    assert picks == {2}
    # top_k: pairs of two methods outside the current top k are left to exploration
    assert pairs[choose_pair(post, pairs, [0] * 6, rng, exploration=0.0, top_k=1)] in {(0, 1), (0, 2)}


def test_a_clear_order_sends_the_next_comparison_to_the_close_pair() -> None:
    """From votes where m1 > m2 > m3 clearly except m2 ~ m3, the adaptive pick is m2 vs m3."""
    wins = np.array([[0, 30, 30, 30], [3, 0, 11, 30], [3, 10, 0, 30], [0, 2, 3, 0]], dtype=float)
    post = bradley_terry(4, wins)
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert pairs[choose_pair(post, pairs, [0] * 6, np.random.default_rng(1), exploration=0.0)] == (1, 2)


@pytest.fixture()
def adaptive(tmp_path: Path, make_study_files):
    config = load_study(make_study_files(tmp_path, methods=("m1", "m2", "m3", "m4"), n_images=3, design="pairwise",
                                         assignment="adaptive", votes_per_participant=6,
                                         gold={"images": ["img_00"], "per_participant": 1}))  # fmt: skip
    store = StudyStore(tmp_path / "votes.sqlite")
    store.create_study(config)
    return store, config


def _vote_all(store: StudyStore, config, token: str) -> list:
    rank = {"m1": 0, "m2": 1, "m3": 2, "m4": 3, "__hr__": -1, "__bicubic__": 9}
    p = store.participant(token)
    views = []
    while (view := store.next_trial(p)) is not None:
        store.mark_served(view.assignment_id)
        for c in config.criteria:
            store.record_vote(p, view.assignment_id, c.key, min(range(2), key=lambda i: rank[view.shown[i]]))
        views.append(view)
    return views


def test_adaptive_trials_are_assigned_when_reached_and_chained(adaptive) -> None:
    store, config = adaptive
    tokens = store.add_participants(config.name, 6)
    first = store.participant(tokens[0])
    assert len(store.trial_views(first.id)) == 1, "only the gold trial is planned at enrolment"
    gold_order = store.trial_views(first.id)[0].order
    views = _vote_all(store, config, tokens[0])
    assert [v.order for v in views] == list(range(7)) and views[gold_order].is_gold
    assert all(v.total == 7 for v in store.trial_views(first.id))
    for token in tokens[1:]:
        seen = _vote_all(store, config, token)
        assert len({(v.image_id, frozenset(v.shown)) for v in seen}) == len(seen), "no trial twice"
    frame = store.votes_frame(config.name)
    assert len(frame) == 6 * 7 * 2 and store.verify(config.name).ok
    regular = frame[~frame["is_gold"] & (frame["criterion"] == "perceptual")]
    assert set(regular["image_id"]) == {"img_00", "img_01", "img_02"}, "every image covered"
    pairs = Counter(frozenset(s.split("|")) for s in regular["shown"])
    assert sum(pairs.values()) == 6 * 6 and set().union(*pairs) == {"m1", "m2", "m3", "m4"}
    progress = store.progress(config.name)
    assert progress["trials"].tolist() == [7] * 6 and progress["complete"].all()


def test_tabs_racing_for_the_next_trial_get_one_assignment(adaptive) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store, config = adaptive
    (token,) = store.add_participants(config.name, 1)
    p = store.participant(token)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: store.next_trial(p), range(8)))
    assert all(v == got[0] for v in got)
    orders = [v.order for v in store.trial_views(p.id)]
    assert len(orders) == len(set(orders)) == (1 if got[0].is_gold else 2)
    assert store.verify(config.name).ok
