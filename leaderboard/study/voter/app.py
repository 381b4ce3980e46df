"""The voting app: one assigned trial at a time, candidates anonymised, one vote per criterion.

Serve it with ``screensr board study serve`` (its own Streamlit server, separate from the results
board). Participants open their personal link ``.../?token=TOKEN`` (``screensr board study
create`` prints them); for studies with open enrolment ``.../?study=NAME``; participants sent by a
crowdsourcing platform the study recruits through ``.../?study=NAME&PROLIFIC_PID=...&STUDY_ID=...
&SESSION_ID=...`` (Prolific) or ``...&workerId=...&assignmentId=...&hitId=...`` (MTurk). A study
with a consent text shows it (and its instructions) before the first trial; a finished
participant sees the study's completion code and the link back to the platform.

The question of each criterion follows the study's design (:mod:`leaderboard.study.voter.answers`):
pick the best result (best-of-N), A or B (pairwise, optionally "No preference"), a rating on the
P.910 scale (ACR, one result at a time), or a rank for every result (ranking). With
``reference: true`` the HR image is shown next to the LR input.

What a voter can reach is this one page and nothing else: the app has no other page (every URL
path shows this page), no sidebar or navigation, no Streamlit toolbar or menu (hidden here and
by the options ``serve`` starts Streamlit with), and never a method name: the page shows neutral
labels (A, B, C...) and serves the images as metadata-free PNG bytes; the server maps the chosen
label to the method. An error shows a neutral message with an error id; its details (paths,
exception) go to the server log and to the study store, where the Study admin page lists them.

Everything that matters lives in the study store (assignments, served times, votes), so a refresh
resumes at the first trial with a criterion still open. The store is ``$SCREENSR_STUDY_STORE``
(default ``$SCREENSR_HOME/studies.sqlite``).
"""

from __future__ import annotations

import logging
import secrets
import traceback
from dataclasses import dataclass
from typing import Any

import streamlit as st

from leaderboard.study.config import HR, StudyConfig
from leaderboard.study.serving import ImageCache, candidate_image, png_bytes, trial_pngs
from leaderboard.study.store import (
    PLATFORM_PARAMS,
    AlreadyEnrolled,
    DailyCapReached,
    Participant,
    StudyStore,
    TrialView,
    default_store_url,
)
from leaderboard.study.voter.answers import IncompleteAnswer, answer_to_vote, labels, options

LOG = logging.getLogger("screensr.voter")

ZOOMS = [1, 2, 4, 8]
PER_ROW = 4
# st.image resamples anything wider than this (streamlit's MAXIMUM_CONTENT_WIDTH, 1460 px)
MAX_FULL_WIDTH = 1400

NEUTRAL_ERROR = (
    "Sorry, something went wrong on our side and this comparison cannot be shown right now. "
    "Please tell the study's organiser, quoting error id {error_id}."
)

# Streamlit's own chrome (header with toolbar and main menu, sidebar and its toggle, deploy button,
# status widget): hidden so the page offers no way anywhere else. `serve` also starts Streamlit
# with client.toolbarMode=minimal and client.showSidebarNavigation=false.
_HIDE_CHROME = """<style>
header[data-testid="stHeader"], [data-testid="stToolbar"], [data-testid="stMainMenu"], #MainMenu,
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stSidebarNav"],
[data-testid="stAppDeployButton"], [data-testid="stStatusWidget"], footer {display: none !important;}
</style>"""


@dataclass
class _Where:
    """What the page was doing when something failed (for the incident record; never shown)."""

    stage: str = "opening the page"
    study: str | None = None
    participant: int | None = None
    assignment: int | None = None


@st.cache_resource(show_spinner=False)
def _store(url: str) -> StudyStore:
    # One engine (and connection pool) shared by every session thread.
    return StudyStore(url)


@st.cache_resource(show_spinner=False)
def _images() -> ImageCache:
    return ImageCache(capacity=128)


