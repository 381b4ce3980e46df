"""Submissions: register a method's SR outputs for a dataset, validate them, score them here.

Submitted scores are never trusted: a submission is a folder (or a zip / tar archive) of SR
images, and the server computes every metric itself with the benchmark runner
(``benchmark.runner.evaluate`` with a ``folder:`` method).

Validation happens before anything is stored, and each failure names the file or value and the
fix:

- the dataset is known to the store and its images are on this machine;
- the method name is usable, not ``GT`` and not a built-in method's name; the family is one of
  ``benchmark.store.FAMILIES``; the submitter (``owner``: an id or contact) is given;
- names are owned: a name registered by the suite or by another submitter is refused (compared
  without case, so ``BICUBIC`` cannot pose as ``bicubic``); a new version of one's own method is
  a new row of the store beside the earlier versions, whose scores and outputs stay as they are;
- (name, version) is not already in the store, and the outputs are not byte-identical to the
  outputs of a method already scored on this dataset (same content hashes as the runner's);
- every pair of the dataset has exactly one output (matched by pair id or LR stem), no output
  is left over (a sign of the wrong dataset), each is an 8-bit RGB image of exactly the HR size
  (never resized): the pixel limit (``core.imagelimits``) and the size are checked on the
  header, before any pixel is decoded, and a decode streams from the file.

Archives are unpacked with bounded work (``leaderboard.board.archives``).

Accepted outputs are moved (atomically, one ``os.replace`` of the folder) to
``$SCREENSR_HOME/submissions/<dataset>/<method>/<version>/``; a ``.complete`` marker is written
after the metrics are stored, so an interrupted submission can be resubmitted and resumes.

The Submit page is unlocked by the board's admin secret, stored only as a salted scrypt hash
(``core.secrets``; ``screensr board hash-secret`` makes one) and guarded by a per-session
attempt limit with a delay (:func:`admin_limiter`).

Example:
    >>> sub = Submission("DRealSR", "MySR", "1.0", family="one-step", owner="ana@lab.org")  # doctest: +SKIP
    >>> checked = validate_submission(sub, Path("my_outputs"), store)                      # doctest: +SKIP
    >>> frame = publish_submission(checked, store, metrics=["psnr", "ssim"])               # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from benchmark.datasets import PairedDataset, load_dataset
from benchmark.images import ImageFormatError, check_mode, image_size, is_image
from benchmark.methods import BUILTINS, VOSR_PRESETS, FolderMethod
from benchmark.runner import content_hash, evaluate
from benchmark.store import FAMILIES, GT, SUITE_OWNER, MethodRecord, ResultsStore
from core.atomic import atomic_write_text
from core.errors import UserError
from core.hashing import file_sha256
from core.imagelimits import ImageTooLargeError, check_image_pixels
from core.paths import screensr_home
from core.secrets import AttemptLimiter, check_secret
from leaderboard.board.archives import ArchiveLimits, UnsafeArchiveError, is_archive_name, unpack_archive

if TYPE_CHECKING:
    import pandas as pd


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
"""Method names and versions: letters, digits and ``_ . + -`` (they become folder names)."""

MAX_OWNER_CHARS = 200
COMPLETE_MARKER = ".complete"
COPY_CHUNK = 1 << 20  # bytes per read when an upload is copied to disk


class SubmissionError(UserError, ValueError):
    """A submission that cannot be accepted; the message lists every problem and the fix."""

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
        owner: who submits: an id or contact (e-mail), recorded as the owner of the name; later
            versions must come from the same owner. Compared after :func:`normalise_owner`.
    """

    dataset: str
    method: str
    version: str
    family: str = "other"
    description: str = ""
    links: tuple[str, ...] = field(default_factory=tuple)
    owner: str = ""


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

    return screensr_home() / "submissions"


def final_folder(sub: Submission) -> Path:
    """Where the outputs of ``sub`` live once accepted."""
    return submissions_home() / sub.dataset / sub.method / sub.version


def normalise_owner(owner: str) -> str:
    """The owner as stored and compared: whitespace collapsed, case folded (``Ana@Lab.org`` is
    ``ana@lab.org``)."""
    return " ".join(str(owner).split()).casefold()


