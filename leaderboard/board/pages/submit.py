"""Submit page (admin): register a method's SR outputs for a dataset; the server scores them.

Only outputs are accepted, never scores: ``leaderboard.board.submissions`` validates the upload and
runs the benchmark harness on it. The page needs the admin secret, configured as a salted scrypt
hash (``screensr board --admin-secret-hash "$(screensr board hash-secret)"``); wrong secrets are
limited per browser session (``submissions.admin_limiter``), each costing a delay.
"""

import math
import tempfile
from pathlib import Path

import streamlit as st

from benchmark.metrics import list_metrics
from benchmark.store import FAMILIES, ResultsStore
from leaderboard.board import cache, display, submissions

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

st.title("Submit a method")

try:
    expected = submissions.admin_hash(st.secrets)
except ValueError as exc:
    st.error(str(exc))
    st.stop()
if expected is None:
    st.warning(
        "Submissions are disabled: no admin secret is configured. Start the board with "
        '`screensr board --admin-secret-hash "$(screensr board hash-secret)"`.'
    )
    st.stop()


def _session_key() -> str:
    """This browser session's key for counting wrong secrets: a random token kept in its
    session state (Streamlit's session state lives exactly as long as the browser session)."""
    import secrets

    return st.session_state.setdefault("board_login_key", secrets.token_hex(16))


if not st.session_state.get("board_admin"):
    limiter = submissions.admin_limiter()
    key = _session_key()
    wait = limiter.locked_for(key)
    if wait > 0:
        st.error(f"Too many wrong admin secrets from this session: try again in {math.ceil(wait)} s.")
        st.stop()
    with st.form("admin_login"):
        secret = st.text_input("Admin secret", type="password", key="sub_secret")
        if st.form_submit_button("Unlock"):
            if limiter.check(key, secret, expected):
                st.session_state["board_admin"] = True
                st.rerun()
            if limiter.locked_for(key) > 0:
                st.rerun()  # this failure locked the session out: show the lockout, not the form
            st.error("Wrong admin secret.")
    st.stop()

try:
    board = cache.cached_board()  # not board_or_stop: the first submission goes to a store without scores
except (FileNotFoundError, ValueError) as exc:
    st.error(f"Cannot open the results store: {exc}")
    st.stop()
datasets = sorted(board.datasets["name"])
if not datasets:
    st.info("The store describes no dataset: run `screensr bench run` on one first.")
    st.stop()
st.caption(
    "Upload the SR outputs of one dataset (a .zip or .tar.gz of images named after each pair, or the images "
    "themselves). The server checks them and computes every metric itself; submitted scores are never accepted. "
    "A method name belongs to its first submitter: later versions must come from the same submitter."
)
dataset = st.selectbox("Dataset", datasets, key="sub_dataset")
on_board = [c.name for c in board.columns(dataset)] if dataset in board.dataset_names() else []
with st.form("submission"):
    cols = st.columns(3)
    method = cols[0].text_input("Method name", key="sub_method", placeholder="e.g. MySR")
    version = cols[1].text_input("Version", value="1.0", key="sub_version")
    family = cols[2].selectbox("Family", FAMILIES, key="sub_family") or "other"
    owner = st.text_input(
        "Submitter (id or contact)",
        key="sub_owner",
        placeholder="e.g. ana@lab.org",
        help="Recorded as the owner of the method name (not shown on the board); new versions need the same submitter.",
    )
    description = st.text_area("Description", key="sub_description")
    links = st.text_area("Links (one URL per line)", key="sub_links")
    options = display.order_metrics([*on_board, *list_metrics()])
    metrics = st.multiselect(
        "Metrics to compute", options, default=on_board or ["psnr", "ssim"], key="sub_metrics"
    )
    upload = st.file_uploader(
        "SR outputs (archive or images)",
        type=["zip", "tar", "gz", "tgz", "bz2", "xz", "png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"],
        accept_multiple_files=True,
        key="sub_upload",
    )
    server_folder = st.text_input("…or a folder on the server", key="sub_folder")
    submitted = st.form_submit_button("Validate and score")

if submitted:
    sub = submissions.Submission(
        dataset=dataset,
        method=method.strip(),
        version=version.strip(),
        family=family,
        description=description.strip(),
        links=tuple(line.strip() for line in links.splitlines() if line.strip()),
        owner=owner,
    )
    staging = submissions.submissions_home() / ".incoming"
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as tmp:
        try:
            files = list(upload or [])
            if files and server_folder.strip():
                raise submissions.SubmissionError(["give either an upload or a server folder, not both"])
            if not files and not server_folder.strip():
                raise submissions.SubmissionError(
                    ["no outputs given: upload an archive or images, or name a folder"]
                )
            if server_folder.strip():
                folder = Path(server_folder.strip()).expanduser()
            elif len(files) == 1 and Path(files[0].name).suffix.lower() not in IMAGE_SUFFIXES:
                # the upload object is streamed to disk in chunks, never copied whole in memory
                folder = submissions.unpack_upload(files[0].name, files[0], Path(tmp))
            else:
                folder = Path(tmp)
                for f in files:
                    submissions.save_upload(f, folder / submissions.upload_name(f.name))
            store = ResultsStore(board.url)
            checked = submissions.validate_submission(sub, folder, store)
        except (submissions.SubmissionError, ValueError, FileNotFoundError) as exc:
            problems = getattr(exc, "problems", [str(exc)])
            st.error("**Submission rejected.**\n\n" + "\n".join(f"- {p}" for p in problems))
            st.stop()
        st.success(
            f"Validated: {len(checked.outputs)} outputs for {dataset!r}, each exactly the HR size."
            + (" Resuming an interrupted submission." if checked.resume else "")
        )
        with st.status(
            f"Computing {', '.join(metrics)} on {len(checked.outputs)} images…", expanded=False
        ) as status:
            try:
                frame = submissions.publish_submission(checked, store, metrics=list(metrics))
            except (ValueError, FileNotFoundError, RuntimeError) as exc:
                status.update(label="Scoring failed", state="error")
                st.error(f"Scoring failed: {exc}. Fix the cause and submit again: the run resumes.")
                st.stop()
            status.update(label="Scores stored", state="complete")
    for metric, message in frame.attrs.get("unavailable", {}).items():
        st.warning(f"Metric {metric} was not computed: {message}")
    cache.clear_board_cache()
    means = frame.groupby("metric")["value"].mean()
    st.success(
        f"Published {sub.method} {sub.version} on {dataset}: "
        + ", ".join(f"{m} {v:.4f}" for m, v in means.items())
        + f". See the [method page](methods?method={sub.method})."
    )
