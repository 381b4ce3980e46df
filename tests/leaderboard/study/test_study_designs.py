"""The four study designs: definitions, trials, the one judgement layout, and each design's report."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import numpy as np
import pytest

from leaderboard.study.assignment import build_trials
from leaderboard.study.config import BICUBIC, GOLD_HIGH, GOLD_LOW, HR, StudyConfigError, config_from_dict
from leaderboard.study.report import study_report
from leaderboard.study.store import StudyStore, VoteRejected
from leaderboard.study.validation import load_study

METHODS = ("a1", "a2", "a3", "a4")
RANK = {"a1": 0, "a2": 1, "a3": 2, "a4": 3, HR: -1, BICUBIC: 9}  # every voter's preference: lower is better


def _base(**kw: object) -> dict:
    return {"name": "s", "lr": "/lr", "methods": {"a": "/a", "b": "/b"}, **kw}


@pytest.mark.parametrize(
    "extra,match",
    [
        ({"design": "pairwse"}, "did you mean 'pairwise'"),
        ({"no_preference": True}, "no_preference applies to design: pairwise only"),
        ({"design": "acr", "candidates_per_trial": 2}, "candidates_per_trial applies to best_of_n and ranking"),
        ({"assignment": "adaptive", "votes_per_participant": 3}, "adaptive needs design: pairwise"),
        ({"design": "pairwise", "assignment": "adaptive"}, "adaptive needs votes_per_participant"),
        ({"recruitment": {"platforms": ["prolfic"]}}, "did you mean 'prolific'"),
        ({"recruitment": {"completion_url": "javascript:alert(1)"}}, "must be an http"),
        ({"adaptive": {"exploration": 1.5}}, "between 0 and 1"),
        ({"screening": {"min_respons_s": 2}}, "did you mean 'min_response_s'"),
        ({"daily_cap": 0}, "daily_cap must be a positive integer"),
    ],
)
def test_design_settings_are_checked(extra: dict, match: str) -> None:
    with pytest.raises(StudyConfigError, match=match):
        config_from_dict(_base(**extra))


def test_settings_added_with_the_designs_leave_older_definitions_unchanged() -> None:
    """A best-of-N definition's stored form (and so its config hash) has none of the new keys."""
    plain = config_from_dict(_base())
    stored = plain.to_dict()
    assert not {"design", "reference", "assignment", "recruitment", "consent", "screening", "daily_cap"} & set(stored)
    assert config_from_dict(stored) == plain
    pairwise = config_from_dict(_base(design="pairwise", screening={"min_response_s": 2.0}))
    assert pairwise.to_dict()["design"] == "pairwise" and pairwise.to_dict()["screening"]["min_response_s"] == 2.0
    assert config_from_dict(pairwise.to_dict()) == pairwise and pairwise.config_hash() != plain.config_hash()


def test_trials_per_design(tmp_path: Path, make_study_files) -> None:
    def trials(design: str):
        root = tmp_path / design
        return build_trials(load_study(make_study_files(root, methods=METHODS, n_images=3, design=design,
                                                        gold={"images": ["img_00"]})))  # fmt: skip

    best, pairs, acr, ranking = (trials(d) for d in ("best_of_n", "pairwise", "acr", "ranking"))
    assert [len([t for t in x if not t.is_gold]) for x in (best, pairs, acr, ranking)] == [3, 3 * comb(4, 2), 3 * 4, 3]
    assert {t.candidates for t in pairs if not t.is_gold} == {tuple(p) for p in
                                                              [(a, b) for i, a in enumerate(METHODS) for b in METHODS[i + 1:]]}  # fmt: skip
    assert all(len(t.candidates) == 1 for t in acr)
    # gold: HR against the distractor, except ACR: the HR (hidden reference, rated high) and the
    # distractor (rated low) as two one-candidate trials, so neither constant answer passes
    assert [(t.candidates, t.gold_answer) for t in pairs if t.is_gold] == [((HR, BICUBIC), HR)]
    assert [(t.candidates, t.gold_answer) for t in acr if t.is_gold] == [((HR,), GOLD_HIGH), ((BICUBIC,), GOLD_LOW)]
    assert [t.position for t in pairs] == list(range(len(pairs)))


def test_reference_needs_an_hr_image_for_every_trial(tmp_path: Path, make_study_files) -> None:
    path = make_study_files(tmp_path, reference=True, images={"lr": "lr"})
    with pytest.raises(StudyConfigError, match="reference: true shows the HR image"):
        load_study(path)


