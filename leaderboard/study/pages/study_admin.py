"""User-study administration: progress as votes arrive, the analysis, the chain check, exports,
invites, and the errors voters met (by the error id they were shown).

Access needs the study's admin secret (printed once by ``screensr board study create``; stored
as a salted scrypt hash); after 5 wrong secrets for a study, its login is refused for 5 minutes
(whoever tries: a new browser session does not reset it). The page only calls tested functions
of ``leaderboard.study.store`` and ``leaderboard.study.stats``. The store is ``$SCREENSR_STUDY_STORE``
(default ``$SCREENSR_HOME/studies.sqlite``). Voting itself is not here: participants' links open
the separate voting app (``screensr board study serve``).
"""

from __future__ import annotations

import streamlit as st

from core.secrets import AttemptLimiter
from leaderboard.study.export import export_payload
from leaderboard.study.report import SECTIONS, StudyReport, figure_png, plot_report, study_report
from leaderboard.study.screening import RULES
from leaderboard.study.store import StudyStore, default_store_url
from leaderboard.study.voter.links import DEFAULT_URL, vote_link

N_BOOT = 1000


@st.cache_resource(show_spinner=False)
def _store(url: str) -> StudyStore:
    return StudyStore(url)


@st.cache_resource(show_spinner=False)
def _limiter() -> AttemptLimiter:
    # One per server process, keyed by study: every session's guesses count against the study.
    return AttemptLimiter(max_failures=5, lockout_s=300.0, delay_s=1.0)


@st.cache_data(max_entries=16, show_spinner="Analysing votes...")
def _analysis(url: str, study: str, head_hash: str, n_votes: int, exclude: tuple[str, ...]) -> tuple[StudyReport, bytes]:
    # Keyed by the chain head: the analysis is recomputed only when a vote arrived.
    store = _store(url)
    info = store.study(study)
    votes = store.votes_frame(study)
    config = info.config
    report = study_report(study, votes, list(config.method_names), [c.key for c in config.criteria],
                          n_boot=N_BOOT, meta={"head_hash": head_hash, "votes": n_votes}, design=config.design,
                          screening=config.screening, exclude=exclude)  # fmt: skip
    return report, figure_png(plot_report(report))


def _table(report: StudyReport, name: str) -> None:
    table = getattr(report, name)
    if table is None:
        return
    if name == "votes":
        table = table.copy()
        for col in ("share", "ci_low", "ci_high", "sim_low", "sim_high", "boot_low", "boot_high", "win_rate"):
            table[col] = (100 * table[col]).round(1)
        st.caption("Shares and 95% intervals in %: Wilson (ci), Goodman simultaneous (sim), cluster bootstrap "
                   "over participants and images (boot).")  # fmt: skip
        table = table[["method", "criterion", "votes", "n", "share", "ci_low", "ci_high", "boot_low", "boot_high"]]
    st.subheader(dict(SECTIONS)[name])
    if name == "participants":
        st.dataframe(table, hide_index=True)
    else:
        st.table(table)