@st.cache_data(max_entries=256, show_spinner=False)
def _crops(
    study: str, config_hash: str, image_id: str, shown: tuple[str, ...], cx: int, cy: int, zoom: int
) -> tuple[bytes, list[bytes]]:
    # config_hash is part of the cache key: it pins the files (a same-named study in another store)
    config = _store(default_store_url()).study(study).config
    return trial_pngs(config, image_id, shown, center=(cx / 100, cy / 100), zoom=zoom, cache=_images())


@st.cache_data(max_entries=64, show_spinner=False)
def _full_png(study: str, config_hash: str, image_id: str, candidate: str) -> bytes:
    config = _store(default_store_url()).study(study).config
    return png_bytes(candidate_image(config, image_id, candidate, _images()))


def _png_width(png: bytes) -> int:
    # the IHDR chunk starts every PNG: width is the big-endian int at bytes 16..20
    return int.from_bytes(png[16:20], "big")


def report_failure(where: _Where, exc: BaseException) -> str:
    """Record ``exc`` for the organiser (store and server log); returns the id shown to the voter.

    The voter sees only :data:`NEUTRAL_ERROR` with this id: the exception's message may hold a
    file path, and paths hold method names.
    """
    summary = f"{type(exc).__name__}: {exc}"
    detail = "".join(traceback.format_exception(exc))
    context = where.stage if where.assignment is None else f"{where.stage} (assignment {where.assignment})"
    try:
        error_id = _store(default_store_url()).record_incident(
            where.study, context, summary, detail, participant=where.participant
        )
    except Exception as store_exc:  # noqa: BLE001 - the store itself failed: the log keeps everything
        error_id = secrets.token_hex(4)
        LOG.error("error %s: could not record it in the study store (%s)", error_id, store_exc)
    LOG.error(
        "voter error %s: study %s, participant %s, %s: %s", error_id, where.study, where.participant, context, detail
    )
    return error_id


def _flash(kind: str, text: str) -> None:
    st.session_state["study_flash"] = (kind, text)


def _show_flash() -> None:
    flash = st.session_state.pop("study_flash", None)
    if flash is not None:
        getattr(st, flash[0])(flash[1])


def _cap_message(cap: int | None) -> str:
    return (f"You have given today's {cap} answers, the most this study takes per day. Thank you! "
            "Please come back tomorrow (the day changes at midnight UTC) with the same link to continue.")  # fmt: skip


def _answer_key(assignment_id: int, criterion: str, label: str | None = None) -> str:
    return f"choice-{assignment_id}-{criterion}" + ("" if label is None else f"-{label}")


def _submit(token: str, assignment_id: int, criterion: str, shown_labels: list[str], design: str) -> None:
    """Form callback: runs before the rerun, bound to the trial that was on screen."""
    where = _Where(stage="recording a vote", assignment=assignment_id)
    try:
        value: Any
        if design == "ranking":
            value = {label: st.session_state.get(_answer_key(assignment_id, criterion, label))
                     for label in shown_labels}  # fmt: skip
        else:
            value = st.session_state.get(_answer_key(assignment_id, criterion))
        try:
            vote = answer_to_vote(design, shown_labels, value)
        except IncompleteAnswer as exc:
            _flash("warning", str(exc))
            return
        store = _store(default_store_url())
        participant = store.participant(token)
        if participant is None:
            _flash("error", "This link is not valid any more.")
            return
        where.study, where.participant = participant.study_name, participant.number
        outcome = store.record_vote(participant, assignment_id, criterion, **vote)
    except DailyCapReached:
        _flash("info", _cap_message(_store(default_store_url()).study(where.study or "").config.daily_cap))
        return
    except Exception as exc:  # noqa: BLE001 - shown neutrally; details go to the admin page and the log
        _flash("error", NEUTRAL_ERROR.format(error_id=report_failure(where, exc)))
        return
    if outcome.recorded:
        _flash("success", "Answer recorded.")
    else:
        _flash("info", "This answer had already been recorded; the first answer stands.")


