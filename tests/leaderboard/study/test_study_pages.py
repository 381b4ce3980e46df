"""The voting app and the board's study admin page, driven headlessly (AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from leaderboard.study.store import StudyStore
from leaderboard.study.validation import load_study

APP = str(Path(__file__).resolve().parents[3] / "leaderboard" / "app.py")
VOTER_APP = str(Path(__file__).resolve().parents[3] / "leaderboard" / "study" / "voter" / "app.py")
METHODS = ("SecretNetV2", "HiddenDiffusion", "CovertGAN")


@pytest.fixture()
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_study_files) -> tuple[StudyStore, object]:
    url = f"sqlite:///{tmp_path / 'votes.sqlite'}"
    monkeypatch.setenv("SCREENSR_STUDY_STORE", url)
    config = load_study(make_study_files(tmp_path, methods=METHODS, n_images=3, gold={"images": ["img_00"]}))
    store = StudyStore(url)
    store.create_study(config, admin_secret="adm1n")
    return store, config


def _vote_page(token: str | None = None, **params: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(VOTER_APP, default_timeout=60)
    if token is not None:
        at.query_params["token"] = token
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def _submit(at, criterion_index: int, label: str):
    radio = at.radio[criterion_index]
    radio.set_value(label)
    # the form's submit button follows its radio; buttons of finished criteria are gone
    at.button[criterion_index].click().run()
    assert not at.exception, at.exception
    return at


def _all_text(at) -> str:
    """Every field of every element on the page (labels, options, captions, image URLs...)."""
    return "\n".join(str(node.proto) for node in _walk(at._tree) if getattr(node, "proto", None) is not None)


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def test_participant_completes_the_study(study) -> None:
    store, config = study
    (token,) = store.add_participants(config.name, 1)
    at = _vote_page(token)
    total = len(store.trial_views(store.participant(token).id))
    assert total == 4  # 3 images + 1 gold trial
    for step in range(total):
        assert any(f"Comparison {step + 1} of {total}" in s.value for s in at.subheader)
        assert [r.value for r in at.radio] == [None, None], "no preselected answer"
        assert at.radio[0].options == ["A", "B", "C"] or at.radio[0].options == ["A", "B"]
        _submit(at, 0, "A")
        assert len(at.radio) == 1, "one submit per criterion: the answered one is closed"
        _submit(at, 0, "B")
    assert any("completed the study" in s.value for s in at.success)
    frame = store.votes_frame(config.name)
    assert len(frame) == total * 2 and store.verify(config.name).ok
    # the recorded choice is whatever sat at the chosen screen position
    assert (frame.loc[frame["criterion"] == "perceptual", "position"] == 0).all()
    assert (frame["dwell_s"] >= 0).all() and frame["served_at"].notna().all()


def test_refresh_resumes_where_the_participant_was(study) -> None:
    store, config = study
    (token,) = store.add_participants(config.name, 1)
    at = _vote_page(token)
    _submit(at, 0, "A")
    _submit(at, 0, "A")  # trial 1 done
    _submit(at, 0, "B")  # trial 2 half done
    fresh = _vote_page(token)  # a refresh: new session, only the URL survives
    assert any("Comparison 2 of 4" in s.value for s in fresh.subheader)
    assert len(fresh.radio) == 1, "the answered criterion stays answered"
    assert any("1 of 4" in p.proto.text for p in fresh.get("progress"))
    assert len(store.votes_frame(config.name)) == 3


def test_second_submit_of_the_same_trial_is_ignored(study) -> None:
    store, config = study
    (token,) = store.add_participants(config.name, 1)
    first, second = _vote_page(token), _vote_page(token)  # two tabs on the same trial
    _submit(first, 0, "A")
    _submit(second, 0, "C" if len(second.radio[0].options) == 3 else "B")
    assert any("already been recorded" in i.value for i in second.info)
    frame = store.votes_frame(config.name)
    assert len(frame) == 1 and frame.loc[0, "position"] == 0, "the first answer stands"


def test_method_names_never_reach_the_voting_page(study) -> None:
    store, config = study
    (token,) = store.add_participants(config.name, 1)
    at = _vote_page(token)
    for _ in range(4):
        page = _all_text(at)
        for name in (*METHODS, "img_0", "__hr__", "__bicubic__", ".png'"):
            assert name not in page
        images = [img for node in at.get("image") for img in node.proto.imgs]
        assert len(images) == 1 + 2 * len(METHODS) or len(images) == 1 + 2 * 2  # LR + crops + full size
        assert all(img.url.endswith(".png") for img in images), "served as PNG bytes"
        _submit(at, 0, "A")
        _submit(at, 0, "A")


def test_submit_without_choice_records_nothing(study) -> None:
    store, config = study
    (token,) = store.add_participants(config.name, 1)
    at = _vote_page(token)
    at.button[0].click().run()
    assert any("pick one" in w.value for w in at.warning)
    assert store.verify(config.name).n_votes == 0


def test_bad_or_missing_token(study) -> None:
    at = _vote_page("forged-token")
    assert any("not valid" in e.value for e in at.error) and not at.radio
    at = _vote_page()
    assert any("personal link" in i.value for i in at.info)


def test_open_enrolment_link(tmp_path: Path, study, make_study_files) -> None:
    store, _ = study
    path = make_study_files(tmp_path / "open", methods=METHODS, open_enrolment=True)
    data = yaml.safe_load(path.read_text())
    data["name"] = "open-study"
    path.write_text(yaml.safe_dump(data))
    store.create_study(load_study(path))
    at = _vote_page(study="open-study")
    at.button[0].click().run()
    token = at.query_params["token"]
    token = token[0] if isinstance(token, list) else token
    assert store.participant(token).study_name == "open-study"
    assert at.radio and at.radio[0].value is None
    closed = _vote_page(study="toy-study")  # token-only study: no join button
    assert not closed.button


def test_admin_page_needs_the_secret_then_shows_the_analysis(study) -> None:
    from streamlit.testing.v1 import AppTest

    store, config = study
    for token in store.add_participants(config.name, 2):
        p = store.participant(token)
        while (view := store.next_trial(p)) is not None:
            store.mark_served(view.assignment_id)
            for c in config.criteria:
                store.record_vote(p, view.assignment_id, c.key, 0)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("study/pages/study_admin.py").run()
    # inside a form, a value travels with the submit click (no run in between)
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert any("Wrong admin secret" in e.value for e in at.error) and not at.table
    at.text_input[0].input("adm1n")
    at.button[0].click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Votes"] == "16" and metrics["Vote chain"] == "verified" and metrics["Completed"] == "2"
    votes_table = at.table[0].value
    assert set(votes_table["method"]) == set(METHODS) and votes_table["votes"].sum() == 2 * 2 * 3
    assert {d.proto.label for d in at.get("download_button")} >= {"Votes (CSV)", "Votes (Parquet)"}
    at.toggle[0].set_value(True).run()  # live watching: the dashboard becomes an auto-refreshing fragment
    assert not at.exception and {m.label: m.value for m in at.metric}["Votes"] == "16"


def test_admin_invites_participants(study) -> None:
    from streamlit.testing.v1 import AppTest

    store, config = study
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("study/pages/study_admin.py").run()
    at.text_input[0].input("adm1n")
    at.button[0].click().run()
    at.number_input[0].set_value(2)
    at.button[-1].click().run()
    assert not at.exception, at.exception
    links = at.code[0].value.split()
    assert len(links) == 2 and all(link.startswith("http://localhost:8502/?token=") for link in links)
    tokens = [link.split("token=")[1] for link in links]
    assert all(store.participant(t).study_name == config.name for t in tokens)
    assert len(store.progress(config.name)) == 2


def test_missing_images_give_a_clear_message(study, tmp_path: Path) -> None:
    store, config = study
    (token,) = store.add_participants(config.name, 1)
    view = store.next_trial(store.participant(token))
    for candidate in ("__lr__", *view.shown):
        if candidate != "__bicubic__":  # computed from the LR image
            config.file(candidate, view.image_id).unlink(missing_ok=True)
    at = _vote_page(token)
    assert any("cannot be shown" in e.value for e in at.error)


@pytest.mark.parametrize("design", ["pairwise", "acr", "ranking"])
def test_each_design_is_voted_through_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_study_files,
                                              design: str) -> None:  # fmt: skip
    """The design's widget on the vote page records the judgement the participant gave."""
    url = f"sqlite:///{tmp_path / 'votes.sqlite'}"
    monkeypatch.setenv("SCREENSR_STUDY_STORE", url)
    extra = {"no_preference": True, "votes_per_participant": 4} if design == "pairwise" else {}
    config = load_study(make_study_files(tmp_path, methods=METHODS, n_images=2, design=design, reference=True,
                                         gold={"images": ["img_00"]}, **extra))  # fmt: skip
    store = StudyStore(url)
    store.create_study(config)
    (token,) = store.add_participants(config.name, 1)
    at = _vote_page(token)
    total = len(store.trial_views(store.participant(token).id))
    for step in range(total):
        page = _all_text(at)
        for name in (*METHODS, "img_0", "__hr__", "__bicubic__"):
            assert name not in page
        assert any(img.caption == "Reference (HR)" for node in at.get("image") for img in node.proto.imgs)
        for k in range(len(config.criteria)):
            if design == "ranking":
                assert len(at.radio) == len(at.radio[0].options) * (len(config.criteria) - k)
                n = len(at.radio[0].options)
                if k == 0 and step == 0:  # an incomplete ranking is refused with a message
                    for i in range(n):
                        at.radio[i].set_value("1")
                    at.button[0].click().run()
                    assert any("different rank" in w.value for w in at.warning)
                for i in range(n):
                    at.radio[i].set_value(str(n - i))  # the last result on screen is ranked best
            elif design == "acr":
                assert at.radio[0].options[0] == "5 Excellent" and at.radio[0].options[-1] == "1 Bad"
                at.radio[0].set_value("4 Good")
            else:
                assert at.radio[0].options in (["A", "B", "No preference"], ["A", "B"])
                at.radio[0].set_value("No preference" if step % 2 and "No preference" in at.radio[0].options else "B")
            at.button[0].click().run()
            assert not at.exception, at.exception
    assert any("completed the study" in s.value for s in at.success)
    frame = store.votes_frame(config.name)
    assert len(frame) == total * len(config.criteria) and store.verify(config.name).ok
    if design == "ranking":
        assert (frame["ranking"] == frame["shown"].map(lambda s: "|".join(reversed(s.split("|"))))).all()
    elif design == "acr":
        assert (frame["rating"] == 4).all()
    else:
        regular = frame[~frame["is_gold"]]
        assert regular["no_preference"].any() and (regular.loc[~regular["no_preference"], "position"] == 1).all()
