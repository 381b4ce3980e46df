"""Paired datasets: HR/LR pairs matched by name (never by sorted order), with their layouts.

Layouts (detected from the folder, or forced with ``layout=``):

``generic``
    ``hr/`` and ``lr/`` (any case; also ``gt/``/``lq/`` and ``test_HR/``/``test_LR/``) with
    matching file stems; ``scale`` given or inferred.
``capture``
    a dataset built by ``screensr capture``: ``hr/``, ``lr/``, ``manifest.jsonl`` (one object per
    pair: ``id``, ``status`` ok|rejected, ``scale``) and ``dataset.json``; rejected pairs are
    skipped and counted.
``crops``
    the StableSR/OSEDiff centre-crop test sets (RealSR 100 and DRealSR 93 pairs, LR 128x128,
    HR 512x512): ``test_HR/`` and ``test_LR/`` with identical file names.
``realsr``
    full-size RealSR (V3): ``<Camera>/Test/<scale>/<name>_HR.png`` and ``<name>_LR<scale>.png``.
``drealsr``
    full-size DRealSR: ``Test_x<scale>/test_HR/<name>_x1.png`` and ``test_LR/<name>_x<scale>.png``.
``screensr``
    the ScreenSR release (``CSWRY/ScreenSR``): ``HR/`` and ``LR/`` folders (handled as generic),
    or a Hugging Face ``datasets`` repository or folder given as ``hf:NAME_OR_PATH[@split]``,
    materialised once into ``$SCREENSR_HOME/datasets/<name>/``.
``nr``
    LR images only (no ground truth): only no-reference metrics apply.

A dataset name that is not a path is looked up as ``$SCREENSR_HOME/datasets/<name>``; the public
test sets (``ScreenSR``, ``RealSR_crops``, ``DRealSR_crops``, ``RealSR``, ``DRealSR``), their origin
and expected structure are catalogued in :mod:`benchmark.dataset_sources`, and a missing one is
reported with where to get it. ``screensr bench datasets`` lists them with what is present.

Example:
    >>> ds = load_dataset("tests/data/drealsr_osediff")   # doctest: +SKIP
    >>> ds.layout, ds.scale, len(ds)                        # doctest: +SKIP
    ('crops', 4, 19)
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmark.dataset_sources import (
    KNOWN_DATASETS,
    LAYOUT_GUIDE,
    LayoutGuide,
    datasets_home,
    find_local,
    get_known_dataset,
    how_to_get,
    layouts_text,
    local_dataset_dirs,
)
from benchmark.images import ImageFormatError, check_image_header, image_size, list_images, write_png
from benchmark.store import DatasetRecord
from core.atomic import atomic_write_text
from core.errors import UnknownNameError, UserError, did_you_mean


class DatasetError(UserError, ValueError):
    """A dataset folder that does not hold what its layout requires."""


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A dataset that is not on this machine (the message says where to get it)."""


@dataclass(frozen=True)
class Pair:
    """One LR image and its HR partner.

    Attributes:
        id: the pair's name (file stem without layout suffixes such as ``_HR``/``_LR4``).
        lr: the LR file.
        hr: the HR file, or None in a no-reference-only set.
        meta: per-pair metadata (from a capture manifest).
    """

    id: str
    lr: Path
    hr: Path | None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PairedDataset:
    """Pairs of one dataset, in a stable order (by id).

    Attributes:
        name: the dataset's name in the store and reports.
        root: the folder it was read from.
        layout: one of :data:`LAYOUTS`.
        scale: the SR factor (HR size = LR size x scale).
        pairs: the pairs.
        n_rejected: pairs skipped because a capture manifest marks them rejected.
    """

    name: str
    root: Path
    layout: str
    scale: int
    pairs: list[Pair]
    n_rejected: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    @property
    def has_reference(self) -> bool:
        return any(p.hr is not None for p in self.pairs)

    def record(self) -> DatasetRecord:
        cfg = {**self.config, "n_rejected": self.n_rejected}
        return DatasetRecord(self.name, str(self.root), self.layout, self.scale, len(self.pairs), cfg)

    def validate(self) -> None:
        """Check every image's header: 8-bit RGB, within the pixel limit, and each HR exactly
        ``scale`` x its LR (headers only; fast, before anything is scored).

        Raises:
            ImageFormatError: naming the file (or both files, their sizes and the expected size).
            core.imagelimits.ImageTooLargeError: an image over ``$SCREENSR_MAX_PIXELS``.
        """
        for p in self.pairs:
            lw, lh = check_image_header(p.lr)
            if p.hr is None:
                continue
            hw, hh = check_image_header(p.hr)
            if (hw, hh) != (lw * self.scale, lh * self.scale):
                raise ImageFormatError(
                    f"pair {p.id!r}: HR {p.hr} is {hw}x{hh} but LR {p.lr} is {lw}x{lh}; at x{self.scale} "
                    f"the HR must be {lw * self.scale}x{lh * self.scale}. Fix the files or pass the right --scale."
                )


