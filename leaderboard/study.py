"""User-study definitions: YAML -> typed config, validation, trial assignment and the images a trial shows.

A study (VOSR appendix A.5 is the model) shows, for each LR image, the LR input next to the SR
results of every compared method and asks the participant to pick the best one under each
criterion (perceptual quality; consistency with the LR input). This module holds the pure logic:

* :class:`StudyConfig` is the typed definition loaded from YAML (unknown keys are rejected with a
  "did you mean"), with every path resolved and every image checked (:func:`validate_study`).
* :func:`build_trials` lists the trials (one per image, plus optional gold trials that pit the HR
  image against a bad candidate to catch careless voters).
* :func:`assign_trials` is the server-side assignment: which trials a participant judges, in which
  order, and the order (and subset) of the candidates on screen, all drawn from a seeded RNG
  and recorded by the store, so a participant never chooses their trials and the positions of
  the methods are randomised per participant and trial.
* :func:`candidate_png`, :func:`zoomed_crop` and :func:`png_bytes` produce what the voting page
  serves: lossless PNG bytes without file names or metadata, and the same zoomed crop of every
  candidate (nearest-neighbour, so no resampling hides or invents detail).

Example:
    >>> config = load_study("study.yaml")            # doctest: +SKIP
    >>> trials = build_trials(config)                # doctest: +SKIP
    >>> plan = assign_trials(config, trials, participant_index=0, trial_load={})  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import io
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Reserved candidate names: the HR image and a bicubic upscale of the LR input, used by gold
# trials. Method names may not start with "__", so these never collide with a real method.
HR = "__hr__"
BICUBIC = "__bicubic__"
LR = "__lr__"
GENERATED = "method:"
IMAGE_SUFFIXES = (".png",)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class StudyConfigError(ValueError):
    """A study definition that cannot be used; the message names the value and the fix."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Criterion:
    """One question asked for every trial.

    Attributes:
        key: short identifier stored with each vote (``perceptual``).
        question: the sentence shown to the participant.
    """

    key: str
    question: str


@dataclass(frozen=True)
class GoldConfig:
    """Gold (attention-check) trials: the HR image against an obviously worse candidate.

    Attributes:
        images: image ids used for gold trials (they need an HR file).
        distractor: ``bicubic`` (the LR input upscaled bicubically) or the name of a method.
        per_participant: how many gold trials each participant gets (at most ``len(images)``).
    """

    images: tuple[str, ...]
    distractor: str = "bicubic"
    per_participant: int = 1


