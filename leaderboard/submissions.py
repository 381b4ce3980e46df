"""Submissions: register a method's SR outputs for a dataset, validate them, score them here.

Submitted scores are never trusted: a submission is a folder (or a zip / tar archive) of SR
images, and the server computes every metric itself with the benchmark runner
(``benchmark.runner.evaluate`` with a ``folder:`` method).

Validation happens before anything is stored, and each failure names the file or value and the
fix:

- the dataset is known to the store and its images are on this machine;
- the method name is usable and not ``GT``; the family is one of ``benchmark.store.FAMILIES``;
- (name, version) is not already in the store, and the outputs are not byte-identical to the
  outputs of a method already scored on this dataset (same content hashes as the runner's);
- every pair of the dataset has exactly one output (matched by pair id or LR stem), no output
  is left over (a sign of the wrong dataset), each is a readable 8-bit RGB image of exactly the
  HR size (never resized).

Accepted outputs are moved (atomically, one ``os.replace`` of the folder) to
``$SCREENSR_HOME/submissions/<dataset>/<method>/<version>/``; a ``.complete`` marker is written
after the metrics are stored, so an interrupted submission can be resubmitted and resumes.

Example:
    >>> sub = Submission("DRealSR", "MySR", "1.0", family="one-step")        # doctest: +SKIP
    >>> checked = validate_submission(sub, Path("my_outputs"), store)        # doctest: +SKIP
    >>> frame = publish_submission(checked, store, metrics=["psnr", "ssim"]) # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.methods import FolderMethod

if TYPE_CHECKING:
    import pandas as pd

    from benchmark.datasets import PairedDataset
    from benchmark.store import ResultsStore

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
"""Method names and versions: letters, digits and ``_ . + -`` (they become folder names)."""

MAX_ARCHIVE_BYTES = 4 << 30
"""Largest total uncompressed size accepted from an archive (4 GiB): a guard against zip bombs."""

MAX_ARCHIVE_FILES = 20000
COMPLETE_MARKER = ".complete"


class SubmissionError(ValueError):
    """A submission that cannot be accepted; the message lists every problem and the fix."""

    is_user_error = True

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("submission rejected:\n- " + "\n- ".join(self.problems))


@dataclass(frozen=True)
class Submission:
    """What the submitter declares (never any score).

    Attributes:
        dataset: the store's dataset name the outputs are for.
        method: the method's name on the leaderboard.
        version: the method's version (a new version of a known method is a new submission).
        family: one of ``benchmark.store.FAMILIES``.
        description: free text shown on the method page.
        links: paper / code URLs.
    """

    dataset: str
    method: str
    version: str
    family: str = "other"
    description: str = ""
    links: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CheckedSubmission:
    """A validated submission: its dataset, its outputs folder and the output of every pair."""

    submission: Submission
    dataset: PairedDataset
    folder: Path
    outputs: dict[str, Path]
    resume: bool = False


def submissions_home() -> Path:
    """``$SCREENSR_HOME/submissions``: where accepted outputs are kept."""
    from benchmark.weights import screensr_home

    return screensr_home() / "submissions"


def final_folder(sub: Submission) -> Path:
    """Where the outputs of ``sub`` live once accepted."""
    return submissions_home() / sub.dataset / sub.method / sub.version


# --------------------------------------------------------------------------- archives


def unpack_upload(name: str, payload: bytes, into: Path) -> Path:
    """Write an uploaded archive (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``) or a single image
    into the folder ``into``; return the folder that holds the images.

    Members are checked before extraction: absolute paths, ``..`` components, links and device
    files are refused, and the total size is capped (``MAX_ARCHIVE_BYTES``).
    A single top-level folder inside the archive is descended into.

    Raises:
        SubmissionError: an unsafe or unreadable archive (naming the member).
    """
    into.mkdir(parents=True, exist_ok=True)
    lower = name.lower()
    blob = into / f".upload-{os.getpid()}"
    blob.write_bytes(payload)
    try:
        if lower.endswith(".zip"):
            _unzip(blob, into, name)
        elif lower.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
            _untar(blob, into, name)
        else:
            raise SubmissionError([f"{name}: not a .zip or .tar(.gz) archive; upload an archive of the SR images"])
    finally:
        blob.unlink(missing_ok=True)
    entries = [p for p in into.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return into


def _safe_member(member_name: str, archive: str) -> str:
    parts = Path(member_name).parts
    if Path(member_name).is_absolute() or ".." in parts or member_name.startswith(("/", "\\")):
        raise SubmissionError([f"{archive}: member {member_name!r} points outside the archive; refusing it"])
    return member_name


def _unzip(blob: Path, into: Path, archive: str) -> None:
    try:
        with zipfile.ZipFile(blob) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ARCHIVE_FILES:
                raise SubmissionError([f"{archive}: {len(infos)} members; at most {MAX_ARCHIVE_FILES} are accepted"])
            total = sum(i.file_size for i in infos)
            if total > MAX_ARCHIVE_BYTES:
                raise SubmissionError([f"{archive}: unpacks to {total} bytes, over the {MAX_ARCHIVE_BYTES} limit"])
            for info in infos:
                _safe_member(info.filename, archive)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise SubmissionError([f"{archive}: member {info.filename!r} is a symbolic link; refusing it"])
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise SubmissionError([f"{archive}: not a readable zip archive ({exc}); re-create it"]) from exc


def _untar(blob: Path, into: Path, archive: str) -> None:
    try:
        with tarfile.open(blob) as tf:
            members = tf.getmembers()
            if len(members) > MAX_ARCHIVE_FILES:
                raise SubmissionError([f"{archive}: {len(members)} members; at most {MAX_ARCHIVE_FILES} are accepted"])
            total = sum(m.size for m in members)
            if total > MAX_ARCHIVE_BYTES:
                raise SubmissionError([f"{archive}: unpacks to {total} bytes, over the {MAX_ARCHIVE_BYTES} limit"])
            for m in members:
                _safe_member(m.name, archive)
                if not (m.isfile() or m.isdir()):
                    raise SubmissionError([f"{archive}: member {m.name!r} is a link or device; refusing it"])
            tf.extractall(into, filter="data")
    except tarfile.TarError as exc:
        raise SubmissionError([f"{archive}: not a readable tar archive ({exc}); re-create it"]) from exc


# --------------------------------------------------------------------------- validation


def is_web_link(text: str) -> bool:
    """Whether ``text`` is an absolute http(s) URL (the only links pages and exports render)."""
    from urllib.parse import urlparse

    parsed = urlparse(text.strip())
    return parsed.scheme in ("http", "https") and bool(parsed.netloc) and not any(c.isspace() for c in text.strip())


def validate_submission(sub: Submission, folder: Path, store: ResultsStore) -> CheckedSubmission:
    """Check a folder of SR outputs against the dataset ``sub.dataset`` and the store.

    Args:
        sub: the declared submission.
        folder: a folder holding one SR image per pair (directly inside it).
        store: the results store (datasets, methods and existing scores).

    Returns:
        The checked submission (nothing is written).

    Raises:
        SubmissionError: listing every problem found (all checks run, so one pass tells the
            submitter everything to fix).
    """
    from benchmark.datasets import load_dataset
    from benchmark.images import ImageFormatError, image_size, is_image, read_image
    from benchmark.store import FAMILIES, GT

    problems: list[str] = []
    for what, value in (("method name", sub.method), ("version", sub.version)):
        if not NAME_PATTERN.match(value or ""):
            problems.append(
                f"{what} {value!r} is not usable: use 1-100 letters, digits or _ . + - (starting with a letter or digit)"
            )
    if sub.method == GT:
        problems.append(f"method name {GT!r} is reserved for the ground truth; pick another name")
    if sub.family not in FAMILIES:
        problems.append(f"family {sub.family!r} is not one of {', '.join(FAMILIES)}")
    for link in sub.links:
        if not is_web_link(link):
            problems.append(f"link {link!r} is not an http(s) URL; give paper / code links as https://...")

    datasets = store.datasets_frame()
    row = datasets[datasets["name"] == sub.dataset]
    if row.empty:
        raise SubmissionError(
            [*problems, f"dataset {sub.dataset!r} is unknown to the store; known: {', '.join(sorted(datasets['name']))}"]
        )
    root = Path(str(row["root"].iloc[0]))
    if not root.is_dir():
        raise SubmissionError([*problems, f"dataset {sub.dataset!r}: its images ({root}) are not on this server"])
    ds = load_dataset(
        root, layout=str(row["layout"].iloc[0]) or None, scale=int(row["scale"].iloc[0]), name=sub.dataset, validate=False
    )
    if not ds.has_reference:
        problems.append(f"dataset {sub.dataset!r} has no HR images: submissions need a reference to be scored")

    resume = False
    methods = store.methods_frame()
    same = methods[(methods["name"] == sub.method) & (methods["version"] == sub.version)]
    if not same.empty:
        partial = final_folder(sub)
        if partial.is_dir() and not (partial / COMPLETE_MARKER).exists():
            resume = True  # an interrupted submission of the same method+version: finish it
        else:
            problems.append(
                f"method {sub.method!r} version {sub.version!r} is already on the leaderboard; submit a new "
                "version (or another name)"
            )

    folder = Path(folder)
    if not folder.is_dir():
        raise SubmissionError([*problems, f"{folder}: no such folder of SR outputs"])
    files = sorted(p for p in folder.iterdir() if is_image(p))
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem, []).append(f)
    for stem, group in by_stem.items():
        if len(group) > 1:
            problems.append(f"two outputs share the name {stem!r} ({', '.join(p.name for p in group)}); keep one")
    outputs: dict[str, Path] = {}
    missing: list[str] = []
    for pair in ds.pairs:
        match = by_stem.get(pair.id) or by_stem.get(pair.lr.stem)
        if match:
            outputs[pair.id] = match[0]
        else:
            missing.append(pair.id)
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        problems.append(
            f"{len(missing)} of {len(ds.pairs)} images have no output: {shown}; name each output after its pair "
            f"(e.g. {ds.pairs[0].id}.png)"
        )
    used = {p.stem for p in outputs.values()}
    extra = sorted(set(by_stem) - used)
    if extra:
        shown = ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else "")
        problems.append(f"{len(extra)} outputs match no image of {sub.dataset!r}: {shown}; is this the right dataset?")
    if not files:
        problems.append(f"{folder}: holds no image files (.png, .jpg, ...)")

    pairs = {p.id: p for p in ds.pairs}
    for pid, path in outputs.items():
        pair = pairs[pid]
        try:
            want = image_size(pair.hr) if pair.hr is not None else None
            read_image(path)  # full decode: truncated files, alpha, grayscale, 16-bit
            got = image_size(path)
        except (ImageFormatError, FileNotFoundError) as exc:
            problems.append(str(exc))
            continue
        if want is not None and got != want:
            problems.append(
                f"{path.name}: is {got[0]}x{got[1]} but the HR image of {pid!r} is {want[0]}x{want[1]}; "
                f"outputs must be exactly x{ds.scale} of the LR input (they are never resized)"
            )

    if not problems:
        twin = _identical_method(ds, outputs, store)
        if twin is not None and twin != sub.method:
            problems.append(
                f"these outputs are byte-identical to those of method {twin!r} already scored on {sub.dataset!r}; "
                "duplicates are not accepted"
            )
    if problems:
        raise SubmissionError(problems)
    return CheckedSubmission(sub, ds, folder, outputs, resume)


def _identical_method(ds: PairedDataset, outputs: dict[str, Path], store: ResultsStore) -> str | None:
    """A method already scored on ``ds`` whose every output has the same bytes, if any.

    Uses the content hash the runner stores with precomputed outputs
    (``benchmark.runner.content_hash(lr, hr, sr)``), so no image is re-read from other methods.
    """
    from benchmark.images import file_sha256
    from benchmark.runner import content_hash

    scores = store.scores_frame(dataset=ds.name)
    if scores.empty:
        return None
    pairs = {p.id: p for p in ds.pairs}
    mine = {
        pid: content_hash(file_sha256(pairs[pid].lr), file_sha256(pairs[pid].hr), file_sha256(path))
        for pid, path in outputs.items()
        if pairs[pid].hr is not None
    }
    if not mine:
        return None
    have = scores.drop_duplicates(["method", "image", "content_hash"])
    have = have[have["content_hash"] == have["image"].map(mine)]
    counts = have.groupby("method")["image"].nunique()
    full = counts[counts == len(mine)]
    return str(full.index[0]) if len(full) else None


# --------------------------------------------------------------------------- publishing


def stage_folder(checked: CheckedSubmission) -> Path:
    """Copy the validated outputs to ``final_folder`` atomically (temporary folder, then rename).

    Only the matched outputs are copied, named by pair id. Resuming replaces the earlier copy.
    """
    final = final_folder(checked.submission)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{checked.submission.version}-", dir=final.parent))
    try:
        for pid, src in checked.outputs.items():
            shutil.copyfile(src, tmp / f"{pid}{src.suffix.lower()}")
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def publish_submission(
    checked: CheckedSubmission, store: ResultsStore, *, metrics: list[str], device: str = "cpu", progress: bool = False
) -> pd.DataFrame:
    """Stage the outputs, register the method and compute ``metrics`` with the benchmark runner.

    Returns:
        The runner's per-image scores of the submission (``frame.attrs['unavailable']`` lists
        metrics skipped for missing weights).
    """
    from benchmark.runner import evaluate

    sub = checked.submission
    if not metrics:
        raise ValueError("no metrics chosen: pick at least one metric to compute")
    folder = stage_folder(checked)
    method = SubmittedMethod(
        sub.method, sub.family, sub.description, links=list(sub.links), folder=folder, submitted_version=sub.version
    )
    frame = evaluate([checked.dataset], [method], list(metrics), store=store, device=device, progress=progress, gt=False)
    (folder / COMPLETE_MARKER).write_text(sub.version)
    return frame


@dataclass
class SubmittedMethod(FolderMethod):
    """A ``folder:`` method that carries the submitter's version, family and description."""

    submitted_version: str = ""

    def version(self) -> str:
        return self.submitted_version


# --------------------------------------------------------------------------- admin secret

ADMIN_ENV = "SCREENSR_BOARD_ADMIN_SHA256"
"""Environment variable holding the sha256 (hex) of the admin secret; the secret itself is never
stored. ``screensr board --admin-secret-sha256 HEX`` sets it; Streamlit secrets may hold it too
(key ``board_admin_sha256``)."""


def admin_hash(secrets: object | None = None) -> str | None:
    """The configured admin-secret hash (lower-case hex), or None when submissions are disabled."""
    value = os.environ.get(ADMIN_ENV)
    if not value and secrets is not None:
        try:
            value = secrets.get("board_admin_sha256")  # type: ignore[attr-defined]
        except Exception:  # st.secrets raises when no secrets file exists at all
            value = None
    value = (value or "").strip().lower()
    if not value:
        return None
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(
            f"{ADMIN_ENV} must be the 64-hex-digit sha256 of the admin secret, got {len(value)} characters; "
            "compute it with: printf %s 'SECRET' | sha256sum"
        )
    return value


def check_admin(secret: str, expected_hash: str) -> bool:
    """Whether ``secret`` hashes to ``expected_hash`` (constant-time comparison)."""
    import hashlib
    import hmac

    return hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), expected_hash)