def _find_dir(root: Path, *names: str) -> Path | None:
    """The sub-folder of ``root`` whose name matches one of ``names`` case-insensitively."""
    wanted = {n.lower() for n in names}
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name.lower() in wanted:
            return child
    return None


def _index(folder: Path, pattern: re.Pattern[str] | None = None) -> dict[str, Path]:
    """Stem (or the pattern's ``id`` group) -> file; duplicates are an error."""
    out: dict[str, Path] = {}
    for f in list_images(folder):
        if pattern is None:
            key = f.stem
        else:
            m = pattern.fullmatch(f.stem)
            if m is None:
                continue
            key = m.group("id")
        if key in out:
            raise DatasetError(
                f"{folder}: two files share the pair name {key!r} ({out[key].name}, {f.name}); rename one"
            )
        out[key] = f
    return out


def _match(hr: dict[str, Path], lr: dict[str, Path], where: str, layout: str) -> list[Pair]:
    missing_hr = sorted(set(lr) - set(hr))
    missing_lr = sorted(set(hr) - set(lr))
    if missing_hr or missing_lr:
        parts = []
        if missing_hr:
            parts.append(f"LR without HR: {', '.join(str(lr[k].name) for k in missing_hr[:5])}")
        if missing_lr:
            parts.append(f"HR without LR: {', '.join(str(hr[k].name) for k in missing_lr[:5])}")
        raise DatasetError(
            f"{where}: pairs are matched by file name and some have no partner ({'; '.join(parts)}); "
            "add or remove those files"
        )
    if not lr:
        raise DatasetError(f"{where}: no images found; {_expected(layout)}")
    return [Pair(k, lr[k], hr[k]) for k in sorted(lr)]


def _expected(layout: str) -> str:
    """``the <layout> layout expects: a; b`` from the layout guide (for error messages)."""
    guide = get_layout(layout).guide
    return f"the {layout} layout ({guide.summary}) expects {'; '.join(guide.structure)}"


def _infer_scale(pairs: list[Pair], where: str) -> int:
    with_hr = [(p, p.hr) for p in pairs if p.hr is not None]
    if not with_hr:
        raise DatasetError(f"{where}: no HR images, so the scale cannot be inferred; pass --scale")
    p, hr = with_hr[0]
    lw, lh = image_size(p.lr)
    hw, hh = image_size(hr)
    if hw % lw or hh % lh or hw // lw != hh // lh:
        raise ImageFormatError(
            f"pair {p.id!r}: HR {p.hr} ({hw}x{hh}) is not an integer multiple of LR {p.lr} ({lw}x{lh}); "
            "fix the files or pass --scale"
        )
    return hw // lw


def detect_layout(root: Path) -> str:
    """Guess the layout of a dataset folder (see the module docstring)."""
    if (root / "manifest.jsonl").is_file():
        return "capture"
    if _find_dir(root, "test_HR") and _find_dir(root, "test_LR"):
        return "crops"
    if _find_dir(root, "hr") and _find_dir(root, "lr"):
        return "generic"
    if any(root.glob("Test_x*/test_HR")):
        return "drealsr"
    if any(root.glob("*/Test/*")) and any(root.rglob("*_HR.*")):
        return "realsr"
    if _find_dir(root, "lr", "lq") or list_images(root):
        return "nr"
    raise DatasetError(_unrecognised(root))