@dataclass(frozen=True)
class StudyConfig:
    """A user study, as defined in YAML (paths are absolute once loaded).

    Attributes:
        name: identifier used on the command line (``[A-Za-z0-9._-]``, at most 64 characters).
        lr: folder of LR input PNGs named ``<image id>.png`` (or use ``dataset``).
        methods: method name -> where its SR outputs come from: a folder of PNGs named by image
            id (or by LR file stem), or ``method:SPEC`` for any ``benchmark.methods`` spec
            (``bicubic``, ``cmd:...``, ``vosr-0.5b-os``...), generated once and cached.
        criteria: the questions asked for every trial (one vote per criterion and trial).
        hr: folder of HR PNGs; needed only for gold trials.
        dataset: a paired dataset (folder or name) opened by ``benchmark.datasets.load_dataset``,
            in any layout it knows; replaces ``lr``/``hr``.
        scale: SR factor for generated methods when neither ``dataset`` nor a folder gives it.
        images: image ids in the study; empty means every LR image.
        votes_per_participant: regular trials per participant (each voted once per criterion);
            ``None`` means every image (the paper's design: 10 participants x 30 images).
        candidates_per_trial: how many methods one trial shows; ``None`` shows all of them. With
            fewer, each trial shows a random subset and the analysis fits a Luce choice model.
        gold: optional gold trials.
        open_enrolment: whether anyone with the study link may join (otherwise tokens only).
        seed: seed of the assignment RNG (trial order, candidate order and subsets). ``None`` (the
            default) makes the store draw a secret seed when it creates the study: with a known
            seed, anyone who knows a participant's number could recompute which method sits
            behind each screen position. A fixed seed is for reproducible experiments only. The
            permutations drawn are recorded either way.
        title: heading of the voting page.
        instructions: Markdown shown above the first trial.
        crop: side of the zoomed crop in SR pixels.
        files: candidate (``LR``, ``HR`` or a method) -> image id -> absolute file, and
        content_hash: sha256 over the bytes of every one of those files; both filled in by
            :func:`validate_study` (so the config hash stored with each vote also pins the
            pixels voted on), not written in YAML.
    """

    name: str
    methods: dict[str, str]
    criteria: tuple[Criterion, ...]
    lr: Path | None = None
    hr: Path | None = None
    dataset: str | None = None
    scale: int | None = None
    images: tuple[str, ...] = ()
    votes_per_participant: int | None = None
    candidates_per_trial: int | None = None
    gold: GoldConfig | None = None
    open_enrolment: bool = False
    seed: int | None = None
    title: str = "Which result looks best?"
    instructions: str = ""
    crop: int = 128
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    content_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (paths as strings); :func:`config_from_dict` reverses it."""
        out = dataclasses.asdict(self)
        out["lr"] = None if self.lr is None else str(self.lr)
        out["hr"] = None if self.hr is None else str(self.hr)
        out["methods"] = dict(self.methods)
        out["criteria"] = [dataclasses.asdict(c) for c in self.criteria]
        out["images"] = list(self.images)
        if self.gold is not None:
            out["gold"] = {**dataclasses.asdict(self.gold), "images": list(self.gold.images)}
        return out

    def config_hash(self) -> str:
        """sha256 of the canonical JSON form; stored with every vote."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def method_names(self) -> tuple[str, ...]:
        return tuple(self.methods)

    def file(self, candidate: str, image_id: str) -> Path:
        """The file shown for ``candidate`` (``LR``, ``HR`` or a method) on image ``image_id``."""
        try:
            return Path(self.files[candidate][image_id])
        except KeyError:
            raise StudyConfigError(
                f"study {self.name!r} has no {candidate!r} image for {image_id!r}; validate the study first"
            ) from None


_TOP_KEYS = {f.name for f in dataclasses.fields(StudyConfig)}
_IMAGE_KEYS = {"lr", "hr", "ids", "dataset"}
_METHOD_KEYS = {"method", "folder"}
_CRITERION_KEYS = {"key", "question"}
_GOLD_KEYS = {f.name for f in dataclasses.fields(GoldConfig)}

DEFAULT_CRITERIA = (
    Criterion("perceptual", "Which result has the best perceptual quality?"),
    Criterion("consistency", "Which result is most consistent with the LR input (structure and texture)?"),
)