def _answer(design: str, shown: tuple[str, ...], order: int) -> dict:
    """The answer of a voter who follows RANK (and, in pairwise, has no preference every 5th time)."""
    best = min(range(len(shown)), key=lambda i: RANK[shown[i]])
    if design == "acr":
        return {"rating": 5 if shown[0] == HR else (2 if shown[0] == BICUBIC else 4 - RANK[shown[0]])}
    if design == "ranking":
        return {"ranking": sorted(range(len(shown)), key=lambda i: RANK[shown[i]])}
    if design == "pairwise" and order % 5 == 4 and HR not in shown:
        return {"position": None}
    return {"position": best}


@pytest.fixture(scope="module")
def voted(tmp_path_factory: pytest.TempPathFactory, make_study_files):
    """``voted(design, participants=5, **yaml)``: a stored study of that design whose participants
    voted everything (built once per module and arguments; tests that vote use participants=0)."""
    built: dict[str, tuple[StudyStore, object]] = {}

    def make(design: str, participants: int = 5, **kw: object) -> tuple[StudyStore, object]:
        key = json.dumps([design, participants, kw], sort_keys=True)
        if key in built and participants:
            return built[key]
        root = tmp_path_factory.mktemp(design)
        extra = {"no_preference": True} if design == "pairwise" else {}
        config = load_study(make_study_files(root, methods=METHODS, n_images=3, design=design,
                                             gold={"images": ["img_00"]}, **{**extra, **kw}))  # fmt: skip
        store = StudyStore(root / "votes.sqlite")
        store.create_study(config)
        for token in store.add_participants(config.name, participants):
            p = store.participant(token)
            while (view := store.next_trial(p)) is not None:
                store.mark_served(view.assignment_id)
                for c in config.criteria:
                    store.record_vote(p, view.assignment_id, c.key, **_answer(design, view.shown, view.order))
        built[key] = store, config
        return store, config

    return make


@pytest.mark.parametrize("design", ["best_of_n", "pairwise", "acr", "ranking"])
def test_every_design_is_stored_in_one_layout_and_chained(voted, design: str) -> None:
    store, config = voted(design)
    frame = store.votes_frame(config.name)
    assert (frame["design"] == design).all() and store.verify(config.name).ok
    regular = frame[~frame["is_gold"]]
    assert set(frame.columns) >= {"design", "position", "choice", "rating", "ranking", "no_preference",
                                  "response_json", "shown", "gold_answer", "correct"}  # fmt: skip
    responses = [json.loads(r) for r in frame["response_json"]]
    if design == "acr":
        assert all(set(r) == {"rating"} for r in responses) and frame["rating"].between(1, 5).all()
        assert (frame["choice"] == frame["shown"]).all() and (frame["position"] == 0).all()
    elif design == "ranking":
        assert (frame["ranking"].str.split("|").map(len) == frame["n_shown"]).all()
        assert (frame["choice"] == frame["ranking"].str.split("|").str[0]).all()
        assert all(r["ranking"] == rk.split("|") for r, rk in zip(responses, frame["ranking"], strict=True))
    else:
        assert all(set(r) == {"choice"} for r in responses)
    if design == "pairwise":
        ties = frame[frame["no_preference"]]
        assert len(ties) > 0 and (ties["choice"] == "").all() and (ties["position"] == -1).all()
        assert all(json.loads(r) == {"choice": None} for r in ties["response_json"])
    # every voter followed RANK, so every gold judgement is correct
    assert frame[frame["is_gold"]]["correct"].all()
    assert len(regular) == 5 * len(config.criteria) * {"best_of_n": 3, "ranking": 3, "acr": 12, "pairwise": 18}[design]


@pytest.mark.parametrize(
    "design,answer,match",
    [
        ("acr", {"rating": 6}, "rating 6 is not on the scale 1-5"),
        ("acr", {"position": 0}, "rating None"),
        ("ranking", {"ranking": [0, 0, 1, 2]}, "each of the 4 screen positions once"),
        ("ranking", {"ranking": [0, 1, 2]}, "each of the 4 screen positions once"),
        ("pairwise", {"position": 2}, "position 2 is outside the 2 candidates"),
        ("best_of_n", {"position": None}, "position None is outside"),
    ],
)
def test_answers_that_do_not_fit_the_design_are_refused(voted, design: str, answer: dict, match: str) -> None:
    store, config = voted(design, participants=0)
    p = store.participant(store.add_participants(config.name, 1)[0])
    view = store.next_trial(p)
    while view.is_gold:  # a regular trial (4 candidates for ranking)
        for c in config.criteria:
            store.record_vote(p, view.assignment_id, c.key, **_answer(design, view.shown, view.order))
        view = store.next_trial(p)
    before = store.verify(config.name).n_votes
    with pytest.raises(VoteRejected, match=match):
        store.record_vote(p, view.assignment_id, "perceptual", **answer)
    assert store.verify(config.name).n_votes == before