def builtin_names() -> list[str]:
    """Names the suite's own methods use (``bicubic``, ``vosr-0.5b-ms``, ...): never submittable."""

    return [*BUILTINS, *VOSR_PRESETS]


# --------------------------------------------------------------------------- uploads


def unpack_upload(
    name: str, source: bytes | IO[bytes] | Path, into: Path, *, limits: ArchiveLimits | None = None
) -> Path:
    """Write an uploaded archive (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``,
    ``.tar.xz``) into the folder ``into``; return the folder that holds the images.

    The upload is copied to disk in chunks (a file object is never read whole), then unpacked by
    :func:`leaderboard.board.archives.unpack_archive`: members are counted and sized while streaming
    (``limits``), absolute paths, ``..`` components, links and device files are refused, and a
    corrupt or truncated archive is rejected as such. A single top-level folder inside the
    archive is descended into.

    Args:
        name: the uploaded file's name (its suffix says the type).
        source: the upload: a binary file object (e.g. Streamlit's ``UploadedFile``), a path,
            or bytes.
        into: a working folder (created); on failure nothing is left in it.
        limits: archive bounds (default :class:`~leaderboard.board.archives.ArchiveLimits`).

    Raises:
        SubmissionError: an unsafe, oversized or unreadable archive (naming the member).
    """
    if not is_archive_name(name):
        raise SubmissionError(
            [f"{name}: not a .zip or .tar(.gz) archive; upload an archive of the SR images"]
        )
    into.mkdir(parents=True, exist_ok=True)
    fd, blob_name = tempfile.mkstemp(prefix=".upload-", dir=into)
    os.close(fd)
    blob = Path(blob_name)
    try:
        if isinstance(source, Path):
            shutil.copyfile(source, blob)
        else:
            save_upload(source, blob)
        try:
            folder = unpack_archive(blob, into, name=name, limits=limits)
        except UnsafeArchiveError as exc:
            raise SubmissionError([str(exc)]) from exc
    finally:
        blob.unlink(missing_ok=True)
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def upload_name(name: str) -> str:
    """The file name of an uploaded image as it may be written (the browser sends the name, so it
    is client-controlled): its last path component, never empty, ``.`` or ``..``.

    Raises:
        SubmissionError: a name that cannot be a file name.
    """
    base = Path(str(name).replace("\\", "/")).name
    if base in ("", ".", "..") or "\x00" in base:
        raise SubmissionError([f"uploaded file name {name!r} is not usable; name each output after its pair"])
    return base


def save_upload(source: bytes | IO[bytes], dest: Path) -> Path:
    """Copy an uploaded file to ``dest`` in chunks of :data:`COPY_CHUNK` bytes (from the start)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        dest.write_bytes(source)
        return dest
    if hasattr(source, "seek"):
        source.seek(0)
    with open(dest, "wb") as fh:
        shutil.copyfileobj(source, fh, COPY_CHUNK)
    return dest


# --------------------------------------------------------------------------- validation


def output_header(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a submitted image from its header alone, enforcing the pixel limit
    (``core.imagelimits``) before any pixel is decoded.

    Raises:
        ImageTooLargeError: over the pixel limit (names the file and the limit).
        ImageFormatError: not a readable image (names the file).
    """

    try:
        return check_image_pixels(path)
    except ImageTooLargeError:
        raise
    except UserError as exc:  # an unreadable header
        raise ImageFormatError(str(exc)) from exc


def decode_output(path: Path) -> None:
    """Check that a submitted image is 8-bit RGB and decodes completely, streaming from the file
    (it is never read whole into memory: only the decoded pixels are).

    Raises:
        ImageFormatError: wrong mode (alpha, grayscale, 16-bit), corrupt or truncated data.
    """
    from PIL import Image, UnidentifiedImageError


    try:
        with open(path, "rb") as fh:
            head = fh.read(32)  # the PNG IHDR holds the bit depth (16-bit PNGs open as 8-bit RGB)
            fh.seek(0)
            with Image.open(fh) as img:
                check_mode(img, path, head)
                img.load()  # decodes from the file handle: truncated data fails here
    except ImageFormatError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageFormatError(
            f"{path}: cannot be decoded ({exc}); the file is corrupt or truncated, re-export or re-download it"
        ) from exc