def _reject_unknown(given: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {', '.join(sorted(allowed))}"
            raise StudyConfigError(f"unknown key {key!r} in {where}{hint}")


def _as_path(value: Any, base: Path, what: str) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise StudyConfigError(f"{what} must be a folder path, got {value!r}")
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def config_from_dict(raw: dict[str, Any], base: Path | None = None, where: str = "study") -> StudyConfig:
    """Build a :class:`StudyConfig` from a YAML/JSON mapping; relative paths resolve against ``base``.

    Accepted layout (the ``images`` block may also be written flat as ``lr:``/``hr:``/``images:``)::

        name: vosr-multistep
        images: {lr: data/lr, hr: data/hr, ids: [img_001, img_002]}   # or dataset: FOLDER_OR_NAME
        methods: {VOSR-1.4B-ms: out/vosr, SeeSR: out/seesr, Bicubic: {method: bicubic}}
        criteria: [{key: perceptual, question: ...}, {key: consistency, question: ...}]
        votes_per_participant: 30
        gold: {images: [img_001], distractor: bicubic, per_participant: 1}

    Raises:
        StudyConfigError: unknown keys (with a "did you mean"), wrong types or values.
    """
    if not isinstance(raw, dict):
        raise StudyConfigError(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
    base = Path.cwd() if base is None else base
    raw = dict(raw)
    images_block = raw.get("images")
    if isinstance(images_block, dict):
        _reject_unknown(images_block, _IMAGE_KEYS, f"{where}: images")
        raw.pop("images")
        if "dataset" in images_block:
            raw["dataset"] = images_block["dataset"]
        for key in ("lr", "hr"):
            if key in images_block:
                raw[key] = images_block[key]
        if "ids" in images_block:
            raw["images"] = images_block["ids"]
    _reject_unknown(raw, _TOP_KEYS, where)
    for key in ("name", "methods"):
        if key not in raw:
            raise StudyConfigError(f"{where}: missing required key {key!r}")
    if raw.get("lr") is None and raw.get("dataset") is None:
        raise StudyConfigError(f"{where}: say where the LR images are: 'lr: FOLDER' or 'dataset: FOLDER_OR_NAME'")
    name = raw["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise StudyConfigError(
            f"{where}: name {name!r} must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    methods_raw = raw["methods"]
    if not isinstance(methods_raw, dict) or len(methods_raw) < 2:
        raise StudyConfigError(f"{where}: 'methods' must map at least two method names to output folders")
    methods: dict[str, str] = {}
    for mname, source in methods_raw.items():
        mname = str(mname)
        if mname.startswith("__") or not mname.strip():
            raise StudyConfigError(f"{where}: method name {mname!r} is reserved or empty; rename it")
        methods[mname] = _method_source(source, base, f"{where}: methods.{mname}")
    criteria_raw = raw.get("criteria")
    if criteria_raw is None:
        criteria = DEFAULT_CRITERIA
    else:
        if not isinstance(criteria_raw, list) or not criteria_raw:
            raise StudyConfigError(f"{where}: 'criteria' must be a non-empty list of {{key, question}}")
        crit: list[Criterion] = []
        for i, c in enumerate(criteria_raw):
            if isinstance(c, str):
                c = {"key": c, "question": c}
            if not isinstance(c, dict):
                raise StudyConfigError(f"{where}: criteria[{i}] must be a mapping with 'key' and 'question'")
            _reject_unknown(c, _CRITERION_KEYS, f"{where}: criteria[{i}]")
            if "key" not in c or not _NAME_RE.match(str(c["key"])):
                raise StudyConfigError(f"{where}: criteria[{i}] needs a 'key' of letters/digits/._-")
            crit.append(Criterion(str(c["key"]), str(c.get("question", c["key"]))))
        if len({c.key for c in crit}) != len(crit):
            raise StudyConfigError(f"{where}: criteria keys must be unique, got {[c.key for c in crit]}")
        criteria = tuple(crit)
    gold = None
    if raw.get("gold") is not None:
        g = raw["gold"]
        if not isinstance(g, dict):
            raise StudyConfigError(f"{where}: 'gold' must be a mapping {{images, distractor, per_participant}}")
        _reject_unknown(g, _GOLD_KEYS, f"{where}: gold")
        if not g.get("images"):
            raise StudyConfigError(f"{where}: gold.images must list at least one image id")
        gold = GoldConfig(
            images=tuple(str(i) for i in g["images"]),
            distractor=str(g.get("distractor", "bicubic")),
            per_participant=_positive_int(g.get("per_participant", 1), "gold.per_participant", where),
        )
    images = raw.get("images") or ()
    if isinstance(images, str) or not isinstance(images, (list, tuple)):
        raise StudyConfigError(f"{where}: 'images' (ids) must be a list of image ids, got {images!r}")
    vpp = raw.get("votes_per_participant")
    cpt = raw.get("candidates_per_trial")
    dataset = raw.get("dataset")
    if dataset is not None:
        # a path (relative to the YAML) when it exists, else a dataset name for the loader
        candidate = _as_path(dataset, base, "dataset")
        dataset = str(candidate) if candidate.exists() else str(dataset)
    scale = raw.get("scale")
    files = raw.get("files") or {}
    if not isinstance(files, dict):
        raise StudyConfigError(f"{where}: 'files' is filled in by validation; remove it from the YAML")
    return StudyConfig(
        name=name,
        lr=None if raw.get("lr") is None else _as_path(raw["lr"], base, "lr"),
        hr=None if raw.get("hr") is None else _as_path(raw["hr"], base, "hr"),
        dataset=dataset,
        scale=None if scale is None else _positive_int(scale, "scale", where),
        methods=methods,
        criteria=criteria,
        images=tuple(str(i) for i in images),
        votes_per_participant=None if vpp is None else _positive_int(vpp, "votes_per_participant", where),
        candidates_per_trial=None if cpt is None else _positive_int(cpt, "candidates_per_trial", where),
        gold=gold,
        open_enrolment=_bool(raw.get("open_enrolment", False), "open_enrolment", where),
        seed=None if raw.get("seed") is None else _int(raw["seed"], "seed", where),
        title=str(raw.get("title", StudyConfig.title)),
        instructions=str(raw.get("instructions", "")),
        crop=_positive_int(raw.get("crop", 128), "crop", where),
        files={str(k): {str(i): str(f) for i, f in v.items()} for k, v in files.items()},
        content_hash=str(raw.get("content_hash", "")),
    )


def _method_source(source: Any, base: Path, where: str) -> str:
    """A method's output source: an absolute folder path, or ``method:SPEC`` (generated)."""
    if isinstance(source, dict):
        _reject_unknown(source, _METHOD_KEYS, where)
        if len(source) != 1:
            raise StudyConfigError(f"{where}: give either 'folder: PATH' or 'method: SPEC', got {source!r}")
        if "method" in source:
            return GENERATED + str(source["method"]).strip()
        source = source["folder"]
    if isinstance(source, str) and source.startswith(GENERATED):
        return source
    return str(_as_path(source, base, where))


def _positive_int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StudyConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def _int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StudyConfigError(f"{where}: {key} must be a non-negative integer (or left out), got {value!r}")
    return value


def _bool(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise StudyConfigError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def load_study(path: str | Path) -> StudyConfig:
    """Read a study YAML file, resolve its paths relative to the file and validate every image.

    Raises:
        FileNotFoundError: the YAML file or a folder/image it names is missing.
        StudyConfigError: unknown keys, bad values, missing or inconsistent images.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study definition {path} not found; pass the path of a study YAML file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"{path}: not valid YAML ({exc})") from exc
    config = config_from_dict(raw, base=path.resolve().parent, where=str(path))
    return validate_study(config)


# --------------------------------------------------------------------------- images


def _image_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} not found; fix the path in the study YAML")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def check_image(path: Path) -> tuple[int, int]:
    """Open ``path`` and check it is an 8-bit RGB PNG that decodes; returns ``(width, height)``.

    Raises:
        FileNotFoundError: the file is missing.
        StudyConfigError: corrupt file, or a mode other than 8-bit RGB (grayscale, RGBA, 16-bit,
            palette), which the study would have to convert and therefore not show losslessly.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"image {path} not found")
    try:
        with Image.open(path) as im:
            mode, size = im.mode, im.size
            im.load()  # decodes the whole file, so truncation and bad CRCs show up here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise StudyConfigError(f"image {path} is corrupt or not an image ({exc}); re-export it as PNG") from exc
    if mode != "RGB":
        raise StudyConfigError(
            f"image {path} has mode {mode!r}; studies show 8-bit RGB PNGs only (grayscale, RGBA, 16-bit "
            f"and palette images would be converted before display). Convert it, e.g. "
            f"PIL.Image.open(p).convert('RGB').save(p)"
        )
    return size


def _input_files(config: StudyConfig) -> tuple[dict[str, Path], dict[str, Path], int | None, str]:
    """LR files, HR files (id -> path), the dataset's scale (if known) and a description."""
    if config.dataset is not None:
        from benchmark.datasets import load_dataset

        ds = load_dataset(config.dataset)
        lr = {p.id: Path(p.lr) for p in ds.pairs}
        hr = {p.id: Path(p.hr) for p in ds.pairs if p.hr is not None}
        return lr, hr, ds.scale, f"dataset {config.dataset}"
    assert config.lr is not None  # config_from_dict requires lr or dataset
    lr = _image_files(config.lr, "LR")
    hr = _image_files(config.hr, "HR") if config.hr is not None else {}
    return lr, hr, None, f"LR folder {config.lr}"


def _generate(spec: str, ids: list[str], lr_files: dict[str, Path], scale: int, name: str) -> dict[str, Path]:
    """Outputs of a ``benchmark.methods`` spec for ``ids`` (generated once, cached by the benchmark)."""
    from tqdm import tqdm

    from benchmark.images import read_image
    from benchmark.methods import create_method

    method = create_method(spec)
    try:
        return {
            i: Path(method.output(i, read_image(lr_files[i]), scale).path)
            for i in tqdm(ids, desc=f"outputs of {name}", unit="image", leave=False)
        }
    finally:
        method.close()


def validate_study(config: StudyConfig) -> StudyConfig:
    """Resolve every image the study shows and check it: every method has every image, each file
    decodes as 8-bit RGB, and all candidates of an image have one size.

    Method outputs in a folder match by image id, else by the LR file's stem; ``method:SPEC``
    sources are generated through ``benchmark.methods`` (cached, so a rerun generates nothing).

    Returns:
        The config with ``images`` (every LR image when empty), ``files`` and ``content_hash``
        filled in.

    Raises:
        FileNotFoundError: a folder or dataset is missing.
        StudyConfigError: a method lacks an image, sizes disagree, an image is corrupt or not RGB,
            gold trials lack HR images, or a count exceeds what the study has.
    """
    lr_files, hr_files, scale, where = _input_files(config)
    ids = list(config.images or lr_files)
    if not ids:
        raise StudyConfigError(f"{where} holds no PNG images; put the LR inputs there as <id>.png")
    missing_lr = [i for i in ids if i not in lr_files]
    if missing_lr:
        raise StudyConfigError(f"{where} lacks images {missing_lr[:5]} named in the study")
    gold_ids = list(config.gold.images) if config.gold else []
    if config.gold is not None:
        unknown = [i for i in gold_ids if i not in lr_files]
        if unknown:
            raise StudyConfigError(f"gold.images {unknown} are not in the {where}")
        no_hr = [i for i in gold_ids if i not in hr_files]
        if no_hr:
            raise StudyConfigError(
                f"gold trials show the HR image, but there is none for {no_hr[:5]}: set 'hr' (or images.hr) "
                f"to the HR folder, or use a dataset with HR images"
            )
        if config.gold.distractor != "bicubic" and config.gold.distractor not in config.methods:
            close = difflib.get_close_matches(config.gold.distractor, list(config.methods), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise StudyConfigError(
                f"gold.distractor {config.gold.distractor!r} is neither 'bicubic' nor a method{hint}"
            )
        if config.gold.per_participant > len(gold_ids):
            raise StudyConfigError(
                f"gold.per_participant={config.gold.per_participant} exceeds the {len(gold_ids)} gold images"
            )
    needed = sorted(set(ids) | set(gold_ids))
    files: dict[str, dict[str, Path]] = {LR: {i: lr_files[i] for i in needed}}
    files[HR] = {i: hr_files[i] for i in needed if i in hr_files}
    problems: list[str] = []
    folder_methods = {m: src for m, src in config.methods.items() if not src.startswith(GENERATED)}
    for mname, folder in folder_methods.items():
        found = _image_files(Path(folder), f"method {mname!r} output")
        matched = {i: found.get(i) or found.get(lr_files[i].stem) for i in needed}
        absent = [i for i, f in matched.items() if f is None]
        if absent:
            problems.append(f"method {mname!r} ({folder}) lacks {len(absent)} image(s): {absent[:5]}")
        files[mname] = {i: f for i, f in matched.items() if f is not None}
    if problems:
        raise StudyConfigError("every method must have every image: " + "; ".join(problems))
    generated = {m: src[len(GENERATED) :] for m, src in config.methods.items() if src.startswith(GENERATED)}
    if generated:
        if scale is None and config.scale is None and folder_methods:
            first = next(iter(folder_methods))
            scale = check_image(files[first][ids[0]])[0] // check_image(lr_files[ids[0]])[0]
        scale = config.scale or scale
        if scale is None:
            raise StudyConfigError("generated methods need the SR factor: add 'scale: 4' (or use a dataset)")
        for mname, spec in generated.items():
            files[mname] = _generate(spec, needed, lr_files, scale, mname)
    digest = hashlib.sha256()
    for image_id in needed:
        per_image = {key: f[image_id] for key, f in files.items() if image_id in f}
        checked = {key: check_image(file) for key, file in per_image.items()}
        for key, file in per_image.items():
            digest.update(f"{key}/{image_id}:".encode() + hashlib.sha256(file.read_bytes()).digest())
        lr_size = checked.pop(LR)
        sizes = checked
        if len(set(sizes.values())) != 1:
            detail = ", ".join(f"{'HR' if m == HR else m}: {w}x{h}" for m, (w, h) in sizes.items())
            raise StudyConfigError(
                f"image {image_id!r}: candidates differ in size ({detail}); the synchronised crop needs "
                f"one size per image, so re-run the outputs at one scale"
            )
        w, h = next(iter(sizes.values()))
        if w < lr_size[0] or h < lr_size[1]:
            raise StudyConfigError(
                f"image {image_id!r}: SR size {w}x{h} is smaller than the LR input {lr_size[0]}x{lr_size[1]}"
            )
    n = len(ids)
    if config.votes_per_participant is not None and config.votes_per_participant > n:
        raise StudyConfigError(f"votes_per_participant={config.votes_per_participant} exceeds the {n} images")
    if config.candidates_per_trial is not None and not 2 <= config.candidates_per_trial <= len(config.methods):
        raise StudyConfigError(
            f"candidates_per_trial={config.candidates_per_trial} must be between 2 and {len(config.methods)}"
        )
    return dataclasses.replace(
        config,
        images=tuple(ids),
        files={k: {i: str(f) for i, f in v.items()} for k, v in files.items()},
        content_hash=digest.hexdigest(),
    )


# --------------------------------------------------------------------------- trials


@dataclass(frozen=True)
class TrialSpec:
    """One trial: an image and the candidates that may be shown for it.

    Attributes:
        position: index in the study's trial list (stable across runs).
        image_id: the image.
        candidates: candidate names (method names, or ``HR``/``BICUBIC`` for gold trials).
        gold_answer: the correct candidate of a gold trial, ``None`` for a regular trial.
    """

    position: int
    image_id: str
    candidates: tuple[str, ...]
    gold_answer: str | None = None

    @property
    def is_gold(self) -> bool:
        return self.gold_answer is not None


def build_trials(config: StudyConfig) -> list[TrialSpec]:
    """Regular trials (one per image, every method a candidate) followed by the gold trials."""
    trials = [TrialSpec(i, image_id, config.method_names) for i, image_id in enumerate(config.images)]
    if config.gold is not None:
        distractor = BICUBIC if config.gold.distractor == "bicubic" else config.gold.distractor
        for image_id in config.gold.images:
            trials.append(TrialSpec(len(trials), image_id, (HR, distractor), gold_answer=HR))
    return trials


@dataclass(frozen=True)
class PlannedAssignment:
    """One trial as a participant will see it: its place in their sequence and the candidates' order."""

    order: int
    trial_position: int
    shown: tuple[str, ...]


def assign_trials(
    config: StudyConfig,
    trials: list[TrialSpec],
    participant_index: int,
    trial_load: dict[int, int],
    method_load: dict[str, int] | None = None,
    *,
    seed: int | None = None,
) -> list[PlannedAssignment]:
    """Server-side assignment of trials to one participant.

    Regular trials: the ``votes_per_participant`` least-assigned trials so far (``trial_load`` maps
    trial position -> participants already assigned; ties broken at random), so coverage stays
    balanced as participants join. Gold trials are inserted at random places. The order of the
    candidates on screen is a fresh random permutation per participant and trial; with
    ``candidates_per_trial`` set, the shown subset favours the least-shown methods (``method_load``).

    The RNG is seeded by (study seed, participant index), so the plan is reproducible; the store
    records it, and the analysis uses what was recorded. The study seed is ``config.seed`` when the
    YAML fixes one, else ``seed`` (the secret seed the store drew when it created the study).

    Raises:
        StudyConfigError: neither ``config.seed`` nor ``seed`` is given.
    """
    study_seed = config.seed if config.seed is not None else seed
    if study_seed is None:
        raise StudyConfigError(
            f"study {config.name!r} fixes no seed: pass the secret seed the store drew for it (seed=...)"
        )
    rng = np.random.default_rng([study_seed, participant_index])
    regular = [t for t in trials if not t.is_gold]
    gold = [t for t in trials if t.is_gold]
    k = config.votes_per_participant or len(regular)
    tiebreak = rng.random(len(regular))
    ranked = sorted(range(len(regular)), key=lambda i: (trial_load.get(regular[i].position, 0), tiebreak[i]))
    chosen = [regular[i] for i in ranked[:k]]
    rng.shuffle(chosen)
    if gold and config.gold is not None:
        picks = rng.choice(len(gold), size=config.gold.per_participant, replace=False)
        for g in sorted(int(p) for p in picks):
            chosen.insert(int(rng.integers(0, len(chosen) + 1)), gold[g])
    load = dict(method_load or {})
    plan: list[PlannedAssignment] = []
    for order, trial in enumerate(chosen):
        candidates = list(trial.candidates)
        size = config.candidates_per_trial
        if not trial.is_gold and size is not None and size < len(candidates):
            noise = rng.random(len(candidates))
            candidates = sorted(candidates, key=lambda m, _n=noise: (load.get(m, 0), _n[candidates.index(m)]))
            candidates = candidates[:size]
            for m in candidates:
                load[m] = load.get(m, 0) + 1
        shown = tuple(candidates[i] for i in rng.permutation(len(candidates)))
        plan.append(PlannedAssignment(order, trial.position, shown))
    return plan


def position_label(index: int) -> str:
    """Neutral label of the candidate at screen position ``index``: A, B, ..., Z, AA, ..."""
    label = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        label = chr(65 + rem) + label
    return label


# --------------------------------------------------------------------------- serving images


@dataclass
class ImageCache:
    """Decoded candidate images keyed by file path and modification time (a small LRU)."""

    capacity: int = 64
    _items: dict[tuple[str, int], Any] = field(default_factory=dict)
    # Streamlit serves sessions from threads and shares one cache between them.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, path: Path) -> Any:
        """The decoded RGB image at ``path`` (``PIL.Image``; callers must not modify it)."""
        key = (str(path), path.stat().st_mtime_ns)
        with self._lock:
            image = self._items.pop(key, None)
            if image is not None:
                self._items[key] = image
                return image
        image = _open_rgb(path)
        with self._lock:
            self._items[key] = image
            while len(self._items) > self.capacity:
                self._items.pop(next(iter(self._items)))
        return image


def candidate_image(config: StudyConfig, image_id: str, candidate: str, cache: ImageCache | None = None) -> Any:
    """The decoded RGB image (``PIL.Image``) of one candidate of one trial."""
    from PIL import Image

    load = cache.get if cache is not None else _open_rgb
    if candidate == BICUBIC:
        lr = load(config.file(LR, image_id))
        # the SR size of this image: every method output has it (validated at creation)
        with Image.open(config.file(next(iter(config.methods)), image_id)) as ref:
            size = ref.size
        return lr.resize(size, Image.BICUBIC)
    if candidate != HR and candidate not in config.methods:
        raise StudyConfigError(f"candidate {candidate!r} is not a method of study {config.name!r}")
    return load(config.file(candidate, image_id))


def lr_image(config: StudyConfig, image_id: str, cache: ImageCache | None = None) -> Any:
    """The decoded LR input of a trial."""
    return (cache.get if cache is not None else _open_rgb)(config.file(LR, image_id))


def _open_rgb(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB") if im.mode != "RGB" else im.copy()


def png_bytes(image: Any) -> bytes:
    """Lossless PNG bytes of ``image`` carrying pixels only: no text, ICC, EXIF or file name.

    The pixels are copied into a fresh image first, because Pillow's PNG writer otherwise carries
    ``info`` entries (ICC profile, text chunks) of the source over.
    """
    from PIL import Image

    clean = Image.frombytes(image.mode, image.size, image.tobytes())
    buf = io.BytesIO()
    clean.save(buf, format="PNG", compress_level=1)  # level 1: fast, still lossless
    return buf.getvalue()


def crop_box(size: tuple[int, int], center: tuple[float, float], crop: int) -> tuple[int, int, int, int]:
    """Pixel box ``(left, top, right, bottom)`` of a ``crop`` x ``crop`` window centred at ``center``.

    ``center`` is in fractions of width and height (0..1); the box is clamped inside the image
    and shrinks to the image when the image is smaller than ``crop``.
    """
    w, h = size
    cw, ch = min(crop, w), min(crop, h)
    cx = min(max(center[0], 0.0), 1.0) * w
    cy = min(max(center[1], 0.0), 1.0) * h
    left = int(round(min(max(cx - cw / 2, 0), w - cw)))
    top = int(round(min(max(cy - ch / 2, 0), h - ch)))
    return left, top, left + cw, top + ch


def zoomed_crop(image: Any, center: tuple[float, float], crop: int, zoom: int, reference_size: tuple[int, int] | None = None) -> Any:
    """The same region of any candidate, enlarged ``zoom`` times with nearest-neighbour.

    Args:
        image: ``PIL.Image`` (SR candidate or LR input).
        center: crop centre in fractions (0..1) of the image.
        crop: window side in pixels of ``reference_size`` (the SR size); the LR input gets the
            proportionally smaller window of the same region, enlarged to the same display size.
        zoom: integer enlargement factor (nearest-neighbour keeps pixels honest).
        reference_size: SR size ``(w, h)``; defaults to ``image.size``.

    Returns:
        ``PIL.Image`` of about ``crop * zoom`` pixels per side.
    """
    from PIL import Image

    ref = reference_size or image.size
    box_ref = crop_box(ref, center, crop)
    sx, sy = image.size[0] / ref[0], image.size[1] / ref[1]
    box = (
        int(round(box_ref[0] * sx)),
        int(round(box_ref[1] * sy)),
        max(int(round(box_ref[2] * sx)), int(round(box_ref[0] * sx)) + 1),
        max(int(round(box_ref[3] * sy)), int(round(box_ref[1] * sy)) + 1),
    )
    out_size = ((box_ref[2] - box_ref[0]) * zoom, (box_ref[3] - box_ref[1]) * zoom)
    return image.crop(box).resize(out_size, Image.NEAREST)


def trial_pngs(
    config: StudyConfig,
    image_id: str,
    shown: tuple[str, ...],
    center: tuple[float, float] = (0.5, 0.5),
    zoom: int = 2,
    cache: ImageCache | None = None,
) -> tuple[bytes, list[bytes]]:
    """Everything the voting page shows for one trial, as metadata-free PNG bytes.

    Returns:
        ``(lr_crop_png, [candidate_crop_png, ...])`` in the order ``shown``; every crop covers the
        same region (the LR one at LR resolution), enlarged to the same display size.
    """
    candidates = [candidate_image(config, image_id, c, cache) for c in shown]
    ref = candidates[0].size
    lr = lr_image(config, image_id, cache)
    lr_zoom = zoomed_crop(lr, center, config.crop, zoom, reference_size=ref)
    crops = [zoomed_crop(c, center, config.crop, zoom) for c in candidates]
    return png_bytes(lr_zoom), [png_bytes(c) for c in crops]
