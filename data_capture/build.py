"""Dataset build: sources + canvases + photos -> a ScreenSR paired dataset folder, plus exports.

Folder layout written by ``build_dataset`` (the contract with ``benchmark``)::

    DATASET/
      hr/<id>.png          clean source (cropped to a multiple of the scale), ok pairs only
      lr/<id>.png          registered, colour-fixed photo at source_size / scale, ok pairs only
      records/<id>.json    one record per pair (written last: it marks the pair complete)
      manifest.jsonl       all records, one JSON object per line, sorted by id
      dataset.json         name, scale, kind "screensr-capture", counts, the build config
      report.md, report/   the QA report (thumbnails, plots)

Photos are matched to canvases by file stem; ``<id>`` is that stem. A photo whose markers belong
to another canvas of the folder is rejected naming that canvas; a source that changed since its
canvas was made (SHA-1 recorded in the layout) is rejected too.

Resume and crash safety: a pair whose record exists with the same input fingerprint (SHA-1 of the
photo, the layout and the source, plus the settings hash) is not recomputed, except a pair rejected
before it reached the pipeline (unreadable file, pixel limit, missing source: ``input_error``),
which every run retries. Every file is written
atomically (``core.atomic``: temporary file, then rename) and a pair's images are written before its
record, so a crash (even SIGKILL) leaves at most hidden temporary files, removed by the next run,
and never a record without its images. The manifest, ``dataset.json`` and the report are rebuilt
from the records on every run. One build at a time per folder: a second concurrent build of the same
folder stops with an error (an advisory lock on ``.build.lock``, released by the kernel when the
holder dies). A resumed build gives the uninterrupted build's manifest and images exactly; only
the measured timings (``timings_ms``, ``register_ms``) of recomputed pairs differ.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.atomic import atomic_copy, atomic_path
from core.config import from_dict, load_config, to_dict
from core.errors import ConfigError, MissingFileError, UserError
from core.hashing import file_sha1
from data_capture.canvas import CanvasSet, load_layout
from data_capture.imageio import list_images, read_image, read_json, write_image, write_json, write_text
from data_capture.pair import PairConfig, PairInputError, PairResult, load_truth, process_pair
from data_capture.quality import write_report

KIND = "screensr-capture"


@dataclass
class BuildConfig:
    """Dataset build settings (saved in ``dataset.json``)."""

    name: str = ""  # defaults to the output folder's name
    pair: PairConfig = field(default_factory=PairConfig)
    keep_aligned: bool = False  # also write aligned/<id>.png: the photo at source resolution, before the fix
    screen: str = ""  # screen model the canvases were shown on (recorded per pair)
    report: bool = True

    def validate(self) -> None:
        self.pair.validate()


_TEMP = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")  # core.atomic's ".NAME.XXXX.tmp.SUFFIX" (and older ".NAME.XXXX.tmp")


class BuildLockedError(UserError):
    """Another build is writing the same dataset folder."""


class BuildInputError(UserError, ValueError):
    """The capture folders cannot make a dataset as they are (the message names the files and the fix)."""


@contextlib.contextmanager
def build_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``out_dir/.build.lock`` (POSIX ``flock``).

    The kernel drops the lock when its holder exits, however it exits (SIGKILL included), so a
    stale lock file never blocks a later build. On platforms without ``fcntl`` no lock is taken.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one build at a time is then up to the user
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".build.lock", "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildLockedError(
                f"another `screensr capture build` is writing {out_dir} (it holds {out_dir / '.build.lock'}); "
                "wait for it to finish, or build into another --out folder"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Delete the temporary files an interrupted build left in ``out_dir`` and its folders.

    Only call it while holding ``build_lock``: a temporary file is then never one in use.
    """
    gone = []
    for folder in [out_dir] + [out_dir / sub for sub in ("hr", "lr", "records", "aligned", "report")]:
        if folder.is_dir():
            for p in folder.iterdir():
                if p.is_file() and _TEMP.match(p.name):
                    p.unlink()
                    gone.append(p)
    return gone


def config_hash(cfg: BuildConfig) -> str:
    """Hash of the settings that change a pair's outputs."""
    return hashlib.sha1(json.dumps(to_dict(cfg.pair), sort_keys=True).encode()).hexdigest()[:16]