def is_web_link(text: str) -> bool:
    """Whether ``text`` is an absolute http(s) URL (the only links pages and exports render)."""
    from urllib.parse import urlparse

    parsed = urlparse(text.strip())
    return (
        parsed.scheme in ("http", "https")
        and bool(parsed.netloc)
        and not any(c.isspace() for c in text.strip())
    )


def ownership_problems(sub: Submission, methods: pd.DataFrame) -> list[str]:
    """Why ``sub`` may not use its method name, if it may not (empty list: it may).

    Args:
        sub: the submission (``sub.owner`` already given).
        methods: every version row of the store (``ResultsStore.methods_frame(all_versions=True)``).
    """

    name, owner = sub.method, normalise_owner(sub.owner)
    folded = name.casefold()
    builtin = [b for b in builtin_names() if b.casefold() == folded]
    if builtin:
        return [f"method name {name!r} is the suite's built-in method {builtin[0]!r}; pick another name"]
    same = methods[methods["name"].str.casefold() == folded]
    if same.empty:
        return []
    owners = {normalise_owner(o) for o in same["owner"]}
    if owners != {owner}:
        who = "a method the suite runs itself" if SUITE_OWNER in owners else "another submitter's method"
        return [
            f"method name {name!r} is {who} (names belong to their first submitter); pick another name, or "
            "submit as the owner of the name to add a version"
        ]
    spelled = sorted(set(same["name"]) - {name})
    if spelled:
        return [
            f"method name {name!r} differs only in case from your method {spelled[0]!r}; use {spelled[0]!r}"
        ]
    return []


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
    owner = normalise_owner(sub.owner)
    if not owner:
        problems.append(
            "no submitter given: enter the submitter's id or contact (it records who owns the name)"
        )
    elif len(owner) > MAX_OWNER_CHARS or not owner.isprintable():
        problems.append(f"submitter {sub.owner[:40]!r}: use at most {MAX_OWNER_CHARS} printable characters")
    for link in sub.links:
        if not is_web_link(link):
            problems.append(f"link {link!r} is not an http(s) URL; give paper / code links as https://...")

    datasets = store.datasets_frame()
    row = datasets[datasets["name"] == sub.dataset]
    if row.empty:
        raise SubmissionError(
            [
                *problems,
                f"dataset {sub.dataset!r} is unknown to the store; known: {', '.join(sorted(datasets['name']))}",
            ]
        )
    root = Path(str(row["root"].iloc[0]))
    if not root.is_dir():
        raise SubmissionError(
            [*problems, f"dataset {sub.dataset!r}: its images ({root}) are not on this server"]
        )
    ds = load_dataset(
        root,
        layout=str(row["layout"].iloc[0]) or None,
        scale=int(row["scale"].iloc[0]),
        name=sub.dataset,
        validate=False,
    )
    if not ds.has_reference:
        problems.append(
            f"dataset {sub.dataset!r} has no HR images: submissions need a reference to be scored"
        )

    resume = False
    methods = store.methods_frame(all_versions=True)
    if owner and NAME_PATTERN.match(sub.method or "") and sub.method != GT:
        problems += ownership_problems(sub, methods)
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
            problems.append(
                f"two outputs share the name {stem!r} ({', '.join(p.name for p in group)}); keep one"
            )
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
        problems.append(
            f"{len(extra)} outputs match no image of {sub.dataset!r}: {shown}; is this the right dataset?"
        )
    if not files:
        problems.append(f"{folder}: holds no image files (.png, .jpg, ...)")

    pairs = {p.id: p for p in ds.pairs}
    for pid, path in outputs.items():
        pair = pairs[pid]
        try:
            want = image_size(pair.hr) if pair.hr is not None else None
            got = output_header(path)  # the pixel limit, before anything is decoded
            if want is not None and got != want:
                problems.append(
                    f"{path.name}: is {got[0]}x{got[1]} but the HR image of {pid!r} is {want[0]}x{want[1]}; "
                    f"outputs must be exactly x{ds.scale} of the LR input (they are never resized)"
                )
                continue
            decode_output(path)
        except (ImageFormatError, ImageTooLargeError, FileNotFoundError) as exc:
            # name the file as the submitter knows it: relative to the outputs folder (an
            # upload's is a temporary folder of the server)
            problems.append(str(exc).replace(f"{folder}{os.sep}", ""))

    if not problems:
        twin = _identical_method(ds, outputs, store)
        if twin is not None and twin != sub.method:
            problems.append(
                f"these outputs are byte-identical to those of method {twin!r} already scored on {sub.dataset!r}; "
                "duplicates are not accepted"
            )
    if problems:
        raise SubmissionError(problems)
    return CheckedSubmission(dataclasses.replace(sub, owner=owner), ds, folder, outputs, resume)