def _join(study: str, platform: str | None = None, ids: tuple[str | None, ...] = (), consent: bool = False) -> None:
    try:
        token = _store(default_store_url()).enrol(study, platform=platform, platform_ids=ids, consent=consent)
    except AlreadyEnrolled:
        _flash("warning", "This ID has already taken part in this study, so it cannot join a second time. If you "
                          "started before, continue on the page you were on (keep its address, it ends in "
                          "?token=...).")  # fmt: skip
        return
    except Exception as exc:  # noqa: BLE001 - shown neutrally; details go to the admin page and the log
        _flash("error", NEUTRAL_ERROR.format(error_id=report_failure(_Where("joining a study", study), exc)))
        return
    st.query_params.clear()  # the platform ids leave the address bar; the token alone resumes
    st.query_params["token"] = token


def _platform_in_url() -> tuple[str | None, tuple[str | None, ...]]:
    """The platform whose participant id is in the URL, and its ids (participant, study, session)."""
    for platform, params in PLATFORM_PARAMS.items():
        if st.query_params.get(params[0]):
            return platform, tuple(st.query_params.get(p) or None for p in params)
    return None, ()


def _consent_block(config: StudyConfig) -> None:
    """The consent text and the instructions, before the first trial."""
    st.markdown(config.consent)
    if config.instructions:
        st.subheader("Instructions", anchor=False)
        st.markdown(config.instructions)


def _welcome(store: StudyStore) -> None:
    """No token: the join button of an open study or of a platform participant, else how to take part."""
    study = st.query_params.get("study", "")
    platform, ids = _platform_in_url()
    st.title("User study", anchor=False)
    _show_flash()
    config = store.study(study).config if study and study in store.study_names() else None
    if config is not None and platform is not None and platform in config.recruitment.platforms:
        if config.consent:
            _consent_block(config)
        st.button("I agree and start" if config.consent else "Start", on_click=_join,
                  args=(study, platform, ids, True), type="primary")  # fmt: skip
    elif config is not None and platform is None and config.open_enrolment:
        if config.consent:
            _consent_block(config)
        else:
            st.write("This study is open to everyone. Your answers are anonymous; keep the page address "
                     "to continue later.")  # fmt: skip
        st.button("I agree and take part" if config.consent else "Take part", on_click=_join,
                  args=(study, None, (), True), type="primary")  # fmt: skip
    else:
        st.info("Open this page with the personal link you were given (it ends in `?token=...`).")


def _consent(token: str) -> None:
    where = _Where(stage="recording consent")
    try:
        store = _store(default_store_url())
        participant = store.participant(token)
        if participant is not None:
            where.study, where.participant = participant.study_name, participant.number
            store.record_consent(participant)
    except Exception as exc:  # noqa: BLE001 - shown neutrally; details go to the admin page and the log
        _flash("error", NEUTRAL_ERROR.format(error_id=report_failure(where, exc)))


def _finished(config: StudyConfig) -> None:
    st.success("You have completed the study. Thank you for your help!")
    recruitment = config.recruitment
    if recruitment.completion_code:
        st.info(f"Your completion code: **{recruitment.completion_code}**")
    if recruitment.completion_url:
        st.link_button("Return to the study platform", recruitment.completion_url, type="primary")


def _question(token: str, view: TrialView, criterion_key: str, question: str, config: StudyConfig) -> None:
    """One criterion's form: the design's widget(s) and a submit button."""
    shown_labels = labels(len(view.shown))
    with st.form(key=f"form-{view.assignment_id}-{criterion_key}"):
        if config.design == "ranking":
            st.write(f"{question} Give each result a rank (1 = best).")
            for label in shown_labels:
                st.radio(f"Result {label}", options(config.design, len(view.shown)), index=None, horizontal=True,
                         key=_answer_key(view.assignment_id, criterion_key, label))  # fmt: skip
        else:
            st.radio(question, options(config.design, len(view.shown), config.no_preference), index=None,
                     horizontal=True, key=_answer_key(view.assignment_id, criterion_key))  # fmt: skip
        st.form_submit_button(
            "Submit", on_click=_submit, args=(token, view.assignment_id, criterion_key, shown_labels, config.design)
        )