def match_photos(canvases_dir: Path, photos_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[Path], list[str]]:
    """Pair photos with layouts by stem: (pairs (id, layout, photo), unmatched photos, canvases without photo)."""
    canvases_dir, photos_dir = Path(canvases_dir), Path(photos_dir)
    if not canvases_dir.is_dir():
        raise MissingFileError(f"canvas folder {canvases_dir} does not exist; run `screensr capture canvas` first")
    layouts = {p.name[: -len(".layout.json")]: p for p in canvases_dir.glob("*.layout.json")}
    if not layouts:
        raise MissingFileError(f"no *.layout.json in {canvases_dir}; pass the folder written by `screensr capture canvas`")
    photos = list_images(photos_dir)
    by_stem: dict[str, list[Path]] = {}
    for p in photos:
        by_stem.setdefault(p.stem, []).append(p)
    pairs, unmatched = [], []
    for stem, ps in sorted(by_stem.items()):
        if stem in layouts:
            if len(ps) > 1:
                raise BuildInputError(f"several photos share the stem '{stem}' in {photos_dir}: {[p.name for p in ps]}; keep one")
            pairs.append((stem, layouts[stem], ps[0]))
        else:
            unmatched.extend(ps)
    missing = sorted(set(layouts) - set(by_stem))
    return pairs, unmatched, missing


def build_dataset(sources_dir: Path, canvases_dir: Path, photos_dir: Path, out_dir: Path,
                  cfg: BuildConfig | None = None, *, progress: bool = True) -> Path:
    """Build (or resume) the dataset folder ``out_dir``; returns it. See the module docstring."""
    cfg = cfg or BuildConfig()
    cfg.validate()
    sources_dir, out_dir = Path(sources_dir), Path(out_dir)
    if not sources_dir.is_dir():
        raise MissingFileError(f"sources folder {sources_dir} does not exist; pass the folder the canvases were made from")
    pairs, unmatched, missing = match_photos(canvases_dir, photos_dir)
    if not pairs:
        raise MissingFileError(
            f"no photo in {photos_dir} matches a canvas stem in {canvases_dir}; name each photo like its canvas (e.g. 0001.jpg for 0001.png)"
        )
    with build_lock(out_dir):
        remove_stale_temporaries(out_dir)
        _build_locked(sources_dir, Path(canvases_dir), pairs, unmatched, missing, out_dir, cfg, progress)
    return out_dir