def _dashboard(url: str, study: str) -> None:
    store = _store(url)
    check = store.verify(study)
    progress = store.progress(study)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Participants", len(progress))
    c2.metric("Completed", int(progress["complete"].sum()) if len(progress) else 0)
    c3.metric("Votes", check.n_votes)
    c4.metric("Vote chain", "verified" if check.ok else "BROKEN")
    if check.ok:
        st.caption(f"Head hash (publish it with the results): `{check.head_hash}`")
    else:
        st.error("The vote chain does not verify: " + "; ".join(check.problems[:5]))
    for note in check.notes:
        st.info(note)
    _errors(store, study)
    st.subheader("Progress")
    st.dataframe(progress, hide_index=True)
    if check.n_votes == 0:
        st.info("No votes yet.")
        return
    rules = st.multiselect("Exclude participants flagged by", RULES, key="admin_exclude",
                           help="failed-gold, too-fast, straight-lining, position-bias, low-agreement: "
                                "thresholds from the study's screening settings")  # fmt: skip
    report, figure = _analysis(url, study, check.head_hash, check.n_votes, tuple(rules))
    st.image(figure, output_format="PNG")
    if report.excluded is not None:
        st.warning(f"{len(report.excluded)} participant(s) excluded ({', '.join(rules)}); the tables leave their "
                   f"votes out, the results without exclusions are at the end.")  # fmt: skip
        st.table(report.excluded)
    for name, _ in SECTIONS:
        _table(report, name)
    if report.unfiltered is not None:
        st.subheader("Without exclusions (every participant)")
        st.table(report.unfiltered.main)
    st.subheader("Export")
    csv, _ = export_payload(store, study, "csv")
    parquet, definition = export_payload(store, study, "parquet")
    d1, d2, d3, d4, d5 = st.columns(5)
    d1.download_button("Votes (CSV)", csv, f"{study}-votes.csv", "text/csv")
    d2.download_button("Votes (Parquet)", parquet, f"{study}-votes.parquet", "application/octet-stream")
    d3.download_button("Study definition (JSON)", definition, f"{study}-votes.study.json", "application/json")
    d4.download_button("Report (Markdown)", report.to_markdown(), f"{study}-report.md", "text/markdown")
    d5.download_button("Report (JSON)", report.to_json(), f"{study}-report.json", "application/json")


def _errors(store: StudyStore, study: str) -> None:
    """Errors voters met: they saw only an error id; the details (paths, exceptions) are here."""
    errors = store.incidents(study)
    if errors.empty:
        return
    st.warning(f"Voters met {int(errors['count'].sum())} error(s) ({len(errors)} distinct); details below.")
    with st.expander(f"Errors shown to voters ({len(errors)})"):
        wanted = st.text_input("Error id a voter reported", key="admin_error_id").strip().lower()
        if wanted:
            errors = errors[errors["error_id"] == wanted]
            if errors.empty:
                st.info(f"No error {wanted!r} in this study.")
        st.table(errors[["error_id", "first_at", "last_at", "count", "context", "participant", "summary"]])
        for row in errors.itertuples():
            st.code(f"error {row.error_id}\n{row.detail}", language=None)


def _invite(url: str, study: str) -> None:
    with st.form("invite"):
        n = st.number_input("New participants", min_value=1, max_value=500, value=1, step=1)
        base = st.text_input("Voting app address for the links (screensr board study serve)", value=DEFAULT_URL)
        if st.form_submit_button("Issue links"):
            tokens = _store(url).add_participants(study, int(n))
            st.warning("Copy these links now: only their hashes are stored.")
            st.code("\n".join(vote_link(base, t) for t in tokens), language=None)


def main() -> None:
    url = default_store_url()
    store = _store(url)
    st.title("User study: administration")
    names = store.study_names()
    if not names:
        st.info("No study yet. Create one with `screensr board study create STUDY.yaml --participants N`.")
        return
    study = st.selectbox("Study", names, index=len(names) - 1, key="admin_study")
    if study is None:  # not reached: an index is given and there is at least one study
        return
    unlocked: set[str] = st.session_state.setdefault("admin_unlocked", set())
    if study not in unlocked:
        with st.form("admin_login"):
            secret = st.text_input("Admin secret", type="password")
            if st.form_submit_button("Open"):
                limiter = _limiter()
                wait = limiter.locked_for(study)
                if wait > 0:
                    st.error(f"Too many wrong secrets for this study: try again in {wait:.0f} s.")
                elif limiter.check(study, secret, store.admin_hash(study)):
                    unlocked.add(study)
                    st.rerun()
                else:
                    st.error("Wrong admin secret for this study.")
        return
    watch = st.toggle("Watch live (refresh every 5 s)", value=False, key="admin_watch")
    st.fragment(_dashboard, run_every=5 if watch else None)(url, study)
    with st.expander("Invite participants"):
        _invite(url, study)


main()
