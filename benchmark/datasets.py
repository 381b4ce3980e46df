"""Paired datasets: HR/LR pairs matched by name (never by sorted order), with their layouts.

Layouts (detected from the folder, or forced with ``layout=``):

``generic``
    ``hr/`` and ``lr/`` (any case) with matching file stems; ``scale`` given or inferred.
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

A dataset name that is not a path is looked up as ``$SCREENSR_HOME/datasets/<name>``.

Example:
    >>> ds = load_dataset("tests/data/drealsr_osediff")   # doctest: +SKIP
    >>> ds.layout, ds.scale, len(ds)                        # doctest: +SKIP
    ('crops', 4, 19)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.images import ImageFormatError, image_size, list_images, write_png
from benchmark.store import DatasetRecord

LAYOUTS = ("generic", "capture", "crops", "realsr", "drealsr", "screensr", "nr")


class DatasetError(ValueError):
    """A dataset folder that does not hold what its layout requires."""


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
        """Check that every HR is exactly ``scale`` x its LR (headers only; fast).

        Raises:
            ImageFormatError: naming both files, their sizes and the expected size.
        """
        for p in self.pairs:
            if p.hr is None:
                continue
            lw, lh = image_size(p.lr)
            hw, hh = image_size(p.hr)
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


def _match(hr: dict[str, Path], lr: dict[str, Path], where: str) -> list[Pair]:
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
        raise DatasetError(f"{where}: no images found")
    return [Pair(k, lr[k], hr[k]) for k in sorted(lr)]


def _infer_scale(pairs: list[Pair], where: str) -> int:
    p = next((p for p in pairs if p.hr is not None), None)
    if p is None:
        raise DatasetError(f"{where}: no HR images, so the scale cannot be inferred; pass --scale")
    lw, lh = image_size(p.lr)
    hw, hh = image_size(p.hr)
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
    if _find_dir(root, "lr") or list_images(root):
        return "nr"
    raise DatasetError(
        f"{root}: not a dataset folder I recognise; expected hr/ + lr/ (matching stems), test_HR/ + "
        "test_LR/, a capture dataset (manifest.jsonl), a RealSR or DRealSR release, or LR images only"
    )


def _load_generic(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    hr_dir, lr_dir = _find_dir(root, "hr", "gt"), _find_dir(root, "lr", "lq")
    if hr_dir is None or lr_dir is None:
        raise DatasetError(f"{root}: a generic dataset needs hr/ and lr/ folders with matching file stems")
    return _match(_index(hr_dir), _index(lr_dir), str(root)), scale, 0


def _load_crops(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    hr_dir, lr_dir = _find_dir(root, "test_HR"), _find_dir(root, "test_LR")
    if hr_dir is None or lr_dir is None:
        raise DatasetError(f"{root}: the centre-crop layout needs test_HR/ and test_LR/ folders")
    return _match(_index(hr_dir), _index(lr_dir), str(root)), scale, 0


def _load_capture(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    hr_dir, lr_dir = _find_dir(root, "hr"), _find_dir(root, "lr")
    if hr_dir is None or lr_dir is None:
        raise DatasetError(f"{root}: a capture dataset needs hr/ and lr/ next to manifest.jsonl")
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
        raise DatasetError(f"{manifest}: no accepted pairs ({rejected} rejected)")
    return sorted(pairs, key=lambda p: p.id), scale, rejected


def _load_realsr(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    # RealSR V3: Canon/Test/4/Canon_001_HR.png + Canon_001_LR4.png (and Nikon alike)
    folders = sorted({p.parent for p in root.rglob("*_HR.*") if p.parent.parent.name.lower() == "test"})
    if scale is not None:
        folders = [f for f in folders if f.name == str(scale)]
    if not folders:
        raise DatasetError(f"{root}: no RealSR test folders (<Camera>/Test/<scale>/*_HR.png) for scale {scale}")
    scales = {int(f.name) for f in folders if f.name.isdigit()}
    if len(scales) > 1:
        raise DatasetError(f"{root}: RealSR holds scales {sorted(scales)}; pass --scale to pick one")
    s = scale or scales.pop()
    pairs: list[Pair] = []
    for f in folders:
        hr = _index(f, re.compile(r"(?P<id>.+)_HR"))
        lr = _index(f, re.compile(rf"(?P<id>.+)_LR{s}"))
        pairs += _match(hr, lr, str(f))
    return sorted(pairs, key=lambda p: p.id), s, 0


def _load_drealsr(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    # DRealSR: Test_x4/test_HR/<name>_x1.png + Test_x4/test_LR/<name>_x4.png
    dirs = sorted(root.glob("Test_x*"))
    if scale is not None:
        dirs = [d for d in dirs if d.name == f"Test_x{scale}"]
    if len(dirs) != 1:
        raise DatasetError(f"{root}: found {[d.name for d in dirs]}; pass --scale to pick one Test_x<scale> folder")
    d = dirs[0]
    s = int(d.name.removeprefix("Test_x"))
    hr_dir, lr_dir = _find_dir(d, "test_HR"), _find_dir(d, "test_LR")
    if hr_dir is None or lr_dir is None:
        raise DatasetError(f"{d}: needs test_HR/ and test_LR/")
    hr = _index(hr_dir, re.compile(r"(?P<id>.+)_x1"))
    lr = _index(lr_dir, re.compile(rf"(?P<id>.+)_x{s}"))
    return _match(hr, lr, str(d)), s, 0


def _load_nr(root: Path, scale: int | None) -> tuple[list[Pair], int | None, int]:
    lr_dir = _find_dir(root, "lr", "lq") or root
    lr = _index(lr_dir)
    if not lr:
        raise DatasetError(f"{root}: no images found")
    return [Pair(k, v, None) for k, v in sorted(lr.items())], scale, 0


_LOADERS = {
    "generic": _load_generic,
    "screensr": _load_generic,
    "capture": _load_capture,
    "crops": _load_crops,
    "realsr": _load_realsr,
    "drealsr": _load_drealsr,
    "nr": _load_nr,
}


def datasets_home() -> Path:
    """Where named datasets live: ``$SCREENSR_HOME/datasets``."""
    from benchmark.weights import screensr_home

    return screensr_home() / "datasets"


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
        FileNotFoundError: no such folder or named dataset.
        DatasetError / ImageFormatError: a layout problem, a missing partner, a size mismatch.
    """
    text = str(path_or_name)
    if text.startswith("hf:"):
        root = materialise_hf(text[3:])
        layout = layout or "generic"
        name = name or root.name
    else:
        root = Path(text).expanduser().absolute()
        if not root.exists() and os.sep not in text and "/" not in text:
            candidate = datasets_home() / text
            if candidate.is_dir():
                root = candidate
        if not root.is_dir():
            raise FileNotFoundError(
                f"dataset {text!r}: no such folder (and no named dataset at {datasets_home() / text}); "
                "give a folder with hr/ and lr/ or a name under $SCREENSR_HOME/datasets"
            )
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    layout = layout or detect_layout(root)
    pairs, s, rejected = _LOADERS[layout](root, scale)
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
    if local.is_dir() and ((local / "dataset_info.json").is_file() or (local / "dataset_dict.json").is_file()):
        obj = hfds.load_from_disk(str(local))
    else:
        try:
            obj = hfds.load_dataset(str(local) if local.is_dir() else source)
        except Exception as exc:  # the hub client raises many types; re-raised with the fix
            raise FileNotFoundError(
                f"hf:{spec}: cannot load it with `datasets` ({exc}); download it first "
                f"(`huggingface-cli download --repo-type dataset {source} --local-dir DIR`) and pass DIR"
            ) from exc
    if isinstance(obj, hfds.DatasetDict):
        if split:
            if split not in obj:
                raise ValueError(f"hf:{spec}: no split {split!r}; available: {', '.join(obj)}")
            obj = obj[split]
        elif "test" in obj or len(obj) == 1:
            obj = obj["test"] if "test" in obj else next(iter(obj.values()))
        else:
            raise ValueError(f"hf:{spec}: several splits ({', '.join(obj)}); pick one with hf:{source}@SPLIT")
    cols = obj.column_names
    hr_col = next((c for c in _HR_COLUMNS if c in cols), None)
    lr_col = next((c for c in _LR_COLUMNS if c in cols), None)
    id_col = next((c for c in _ID_COLUMNS if c in cols), None)
    if hr_col is None or lr_col is None or id_col is None:
        raise ValueError(
            f"hf:{spec}: columns {cols}; need an HR column ({'/'.join(_HR_COLUMNS)}), an LR column "
            f"({'/'.join(_LR_COLUMNS)}) and an id column ({'/'.join(_ID_COLUMNS)})"
        )
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source.rstrip("/")).name) + (f"_{split}" if split else "")
    root = datasets_home() / name
    done = root / ".complete"
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
    done.write_text(obj._fingerprint)
    return root