def test_no_preference_only_where_the_study_offers_it(voted) -> None:
    store, config = voted("pairwise", participants=0, no_preference=False)
    p = store.participant(store.add_participants(config.name, 1)[0])
    view = store.next_trial(p)
    with pytest.raises(VoteRejected, match="offers no 'no preference'"):
        store.record_vote(p, view.assignment_id, "perceptual", None)


def test_pairwise_report_bradley_terry_pairs_and_ties(voted) -> None:
    store, config = voted("pairwise")
    frame = store.votes_frame(config.name)
    report = study_report(config.name, frame, list(METHODS), ["perceptual", "consistency"], design="pairwise",
                          fit_boot=50)  # fmt: skip
    scores = report.scores[report.scores["criterion"] == "perceptual"]
    assert scores["method"].tolist() == list(METHODS), "strengths follow every voter's order"
    assert scores["strength"].sum() == pytest.approx(1.0) and (scores["ci_low"] <= scores["strength"]).all()
    pairs = report.pairs[report.pairs["criterion"] == "perceptual"].set_index(["method_a", "method_b"])
    regular = frame[~frame["is_gold"] & (frame["criterion"] == "perceptual")]
    both = regular[regular["shown"].isin(["a1|a2", "a2|a1"])]
    assert pairs.loc[("a1", "a2"), "ties"] == int(both["no_preference"].sum())
    assert pairs.loc[("a1", "a2"), "wins_a"] == int((both["choice"] == "a1").sum()) and pairs.loc[("a1", "a2"), "wins_b"] == 0
    assert report.votes is None and report.mos is None
    assert "## Pairs of methods" in report.to_markdown() and "bradley-terry" in report.to_markdown()


def test_acr_report_mos_with_t_intervals(voted) -> None:
    from scipy import stats as sps

    store, config = voted("acr")
    frame = store.votes_frame(config.name)
    report = study_report(config.name, frame, list(METHODS), ["perceptual", "consistency"], design="acr")
    mos = report.mos[report.mos["criterion"] == "perceptual"].set_index("method")
    regular = frame[~frame["is_gold"] & (frame["criterion"] == "perceptual")]
    ratings = regular[regular["choice"] == "a1"]["rating"].to_numpy()
    assert mos.loc["a1", "mos"] == pytest.approx(ratings.mean()) == 4.0 and mos.loc["a4", "mos"] == 1.0
    # a constant rating has a zero-width interval; check the formula on varied ratings below
    assert mos.loc["a1", "ci_low"] == mos.loc["a1", "ci_high"] == 4.0
    assert len(report.mos_images) == 2 * 4 * 3
    from leaderboard.study.scores import mos_table

    varied = regular.assign(rating=np.resize([5.0, 3.0, 4.0, 4.0, 2.0], len(regular)))
    row = mos_table(varied, ["a1"], ["perceptual"]).iloc[0]
    values = varied[varied["choice"] == "a1"]["rating"].to_numpy()
    lo, hi = sps.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=sps.sem(values))
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))


def test_ranking_report_plackett_luce_and_kendalls_w(voted) -> None:
    store, config = voted("ranking")
    report = study_report(config.name, store.votes_frame(config.name), list(METHODS), ["perceptual"],
                          design="ranking", fit_boot=30)  # fmt: skip
    assert report.scores["method"].tolist() == list(METHODS)
    w = report.concordance.iloc[0]
    assert w["images"] == 3 and w["mean_w"] == pytest.approx(1.0), "identical rankings: perfect concordance"
    assert w["dof"] == 3 * 3 and w["p_value"] < 1e-3


def test_best_of_n_report_adds_luce_scores(voted) -> None:
    store, config = voted("best_of_n")
    report = study_report(config.name, store.votes_frame(config.name), list(METHODS), ["perceptual"], fit_boot=30)
    assert report.votes.iloc[0]["method"] == "a1" and report.votes.iloc[0]["votes"] == 15
    assert report.scores.iloc[0]["method"] == "a1" and report.scores.iloc[0]["rank"] == 1