def _identical_method(ds: PairedDataset, outputs: dict[str, Path], store: ResultsStore) -> str | None:
    """A method already scored on ``ds`` whose every output has the same bytes, if any.

    Uses the content hash the runner stores with precomputed outputs
    (``benchmark.runner.content_hash(lr, hr, sr)``), so no image is re-read from other methods.
    """

    scores = store.scores_frame(dataset=ds.name)
    if scores.empty:
        return None
    pairs = {p.id: p for p in ds.pairs}
    mine = {}
    for pid, path in outputs.items():
        hr = pairs[pid].hr
        if hr is not None:
            mine[pid] = content_hash(file_sha256(pairs[pid].lr), file_sha256(hr), file_sha256(path))
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
    checked: CheckedSubmission,
    store: ResultsStore,
    *,
    metrics: list[str],
    device: str = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Stage the outputs, register the method version and compute ``metrics`` with the runner.

    The name's ownership is checked again first (another submission may have taken the name
    since validation); the store refuses a foreign name too (``MethodOwnershipError``).

    Returns:
        The runner's per-image scores of the submission (``frame.attrs['unavailable']`` lists
        metrics skipped for missing weights).

    Raises:
        SubmissionError: the name now belongs to someone else.
    """

    sub = checked.submission
    if not metrics:
        raise SubmissionError(["no metrics chosen: pick at least one metric to compute"])
    problems = ownership_problems(sub, store.methods_frame(all_versions=True))
    if problems:
        raise SubmissionError(problems)
    folder = stage_folder(checked)
    method = SubmittedMethod(
        sub.method,
        sub.family,
        sub.description,
        links=list(sub.links),
        folder=folder,
        submitted_version=sub.version,
        owner=normalise_owner(sub.owner),
    )
    frame = evaluate(
        [checked.dataset], [method], list(metrics), store=store, device=device, progress=progress, gt=False
    )
    atomic_write_text(folder / COMPLETE_MARKER, sub.version)
    return frame


@dataclass
class SubmittedMethod(FolderMethod):
    """A ``folder:`` method that carries the submitter's version, owner, family and description."""

    submitted_version: str = ""
    owner: str = ""

    def version(self) -> str:
        return self.submitted_version

    def record(self) -> MethodRecord:
        return dataclasses.replace(super().record(), owner=self.owner)


# --------------------------------------------------------------------------- admin secret

ADMIN_ENV = "SCREENSR_BOARD_ADMIN_HASH"
"""Environment variable holding the admin secret's salted scrypt hash (``scrypt$SALT$DIGEST``,
made by ``screensr board hash-secret``); the secret itself is never stored. ``screensr board
--admin-secret-hash HASH`` sets it; Streamlit secrets may hold it too (key ``board_admin_hash``)."""

LEGACY_ADMIN_ENV = "SCREENSR_BOARD_ADMIN_SHA256"
"""The earlier variable (an unsalted sha256). Still read, for one release, only to refuse a
sha256 value with the command that makes the new hash; an scrypt hash there is accepted."""

SECRETS_KEY, LEGACY_SECRETS_KEY = "board_admin_hash", "board_admin_sha256"

SCRYPT_PATTERN = re.compile(r"^scrypt\$[0-9a-f]{32}\$[0-9a-f]{128}$")
"""What ``core.secrets.hash_secret`` writes: a 16-byte salt and a 64-byte digest, in hex."""

