"""The voting app: one assigned trial at a time, candidates anonymised, one vote per criterion.

Serve it with ``screensr board study serve`` (its own Streamlit server, separate from the results
board). Participants open their personal link ``.../?token=TOKEN`` (``screensr board study
create`` prints them) or, for studies with open enrolment, ``.../?study=NAME``.

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

import streamlit as st

from leaderboard.study.assignment import position_label
from leaderboard.study.serving import ImageCache, candidate_image, png_bytes, trial_pngs
from leaderboard.study.store import StudyStore, default_store_url

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


def _submit(token: str, assignment_id: int, criterion: str, labels: list[str]) -> None:
    """Form callback: runs before the rerun, bound to the trial that was on screen."""
    where = _Where(stage="recording a vote", assignment=assignment_id)
    try:
        choice = st.session_state.get(f"choice-{assignment_id}-{criterion}")
        if choice is None:
            _flash("warning", "Please pick one of the results before submitting.")
            return
        store = _store(default_store_url())
        participant = store.participant(token)
        if participant is None:
            _flash("error", "This link is not valid any more.")
            return
        where.study, where.participant = participant.study_name, participant.number
        outcome = store.record_vote(participant, assignment_id, criterion, labels.index(choice))
    except Exception as exc:  # noqa: BLE001 - shown neutrally; details go to the admin page and the log
        _flash("error", NEUTRAL_ERROR.format(error_id=report_failure(where, exc)))
        return
    if outcome.recorded:
        _flash("success", "Answer recorded.")
    else:
        _flash("info", "This answer had already been recorded; the first answer stands.")


def _join(study: str) -> None:
    try:
        token = _store(default_store_url()).enrol(study)
    except Exception as exc:  # noqa: BLE001 - shown neutrally; details go to the admin page and the log
        _flash("error", NEUTRAL_ERROR.format(error_id=report_failure(_Where("joining a study", study), exc)))
        return
    st.query_params["token"] = token


def _welcome(store: StudyStore) -> None:
    """No token: an open study's join button, else how to take part."""
    study = st.query_params.get("study", "")
    st.title("User study", anchor=False)
    flash = st.session_state.pop("study_flash", None)
    if flash is not None:
        getattr(st, flash[0])(flash[1])
    if study and study in store.study_names() and store.study(study).config.open_enrolment:
        st.write("This study is open to everyone. Your answers are anonymous; keep the page address "
                 "to continue later.")  # fmt: skip
        st.button("Take part", on_click=_join, args=(study,), type="primary")
    else:
        st.info("Open this page with the personal link you were given (it ends in `?token=...`).")


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
    flash = st.session_state.pop("study_flash", None)
    if flash is not None:
        getattr(st, flash[0])(flash[1])
    views = store.trial_views(participant.id)
    keys = {c.key for c in config.criteria}
    finished = sum(1 for v in views if keys <= v.criteria_done)
    view = next((v for v in views if not keys <= v.criteria_done), None)
    st.progress(finished / max(len(views), 1), text=f"{finished} of {len(views)} comparisons done")
    if view is None:
        st.success("You have completed the study. Thank you for your help!")
        return
    where.assignment = view.assignment_id
    if view.served_at is None:
        store.mark_served(view.assignment_id)
    if config.instructions:
        with st.expander("Instructions", expanded=view.order == 0):
            st.markdown(config.instructions)
    st.subheader(f"Comparison {view.order + 1} of {view.total}", anchor=False)
    labels = [position_label(i) for i in range(len(view.shown))]
    c1, c2, c3 = st.columns([1, 2, 2])
    zooms = [z for z in ZOOMS if config.crop * z <= MAX_FULL_WIDTH] or [1]  # never resampled by st.image
    # an index is given, so the selectbox never returns None
    zoom = int(c1.selectbox("Zoom", zooms, index=min(1, len(zooms) - 1), key="zoom") or zooms[0])
    cx = c2.slider("Horizontal position (%)", 0, 100, 50, key="cx")
    cy = c3.slider("Vertical position (%)", 0, 100, 50, key="cy")
    # Every image is produced before anything is shown or can be voted on: a trial whose files
    # are missing or changed shows the neutral error (raised to main) and no voting form.
    where.stage = "serving the trial's images"
    lr_png, crops = _crops(participant.study_name, info.config_hash, view.image_id, view.shown, cx, cy, zoom)
    full = [_full_png(participant.study_name, info.config_hash, view.image_id, c) for c in view.shown]
    where.stage = "showing the trial"
    tiles = [("LR input", lr_png)] + [(f"Result {label}", png) for label, png in zip(labels, crops, strict=True)]
    for start in range(0, len(tiles), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, (caption, png) in zip(cols, tiles[start : start + PER_ROW], strict=False):
            col.image(png, caption=caption, output_format="PNG")
    with st.expander("Full-size results"):
        for label, png in zip(labels, full, strict=True):
            if _png_width(png) > MAX_FULL_WIDTH:
                # st.image would downscale (resample) it: show only the exact crops above instead
                st.caption(f"Result {label} is too wide to show unscaled here; use the zoomed crops.")
            else:
                st.image(png, caption=f"Result {label}", output_format="PNG")
    for criterion in config.criteria:
        if criterion.key in view.criteria_done:
            st.success(f"{criterion.question} Answer recorded.")
            continue
        with st.form(key=f"form-{view.assignment_id}-{criterion.key}"):
            st.radio(criterion.question, labels, index=None, horizontal=True,
                     key=f"choice-{view.assignment_id}-{criterion.key}")  # fmt: skip
            st.form_submit_button(
                "Submit", on_click=_submit, args=(token, view.assignment_id, criterion.key, labels)
            )


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