def _pair_record(pid: str, lpath: Path, ppath: Path, sources_dir: Path, canvases: Any, cfg: BuildConfig,
                 fingerprint: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Compute one pair: (record, PairResult). User-fixable problems become a rejection reason."""

    base = {"id": pid, "photo": ppath.name, "canvas": lpath.name.replace(".layout.json", ".png"),
            "fingerprint": fingerprint}
    try:
        layout = load_layout(lpath)
        src_path = sources_dir / layout.source
        if layout.source_sha1 and src_path.is_file() and fingerprint.get("source_sha1") != layout.source_sha1:
            raise PairInputError(
                f"source {src_path} changed since canvas {lpath.name} was made (its photo shows the old image); "
                "restore the source the canvas was made from, or make a new canvas and retake the photo"
            )
        src = read_image(src_path, role="source")
        photo = read_image(ppath, role="photo", exif=True)
        if any("grayscale" in n for n in photo.notes):
            # the colour fix would paint the source's colours into it: an LR that was never captured
            raise PairInputError(f"photo {ppath.name} is grayscale; export the capture in colour (RGB)")
        truth = load_truth(ppath)
        res = process_pair(photo.rgb, src.rgb, layout, cfg.pair, truth, want_aligned=cfg.keep_aligned,
                           canvases=canvases, stem=pid)
        rec = {**base, "source": layout.source, **res.record, "orientation": photo.orientation,
               "screen": cfg.screen or None,
               "exif": photo.exif, "input_notes": photo.notes + [f"source: {n}" for n in src.notes]}
    except (UserError, OSError) as exc:  # user-fixable: the message is the reason
        res = PairResult(record={})
        # "input_error": the pair never reached the pipeline (unreadable file, pixel limit, missing
        # source): such a rejection depends on the surroundings too, so a rerun retries it
        rec = {**base, "status": "rejected", "reason": str(exc), "scale": cfg.pair.scale, "input_error": True}
    except Exception as exc:  # anything else (an OpenCV failure on a strange photo): keep going, say so
        res = PairResult(record={})
        rec = {**base, "status": "rejected", "scale": cfg.pair.scale,
               "reason": f"internal error ({type(exc).__name__}: {str(exc).strip()[:300]}); please report it"}
    return rec, res


def _build_locked(sources_dir: Path, canvases_dir: Path, pairs: list[tuple[str, Path, Path]], unmatched: list[Path],
                  missing: list[str], out_dir: Path, cfg: BuildConfig, progress: bool) -> None:
    from tqdm import tqdm

    chash = config_hash(cfg)
    for sub in ("hr", "lr", "records"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    canvases = CanvasSet.read(canvases_dir)
    records: list[dict[str, Any]] = []
    s = cfg.pair.scale
    for pid, lpath, ppath in tqdm(pairs, desc="build", unit="pair", disable=not progress):
        rpath = out_dir / "records" / f"{pid}.json"
        layout = canvases.layouts.get(pid)
        src_path = sources_dir / layout.source if layout is not None else None
        fingerprint = {"photo_sha1": file_sha1(ppath), "layout_sha1": file_sha1(lpath),
                       "source_sha1": file_sha1(src_path) if src_path is not None and src_path.is_file() else None,
                       "config": chash}
        if rpath.is_file():
            try:
                old = read_json(rpath)
                if old.get("fingerprint") == fingerprint and not old.get("input_error") and (
                    old.get("status") != "ok" or ((out_dir / old["hr"]).is_file() and (out_dir / old["lr"]).is_file())
                ):
                    records.append(old)
                    continue
            except (ValueError, KeyError, TypeError):
                pass  # an unreadable or foreign record: recompute the pair, which rewrites it
        rec, res = _pair_record(pid, lpath, ppath, sources_dir, canvases, cfg, fingerprint)
        if rec["status"] == "ok":
            rec["hr"], rec["lr"] = f"hr/{pid}.png", f"lr/{pid}.png"
            write_image(out_dir / rec["hr"], res.hr)  # type: ignore[arg-type]
            write_image(out_dir / rec["lr"], res.lr)  # type: ignore[arg-type]
        else:
            rec["hr"] = rec["lr"] = None
            for sub in ("hr", "lr"):  # a pair that is now rejected must not leave stale images
                (out_dir / sub / f"{pid}.png").unlink(missing_ok=True)
        if cfg.keep_aligned and res.aligned is not None:
            write_image(out_dir / "aligned" / f"{pid}.png", res.aligned)
            rec["aligned"] = f"aligned/{pid}.png"
        write_json(rpath, rec)  # last: its presence marks the pair complete
        records.append(rec)
    for p in unmatched:
        records.append({"id": p.stem, "photo": p.name, "status": "rejected", "scale": s, "hr": None, "lr": None,
                        "reason": f"no canvas layout named {p.stem}.layout.json in {Path(canvases_dir).name}/"})
    records.sort(key=lambda r: r["id"])
    # drop records of pairs whose photo disappeared since the last run
    live = {r["id"] for r in records}
    for rp in (out_dir / "records").glob("*.json"):
        if rp.stem not in live:
            rp.unlink()
    for sub in ("hr", "lr", "aligned"):
        for ip in (out_dir / sub).glob("*.png") if (out_dir / sub).is_dir() else []:
            if ip.stem not in live:
                ip.unlink()
    write_text(out_dir / "manifest.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    n_ok = sum(r["status"] == "ok" for r in records)
    meta = {
        "name": cfg.name or out_dir.resolve().name,
        "kind": KIND,
        "version": 1,
        "scale": s,
        "counts": {"pairs": len(records), "ok": n_ok, "rejected": len(records) - n_ok,
                   "canvases_without_photo": len(missing)},
        "canvases_without_photo": missing,
        "layout": {"hr": "hr/<id>.png", "lr": "lr/<id>.png", "manifest": "manifest.jsonl",
                   "lr_geometry": "LR pixel j centre = source px s*j + (s-1)/2 (area downscale of the source plane)",
                   "photo_to_canvas": "3x3, photo px (upright, EXIF applied) -> canvas px; pixel centres at integers"},
        "config": to_dict(cfg),
    }
    write_json(out_dir / "dataset.json", meta)
    if cfg.report:
        write_report(out_dir, records, title=f"ScreenSR capture report: {meta['name']}")


def load_build_config(path: Path | None, **overrides: Any) -> BuildConfig:
    """A BuildConfig from an optional JSON/YAML file; ``scale`` etc. override ``pair`` fields."""
    cfg = load_config(BuildConfig, path)
    pair_over = {k: v for k, v in overrides.items() if v is not None}
    if pair_over:
        d = to_dict(cfg)
        for k, v in pair_over.items():
            if k in ("scale",):
                d["pair"][k] = v
            elif k in ("colour_method", "colour_levels"):
                d["pair"]["colour"][k.split("_")[1]] = v
            elif k in ("name", "keep_aligned", "report", "screen"):
                d[k] = v
            else:
                raise ConfigError(f"unknown override '{k}'")
        cfg = from_dict(BuildConfig, d)
    return cfg


# ---------------------------------------------------------------------------- exports


def read_manifest(dataset_dir: Path) -> list[dict[str, Any]]:
    """The records of a built dataset (``manifest.jsonl``)."""
    p = Path(dataset_dir) / "manifest.jsonl"
    if not p.is_file():
        raise MissingFileError(f"{p} does not exist; build the dataset with `screensr capture build` first")
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _flat_meta(r: dict[str, Any]) -> dict[str, Any]:
    qa = r.get("qa", {})
    return {
        "id": r["id"], "scale": r["scale"], "source": r.get("source"), "photo": r.get("photo"),
        "psnr_y": qa.get("psnr_y"), "ssim_y": qa.get("ssim_y"), "ecc_correlation": qa.get("ecc_correlation"),
        "shift_p95_px": qa.get("shift_p95_px"),
        "photo_to_canvas": json.dumps(r.get("photo_to_canvas")),
        "colour_fix": json.dumps(r.get("colour_fix")),
    }


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``b`` already holds exactly ``a`` (the same inode, or equal bytes)."""
    import filecmp
    import os

    if not b.is_file():
        return False
    if os.path.samefile(a, b):
        return True
    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


def export_imagefolder(dataset_dir: Path, out_dir: Path, split: str = "test") -> Path:
    """Hugging Face ``datasets`` ImageFolder layout: ``out/<split>/{hr,lr}/<id>.png`` + ``metadata.jsonl``.

    Columns ``hr_file_name`` / ``lr_file_name`` become the image columns ``hr`` / ``lr``; load with
    ``datasets.load_dataset("imagefolder", data_dir=out)``. Only ok pairs are exported. Images are
    hard-linked where the filesystem allows (else copied), each atomically; ``metadata.jsonl`` is
    written last, so an interrupted export is completed by running it again.
    """
    import os

    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    root = out_dir / split
    for p in root.iterdir() if root.is_dir() else []:  # an interrupted export's metadata.jsonl
        if p.is_file() and _TEMP.match(p.name):
            p.unlink()
    lines = []
    for r in read_manifest(dataset_dir):
        if r["status"] != "ok":
            continue
        for key in ("hr", "lr"):
            src, dst = dataset_dir / r[key], root / key / f"{r['id']}.png"
            if _same_file(src, dst):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.link.tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(src, tmp)  # no copy: the dataset's own file (its permissions already follow the umask)
            except OSError:  # another filesystem, or no hard links: a real copy
                atomic_copy(src, dst)
            else:
                os.replace(tmp, dst)
        lines.append(json.dumps({"hr_file_name": f"hr/{r['id']}.png", "lr_file_name": f"lr/{r['id']}.png", **_flat_meta(r)}))
    if not lines:
        raise BuildInputError(f"{dataset_dir} has no ok pairs to export; see its report.md for the rejection reasons")
    # files of pairs exported earlier but rejected or gone now would be loaded without metadata
    keep = {json.loads(line)["id"] for line in lines}
    for key in ("hr", "lr"):
        for p in (root / key).iterdir():
            if p.is_file() and (p.name.startswith(".") or p.stem not in keep):
                p.unlink()  # (hidden files: links left by an interrupted export)
    write_text(root / "metadata.jsonl", "\n".join(lines) + "\n")
    return out_dir


def export_webdataset(dataset_dir: Path, out_dir: Path, *, maxcount: int = 1000) -> list[Path]:
    """WebDataset shards ``out/screensr-%06d.tar``: samples ``<id>.hr.png``, ``<id>.lr.png``, ``<id>.json``.

    Each shard is written to a temporary file and renamed when complete (``core.atomic``).
    """
    try:
        import webdataset as wds
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("WebDataset export needs the webdataset package: pip install 'screensr[vosr]'") from exc
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recs = [r for r in read_manifest(dataset_dir) if r["status"] == "ok"]
    if not recs:
        raise BuildInputError(f"{dataset_dir} has no ok pairs to export; see its report.md for the rejection reasons")
    for p in out_dir.iterdir():  # shards an interrupted export left half-written
        if p.is_file() and _TEMP.match(p.name):
            p.unlink()
    shards = []
    for i in range(0, len(recs), maxcount):
        final = out_dir / f"screensr-{i // maxcount:06d}.tar"
        with atomic_path(final) as tmp:
            with wds.TarWriter(str(tmp)) as sink:
                for r in recs[i : i + maxcount]:
                    sink.write({"__key__": r["id"], "hr.png": (dataset_dir / r["hr"]).read_bytes(),
                                "lr.png": (dataset_dir / r["lr"]).read_bytes(), "json": json.dumps(r).encode()})
        shards.append(final)
    for p in out_dir.glob("screensr-*.tar"):  # shards of a larger earlier export
        if p not in shards:
            p.unlink()
    return shards