def _page(where: _Where) -> None:
    store = _store(default_store_url())
    token = st.query_params.get("token", "")
    if not token:
        _welcome(store)
        return
    participant = store.participant(token)
    if participant is None:
        st.title("User study", anchor=False)
        st.error("This link is not valid. Please use the exact link you were given.")
        return
    where.study, where.participant = participant.study_name, participant.number
    info = store.study(participant.study_name)
    config = info.config
    st.title(config.title, anchor=False)
    _show_flash()
    if store.needs_consent(participant):
        _consent_block(config)
        st.button("I agree", on_click=_consent, args=(token,), type="primary")
        return
    _trial(store, participant, config, info.config_hash, token, where)


def _trial(
    store: StudyStore, participant: Participant, config: StudyConfig, config_hash: str, token: str, where: _Where
) -> None:
    where.stage = "assigning the next trial"
    view = store.next_trial(participant)
    finished, total = store.progress_of(participant)
    st.progress(finished / max(total, 1), text=f"{finished} of {total} comparisons done")
    if view is None:
        _finished(config)
        return
    if store.cap_reached(participant):
        st.info(_cap_message(config.daily_cap))
        return
    where.stage, where.assignment = "opening the page", view.assignment_id
    if view.served_at is None:
        store.mark_served(view.assignment_id)
    if config.instructions and not config.consent:
        with st.expander("Instructions", expanded=view.order == 0):
            st.markdown(config.instructions)
    st.subheader(f"Comparison {view.order + 1} of {view.total}", anchor=False)
    shown_labels = labels(len(view.shown))
    c1, c2, c3 = st.columns([1, 2, 2])
    zooms = [z for z in ZOOMS if config.crop * z <= MAX_FULL_WIDTH] or [1]  # never resampled by st.image
    # an index is given, so the selectbox never returns None
    zoom = int(c1.selectbox("Zoom", zooms, index=min(1, len(zooms) - 1), key="zoom") or zooms[0])
    cx = c2.slider("Horizontal position (%)", 0, 100, 50, key="cx")
    cy = c3.slider("Vertical position (%)", 0, 100, 50, key="cy")
    # Every image is produced before anything is shown or can be voted on: a trial whose files
    # are missing or changed shows the neutral error (raised to main) and no voting form.
    where.stage = "serving the trial's images"
    extra = (HR,) if config.reference else ()
    lr_png, crops = _crops(participant.study_name, config_hash, view.image_id, view.shown + extra, cx, cy, zoom)
    full = [_full_png(participant.study_name, config_hash, view.image_id, c) for c in view.shown + extra]
    where.stage = "showing the trial"
    tiles = [("LR input", lr_png)]
    if config.reference:
        tiles.append(("Reference (HR)", crops[-1]))
    tiles += [(f"Result {label}", png) for label, png in zip(shown_labels, crops, strict=False)]
    for start in range(0, len(tiles), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, (caption, png) in zip(cols, tiles[start : start + PER_ROW], strict=False):
            col.image(png, caption=caption, output_format="PNG")
    with st.expander("Full-size results"):
        captions = [f"Result {label}" for label in shown_labels] + (["Reference (HR)"] if config.reference else [])
        for caption, png in zip(captions, full, strict=True):
            if _png_width(png) > MAX_FULL_WIDTH:
                # st.image would downscale (resample) it: show only the exact crops above instead
                st.caption(f"{caption} is too wide to show unscaled here; use the zoomed crops.")
            else:
                st.image(png, caption=caption, output_format="PNG")
    for criterion in config.criteria:
        if criterion.key in view.criteria_done:
            st.success(f"{criterion.question} Answer recorded.")
            continue
        _question(token, view, criterion.key, criterion.question, config)


def main() -> None:
    st.set_page_config(page_title="User study", page_icon=":material/how_to_vote:", layout="wide",
                       initial_sidebar_state="collapsed")  # fmt: skip
    st.html(_HIDE_CHROME)
    where = _Where()
    try:
        _page(where)
    except Exception as exc:  # noqa: BLE001 - shown neutrally; details go to the admin page and the log
        st.error(NEUTRAL_ERROR.format(error_id=report_failure(where, exc)))


main()