HASH_HELP = (
    "create the salted hash with `screensr board hash-secret` (it reads the secret from stdin) and start the "
    'board with --admin-secret-hash "HASH" (or set SCREENSR_BOARD_ADMIN_HASH)'
)

ADMIN_MAX_FAILURES = 5
"""Wrong admin secrets one browser session may try before it is locked out."""
ADMIN_LOCKOUT_S = 300.0
"""How long a locked-out session waits (seconds)."""
ADMIN_DELAY_S = 1.0
"""Pause after every wrong secret (seconds), on top of the scrypt evaluation."""


class AdminSecretError(UserError, ValueError):
    """The configured admin-secret hash is unusable (an unsalted sha256, or malformed)."""


def parse_admin_hash(value: str, source: str) -> str:
    """Check a configured admin hash; return it (stripped).

    Raises:
        AdminSecretError: an unsalted sha256 (64 hex digits) or anything but an scrypt hash,
            with the command that makes one.
    """
    value = value.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise AdminSecretError(
            f"{source} holds an unsalted sha256, which is no longer accepted (it is cheap to brute-force); {HASH_HELP}"
        )
    if not SCRYPT_PATTERN.fullmatch(value):
        raise AdminSecretError(
            f"{source} is not an admin-secret hash (expected scrypt$<32 hex>$<128 hex>, got {len(value)} "
            f"characters); {HASH_HELP}"
        )
    return value


def admin_hash(secrets: object | None = None) -> str | None:
    """The configured admin-secret hash, or None when submissions are disabled.

    Looked up in ``$SCREENSR_BOARD_ADMIN_HASH``, then Streamlit ``secrets`` (key
    ``board_admin_hash``); the earlier ``$SCREENSR_BOARD_ADMIN_SHA256`` / ``board_admin_sha256``
    are read only to accept an scrypt hash placed there or refuse a sha256 with the fix.

    Raises:
        AdminSecretError: the configured value is not a salted scrypt hash.
    """
    for source, value in (
        (ADMIN_ENV, os.environ.get(ADMIN_ENV)),
        (f"Streamlit secret {SECRETS_KEY!r}", _secret(secrets, SECRETS_KEY)),
        (LEGACY_ADMIN_ENV, os.environ.get(LEGACY_ADMIN_ENV)),
        (f"Streamlit secret {LEGACY_SECRETS_KEY!r}", _secret(secrets, LEGACY_SECRETS_KEY)),
    ):
        if value and str(value).strip():
            return parse_admin_hash(str(value), source)
    return None


def _secret(secrets: object | None, key: str) -> str | None:
    if secrets is None:
        return None
    try:
        return secrets.get(key)  # type: ignore[attr-defined]
    except FileNotFoundError as exc:
        # st.secrets raises this class both when no secrets.toml exists (nothing configured
        # there) and when one cannot be parsed (which must not pass for "no secret")
        if str(exc).startswith("No secrets found"):
            return None
        raise AdminSecretError(f"the Streamlit secrets cannot be read ({exc}); fix the secrets.toml") from exc


def check_admin(secret: str, expected_hash: str) -> bool:
    """Whether ``secret`` matches the scrypt hash ``expected_hash`` (constant-time comparison)."""

    return bool(secret) and check_secret(secret, expected_hash)


_limiter: AttemptLimiter | None = None
_limiter_lock = threading.Lock()


def admin_limiter() -> AttemptLimiter:
    """The process-wide attempt limiter of the board's admin login (Streamlit sessions are threads
    of one process), keyed by browser session: :data:`ADMIN_MAX_FAILURES` wrong secrets lock a
    session out for :data:`ADMIN_LOCKOUT_S`, each costing :data:`ADMIN_DELAY_S`."""
    global _limiter
    with _limiter_lock:
        if _limiter is None:

            _limiter = AttemptLimiter(
                max_failures=ADMIN_MAX_FAILURES, lockout_s=ADMIN_LOCKOUT_S, delay_s=ADMIN_DELAY_S
            )
        return _limiter