def _unrecognised(root: Path) -> str:
    """Why ``root`` matches no layout: what it holds, which sub-folder might be meant, the layouts."""
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if not p.name.startswith("."))
    if not entries:
        found = "the folder is empty"
    else:
        found = f"it holds {', '.join(entries[:8])}{', ...' if len(entries) > 8 else ''} and no images"
    nested = [
        f"{child.name}/ ({layout})"
        for child in sorted(root.iterdir())
        if child.is_dir() and (layout := _detect_quiet(child)) not in (None, "nr")
    ]
    hint = f"; these sub-folders are datasets: {', '.join(nested[:5])}, pass one of them" if nested else ""
    return (
        f"{root}: not a dataset folder ({found}){hint}; expected one of {layouts_text()} "
        "(`screensr bench datasets` shows each layout; --layout forces one)"
    )


def _detect_quiet(folder: Path) -> str | None:
    try:
        return detect_layout(folder)
    except (DatasetError, OSError):
        return None


def _load_generic(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    hr_dir = _find_dir(root, "hr", "gt", "test_HR")
    lr_dir = _find_dir(root, "lr", "lq", "test_LR")
    if hr_dir is None or lr_dir is None:
        side = "HR (hr/, gt/ or test_HR/)" if hr_dir is None else "LR (lr/, lq/ or test_LR/)"
        raise DatasetError(f"{root}: no {side} folder; {_expected('generic')}")
    return _match(_index(hr_dir), _index(lr_dir), str(root), "generic"), scale, 0


def _load_crops(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    hr_dir, lr_dir = _find_dir(root, "test_HR"), _find_dir(root, "test_LR")
    if hr_dir is None or lr_dir is None:
        raise DatasetError(f"{root}: no {'test_HR' if hr_dir is None else 'test_LR'}/ folder; {_expected('crops')}")
    return _match(_index(hr_dir), _index(lr_dir), str(root), "crops"), scale, 0


def _load_capture(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    hr_dir, lr_dir = _find_dir(root, "hr"), _find_dir(root, "lr")
    if hr_dir is None or lr_dir is None:
        raise DatasetError(
            f"{root}: no {'hr' if hr_dir is None else 'lr'}/ folder next to manifest.jsonl; {_expected('capture')}; "
            "rebuild it with `screensr capture build`"
        )
    hr, lr = _index(hr_dir), _index(lr_dir)
    pairs, rejected, scales = [], 0, set()
    manifest = root / "manifest.jsonl"
    for lineno, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            pid, status = str(entry["id"]), entry.get("status", "ok")
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(f"{manifest}:{lineno}: not a manifest entry with an 'id' ({exc})") from exc
        if status == "rejected":
            rejected += 1
            continue
        if status != "ok":
            raise DatasetError(f"{manifest}:{lineno}: status {status!r} must be 'ok' or 'rejected'")
        if pid not in hr or pid not in lr:
            side = "hr" if pid not in hr else "lr"
            raise DatasetError(f"{manifest}:{lineno}: pair {pid!r} has no image in {side}/; rebuild the dataset")
        if "scale" in entry:
            scales.add(int(entry["scale"]))
        pairs.append(Pair(pid, lr[pid], hr[pid], {k: v for k, v in entry.items() if k not in ("id",)}))
    if len(scales) > 1:
        raise DatasetError(f"{manifest}: pairs have different scales {sorted(scales)}; one scale per dataset")
    if scales:
        s = scales.pop()
        if scale is not None and scale != s:
            raise DatasetError(f"{root}: --scale {scale} contradicts the manifest's scale {s}")
        scale = s
    if not pairs:
        raise DatasetError(
            f"{manifest}: no accepted pairs ({rejected} rejected)" if rejected
            else f"{manifest}: lists no pairs; {_expected('capture')}"
        )
    return sorted(pairs, key=lambda p: p.id), scale, rejected


def _load_realsr(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    # RealSR V3: Canon/Test/4/Canon_001_HR.png + Canon_001_LR4.png (and Nikon alike)
    folders = sorted({p.parent for p in root.rglob("*_HR.*") if p.parent.parent.name.lower() == "test"})
    if scale is not None:
        folders = [f for f in folders if f.name == str(scale)]
    if not folders:
        raise DatasetError(
            f"{root}: no RealSR test folder{f' for x{scale}' if scale else ''}; {_expected('realsr')}"
        )
    scales = {int(f.name) for f in folders if f.name.isdigit()}
    if len(scales) > 1:
        raise DatasetError(f"{root}: RealSR holds scales {sorted(scales)}; pass --scale to pick one")
    s = scale or scales.pop()
    pairs: list[Pair] = []
    for f in folders:
        hr = _index(f, re.compile(r"(?P<id>.+)_HR"))
        lr = _index(f, re.compile(rf"(?P<id>.+)_LR{s}"))
        pairs += _match(hr, lr, str(f), "realsr")
    return sorted(pairs, key=lambda p: p.id), s, 0


def _load_drealsr(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    # DRealSR: Test_x4/test_HR/<name>_x1.png + Test_x4/test_LR/<name>_x4.png
    dirs = sorted(root.glob("Test_x*"))
    if scale is not None:
        dirs = [d for d in dirs if d.name == f"Test_x{scale}"]
    if not dirs:
        raise DatasetError(f"{root}: no Test_x{scale or '<scale>'}/ folder; {_expected('drealsr')}")
    if len(dirs) != 1:
        raise DatasetError(f"{root}: found {', '.join(d.name for d in dirs)}; pass --scale to pick one")
    d = dirs[0]
    s = int(d.name.removeprefix("Test_x"))
    hr_dir, lr_dir = _find_dir(d, "test_HR"), _find_dir(d, "test_LR")
    if hr_dir is None or lr_dir is None:
        raise DatasetError(f"{d}: no {'test_HR' if hr_dir is None else 'test_LR'}/ folder; {_expected('drealsr')}")
    hr = _index(hr_dir, re.compile(r"(?P<id>.+)_x1"))
    lr = _index(lr_dir, re.compile(rf"(?P<id>.+)_x{s}"))
    return _match(hr, lr, str(d), "drealsr"), s, 0


def _load_nr(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    lr_dir = _find_dir(root, "lr", "lq") or root
    lr = _index(lr_dir)
    if not lr:
        raise DatasetError(f"{lr_dir}: no images found; {_expected('nr')}")
    return [Pair(k, v, None) for k, v in sorted(lr.items())], scale, 0


#: ``read(root, scale) -> (pairs sorted by id, scale or None when to be inferred, n rejected)``
Reader = Callable[[Path, int | None], tuple[list[Pair], int | None, int]]


@dataclass(frozen=True)
class Layout:
    """A dataset folder layout the harness reads.

    Attributes:
        name: the layout name (``--layout``).
        read: the reader (:data:`Reader`): pairs by name, never by sorted order.
    """

    name: str
    read: Reader

    @property
    def guide(self) -> LayoutGuide:
        """How a folder of this layout looks (:data:`benchmark.dataset_sources.LAYOUT_GUIDE`)."""
        return LAYOUT_GUIDE[self.name]


#: The layouts, in the order ``--layout`` help and the errors list them.
LAYOUTS: dict[str, Layout] = {
    lay.name: lay
    for lay in (
        Layout("generic", _load_generic),
        Layout("capture", _load_capture),
        Layout("crops", _load_crops),
        Layout("realsr", _load_realsr),
        Layout("drealsr", _load_drealsr),
        Layout("screensr", _load_generic),  # the release's HR/ + LR/ folders read as generic
        Layout("nr", _load_nr),
    )
}


def get_layout(name: str) -> Layout:
    """The layout called ``name``.

    Raises:
        UnknownNameError: not a layout (a ``KeyError``), with the closest one.
    """
    layout = LAYOUTS.get(name)
    if layout is None:
        raise UnknownNameError("layout", name, LAYOUTS, hint="`screensr bench datasets` describes each")
    return layout


def load_dataset(
    path_or_name: str | os.PathLike[str],
    *,
    scale: int | None = None,
    layout: str | None = None,
    name: str | None = None,
    validate: bool = True,
) -> PairedDataset:
    """Open a dataset folder (or named dataset, or ``hf:`` dataset) and pair its images by name.

    Args:
        path_or_name: a folder, a name under ``$SCREENSR_HOME/datasets``, or
            ``hf:REPO_OR_FOLDER[@split]`` for a Hugging Face ``datasets`` dataset.
        scale: the SR factor; inferred from the first pair (or the manifest) when None.
        layout: force a layout (default: detected).
        name: the name used in the store (default: the folder name).
        validate: check every pair's sizes against the scale (headers only).

    Raises:
        DatasetNotFoundError: no such folder or named dataset (a ``FileNotFoundError``).
        UnknownNameError: ``layout`` is not one of :data:`LAYOUTS`.
        DatasetError / ImageFormatError: a layout problem, a missing partner, a size mismatch.
    """
    text = str(path_or_name)
    if layout is not None:
        get_layout(layout)  # a typo is reported before any folder is read
    if text.startswith("hf:"):
        root = materialise_hf(text[3:])
        layout = layout or "generic"
        name = name or root.name
    else:
        root = resolve_dataset_folder(text)
    layout = layout or detect_layout(root)
    pairs, s, rejected = get_layout(layout).read(root, scale)
    if s is None:
        s = _infer_scale(pairs, str(root)) if layout != "nr" else 4
    config: dict[str, Any] = {}
    meta = root / "dataset.json"
    if meta.is_file():
        try:
            config = {"dataset_json": json.loads(meta.read_text())}
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{meta}: not valid JSON ({exc})") from exc
    ds = PairedDataset(name or root.resolve().name, root.resolve(), layout, int(s), pairs, rejected, config)
    if validate:
        ds.validate()
    return ds


@dataclass(frozen=True)
class FolderStatus:
    """What a dataset folder holds, for ``screensr bench datasets``.

    Attributes:
        given: the path or name as given (or the folder name under $SCREENSR_HOME/datasets).
        path: the folder, or None when it does not exist.
        layout, pairs, scale, rejected: as :func:`load_dataset` reads it (None when unusable).
        error: why it cannot be read, or None.
        note: for an absent dataset, where it would be.
    """

    given: str
    path: Path | None
    layout: str | None = None
    pairs: int | None = None
    scale: int | None = None
    rejected: int = 0
    error: str | None = None
    note: str | None = None


def folder_status(given: str, *, layout: str | None = None, scale: int | None = None) -> FolderStatus:
    """Read ``given`` (a folder, a named dataset, or ``hf:...``) without validating sizes.

    An ``hf:`` hub dataset is never downloaded here: only its local copy is looked at.
    """
    if given.startswith("hf:") and not Path(given[3:].partition("@")[0]).expanduser().is_dir():
        copy = hf_copy_folder(given[3:])
        if not (copy / ".complete").is_file():
            return FolderStatus(given, None, note=f"no local copy yet; it will be made at {copy}")
        given_path = str(copy)
    else:
        given_path = given
    try:
        ds = load_dataset(given_path, layout=layout, scale=scale, validate=False)
    except (UserError, OSError) as exc:
        # the listing reports each folder's problem; the error class names it (no traceback needed)
        path = Path(given_path).expanduser()
        return FolderStatus(given, path if path.is_dir() else None, error=str(exc).split("\n")[0])
    return FolderStatus(given, ds.root, ds.layout, len(ds), ds.scale, ds.n_rejected)


def survey(given: list[str] | tuple[str, ...] = ()) -> dict[str, list[FolderStatus]]:
    """The known public sets, the folders under $SCREENSR_HOME/datasets, and ``given`` ones.

    Returns:
        ``{"known": [...], "local": [...], "given": [...]}``; ``known`` follows
        :data:`KNOWN_DATASETS` (path None where absent), ``local`` lists the other named folders.
    """
    known_names = {d.name.lower() for d in KNOWN_DATASETS.values()}
    known = []
    for d in KNOWN_DATASETS.values():
        folder = find_local(d.name)
        if folder is None:
            known.append(FolderStatus(d.name, None))
            continue
        # the full-size releases hold several scales: read the one the papers report
        status = folder_status(str(folder), scale=d.scale if d.layout in ("realsr", "drealsr") else None)
        known.append(replace(status, given=d.name))
    local = [
        replace(folder_status(str(p)), given=p.name) for p in local_dataset_dirs() if p.name.lower() not in known_names
    ]
    return {"known": known, "local": local, "given": [folder_status(g) for g in given]}


def resolve_dataset_folder(text: str) -> Path:
    """The folder ``--dataset TEXT`` means: a path, else a named dataset under $SCREENSR_HOME/datasets.

    Raises:
        DatasetNotFoundError: neither exists; for a known public set (``DRealSR_crops``, ...) the
            message says where it comes from and where to put it.
    """
    path = Path(text).expanduser()
    if path.is_dir():
        return path.absolute()
    if path.exists():
        raise DatasetNotFoundError(f"dataset {text}: is a file, not a folder; give the dataset's folder")
    local = find_local(text)
    if local is not None:
        return local
    if text.lower() in {name.lower() for name in KNOWN_DATASETS}:
        raise DatasetNotFoundError(f"dataset {text} is not on this machine: {how_to_get(get_known_dataset(text))}")
    if os.sep in text or "/" in text:
        raise DatasetNotFoundError(f"dataset {text}: no such folder; check the path")
    names = [p.name for p in local_dataset_dirs()] + list(KNOWN_DATASETS)
    raise DatasetNotFoundError(
        f"dataset {text}: no such folder, and no named dataset {datasets_home() / text}"
        f"{did_you_mean(text, names, list_all_below=0)}; give a dataset folder, or a name under "
        f"{datasets_home()} (`screensr bench datasets` lists the known ones and what is present)"
    )


# ---------------------------------------------------------------------------- Hugging Face
_HR_COLUMNS = ("hr", "HR", "gt", "GT", "target", "high_res")
_LR_COLUMNS = ("lr", "LR", "lq", "LQ", "input", "low_res")
_ID_COLUMNS = ("id", "name", "image_id", "filename", "file_name")


def materialise_hf(spec: str) -> Path:
    """Write a Hugging Face ``datasets`` dataset's pairs as PNG files (once; atomic, idempotent).

    ``spec`` is ``REPO_OR_FOLDER[@split]`` (default split ``test``, else the only split). The
    dataset needs an HR and an LR image column (``hr``/``lr``, ``gt``/``lq``, ...) and an id
    column (``id``/``name``/``file_name``); pairs are named by the id, never by row order.

    Returns:
        ``$SCREENSR_HOME/datasets/<name>/`` holding ``hr/`` and ``lr/``.
    """
    import datasets as hfds
    import numpy as np

    source, _, split = spec.partition("@")
    local = Path(source).expanduser()
    root = hf_copy_folder(spec)
    name = root.name
    done = root / ".complete"
    if local.is_dir() and ((local / "dataset_info.json").is_file() or (local / "dataset_dict.json").is_file()):
        obj = hfds.load_from_disk(str(local))
    elif local.is_dir():
        obj = _hf_load(hfds, str(local), spec)
    else:
        unreachable = hub_unreachable(source)
        if unreachable is not None and done.is_file():
            # offline with a copy made earlier: its freshness cannot be checked, but it is complete
            print(f"hf:{spec}: {unreachable}; using the copy made earlier at {root}", file=sys.stderr)
            return root
        if unreachable is not None and not hf_offline_mode():
            # the hub is down or unreachable: `datasets` would retry for about 40 s, then fail
            raise DatasetNotFoundError(_hf_unavailable(spec, source, root, unreachable))
        try:
            obj = _hf_load(hfds, source, spec)
        except DatasetNotFoundError as exc:
            if unreachable is None:
                raise
            # offline mode: `datasets` looked in its own cache only (instantly) and found nothing
            raise DatasetNotFoundError(_hf_unavailable(spec, source, root, unreachable)) from exc
    if isinstance(obj, hfds.DatasetDict):
        if split:
            if split not in obj:
                raise DatasetError(f"hf:{spec}: no split {split!r}; available: {', '.join(obj)}")
            obj = obj[split]
        elif "test" in obj or len(obj) == 1:
            obj = obj["test"] if "test" in obj else next(iter(obj.values()))
        else:
            raise DatasetError(f"hf:{spec}: several splits ({', '.join(obj)}); pick one with hf:{source}@SPLIT")
    cols = obj.column_names
    hr_col = next((c for c in _HR_COLUMNS if c in cols), None)
    lr_col = next((c for c in _LR_COLUMNS if c in cols), None)
    id_col = next((c for c in _ID_COLUMNS if c in cols), None)
    if hr_col is None or lr_col is None or id_col is None:
        raise DatasetError(
            f"hf:{spec}: columns {cols}; need an HR column ({'/'.join(_HR_COLUMNS)}), an LR column "
            f"({'/'.join(_LR_COLUMNS)}) and an id column ({'/'.join(_ID_COLUMNS)})"
        )
    if done.is_file() and done.read_text() == obj._fingerprint:
        return root
    from tqdm import tqdm

    seen: set[str] = set()
    for row in tqdm(obj, desc=f"materialise {name}", unit="pair"):
        pid = Path(str(row[id_col])).stem
        if pid in seen:
            raise DatasetError(f"hf:{spec}: id {pid!r} appears twice; ids must be unique")
        seen.add(pid)
        for col, sub in ((hr_col, "hr"), (lr_col, "lr")):
            img = row[col]
            if img.mode != "RGB":
                raise ImageFormatError(f"hf:{spec}: {sub} image of {pid!r} has mode {img.mode}; expected RGB")
            write_png(root / sub / f"{pid}.png", np.asarray(img, dtype=np.uint8))
    atomic_write_text(done, obj._fingerprint)
    return root


def hf_copy_folder(spec: str) -> Path:
    """Where :func:`materialise_hf` writes ``REPO_OR_FOLDER[@split]``: ``$SCREENSR_HOME/datasets/<name>``
    (``hf:CSWRY/ScreenSR`` -> ``ScreenSR``, so ``--dataset ScreenSR`` finds it afterwards)."""
    source, _, split = spec.partition("@")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source.rstrip("/")).name) + (f"_{split}" if split else "")
    return datasets_home() / name


def _hf_load(hfds: Any, source: str, spec: str) -> Any:
    """``datasets.load_dataset(source)``, its many failure types turned into one error with the fix."""
    try:
        return hfds.load_dataset(source)
    except Exception as exc:  # the hub client and the builders raise many types; re-raised with the fix
        raise DatasetNotFoundError(
            f"hf:{spec}: cannot load it with `datasets` ({exc}); download it first "
            f"(`hf download --repo-type dataset {source} --local-dir DIR`) and pass --dataset hf:DIR"
        ) from exc


def _hf_unavailable(spec: str, source: str, root: Path, reason: str) -> str:
    return (
        f"hf:{spec}: {reason}, and there is no local copy at {root}. Where there is network, run "
        f"`hf download --repo-type dataset {source} --local-dir DIR`, copy DIR to this machine and pass "
        f"--dataset hf:DIR (or a folder with HR/ and LR/ as --dataset DIR); or run once online to "
        f"make the copy at {root}"
    )


def hf_offline_mode() -> bool:
    """Whether the Hugging Face libraries are in offline mode (``HF_HUB_OFFLINE``,
    ``HF_DATASETS_OFFLINE``), as ``datasets`` itself decides it."""
    import datasets.config

    cfg = datasets.config
    return bool(getattr(cfg, "HF_HUB_OFFLINE", False) or getattr(cfg, "HF_DATASETS_OFFLINE", False))


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exception types of a failed connection: OSError (sockets, urllib, requests) and the
    transport errors of the HTTP client huggingface_hub uses (httpx since its 1.0)."""
    import importlib

    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue  # that client is not installed: huggingface_hub does not use it
    return tuple(errors)


def hub_unreachable(repo_id: str, timeout: float = 10.0) -> str | None:
    """Why the hub cannot serve dataset ``repo_id`` now (offline mode, no connection), or None.

    One metadata request without retries: it answers within ``timeout`` seconds where
    ``datasets.load_dataset`` would retry with back-off for about 40 s before failing.

    Raises:
        DatasetNotFoundError: the hub answered that the repository does not exist (or is private
            or gated), or ``repo_id`` is neither a local folder nor a valid repository id.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)  # a mistyped local path is not a repository: say so, offline too
    except HFValidationError as exc:
        raise DatasetNotFoundError(
            f"hf:{repo_id}: no such folder on this machine, and not a hub repository id ({exc}); check the path"
        ) from None
    if hf_offline_mode():
        return "offline mode is on (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set)"

    try:
        HfApi().dataset_info(repo_id, timeout=timeout)
    except OfflineModeIsEnabled:
        return "offline mode is on (HF_HUB_OFFLINE is set)"
    except RepositoryNotFoundError:
        raise DatasetNotFoundError(
            f"hf:{repo_id}: the Hugging Face hub has no dataset {repo_id} (or it is private or gated: "
            "log in with `hf auth login`); check the name"
        ) from None
    except HfHubHTTPError:
        return None  # the hub answered; `datasets` reports what it makes of the answer
    except _network_errors() as exc:
        return f"cannot reach the Hugging Face hub at {constants.ENDPOINT} ({exc})"
    return None
