"""A user study's definition: the YAML layout (typed, loaded through :mod:`core.config`) and the
resolved :class:`StudyConfig` the rest of the study code works with.

A study (VOSR appendix A.5 is the model) shows, for each LR image, the LR input next to the SR
results of every compared method and asks the participant to pick the best one under each
criterion (perceptual quality; consistency with the LR input).

:class:`StudyConfig` is the typed form of the YAML file: :func:`config_from_dict` expands the
YAML shorthands (an ``images:`` block, ``{method: SPEC}`` sources, bare criterion keys), then
:func:`core.config.from_dict` checks every key (unknown ones are rejected with a "did you mean")
and every value, and the paths are resolved against the YAML's folder. After
:func:`leaderboard.study.validation.validate_study` the config also holds every image file it
shows and their content hash. Its :meth:`StudyConfig.to_dict` form is what the store keeps (and
hashes), and reads back through :func:`config_from_dict`.

Example:
    >>> config = config_from_dict({"name": "s", "lr": "/data/lr",
    ...                            "methods": {"A": "/out/a", "B": {"method": "bicubic"}}})
    >>> config.methods["B"], [c.key for c in config.criteria]
    ('method:bicubic', ['perceptual', 'consistency'])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.config import from_dict, to_dict
from core.errors import ConfigError, MissingFileError

# Reserved candidate names: the HR image and a bicubic upscale of the LR input, used by gold
# trials. Method names may not start with "__", so these never collide with a real method.
HR = "__hr__"
BICUBIC = "__bicubic__"
LR = "__lr__"
GENERATED = "method:"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class StudyConfigError(ConfigError):
    """A study definition that cannot be used; the message names the value and the fix."""


# --------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class Criterion:
    """One question asked for every trial.

    Attributes:
        key: short identifier stored with each vote (``perceptual``).
        question: the sentence shown to the participant (the key when left empty).
    """

    key: str
    question: str = ""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.key):
            raise ValueError(f"criterion key {self.key!r} must be letters, digits, '.', '_' or '-'")
        if not self.question:
            object.__setattr__(self, "question", self.key)


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

    def validate(self) -> None:
        if not self.images:
            raise ValueError("gold.images must list at least one image id")
        _positive(self.per_participant, "gold.per_participant")


# The study designs: one vote table layout holds them all (see leaderboard.study.store).
Design = Literal["best_of_n", "pairwise", "acr", "ranking"]
DESIGNS: tuple[str, ...] = ("best_of_n", "pairwise", "acr", "ranking")

# ITU-T P.910 (10/2023), 6.1 "Absolute category rating (ACR)": the five-grade quality scale.
ACR_SCALE: tuple[tuple[int, str], ...] = ((5, "Excellent"), (4, "Good"), (3, "Fair"), (2, "Poor"), (1, "Bad"))

# Gold answers of ACR gold trials (the other designs' gold answer is HR, the candidate to pick):
# the HR image shown as a hidden reference must get "Good" or better, the distractor "Poor" or
# worse, so neither always-high nor always-low answering passes.
GOLD_HIGH = "rating>=4"
GOLD_LOW = "rating<=2"


@dataclass(frozen=True)
class AdaptiveConfig:
    """``assignment: adaptive`` settings (pairwise studies).

    Attributes:
        exploration: share of trials drawn as in uniform assignment (the least-shown pair), so
            every pair keeps being compared; the rest go to the pair whose outcome is expected to
            tell the most about the current Bradley-Terry ranking.
        top_k: the rank positions that matter (3: the order of the top three); pairs between
            two methods both outside the current top ``top_k`` are then left to exploration.
            ``None``: the whole ranking.
    """

    exploration: float = 0.1
    top_k: int | None = None

    def validate(self) -> None:
        if not 0.0 <= self.exploration <= 1.0:
            raise ValueError(f"adaptive.exploration must be between 0 and 1, got {self.exploration!r}")
        if self.top_k is not None:
            _positive(self.top_k, "adaptive.top_k")


Platform = Literal["prolific", "mturk"]


@dataclass(frozen=True)
class RecruitmentConfig:
    """Participants from crowdsourcing platforms (open enrolment through the platform's link).

    Attributes:
        platforms: platforms whose ids enrol a participant from the vote URL: ``prolific``
            (``PROLIFIC_PID``, ``STUDY_ID``, ``SESSION_ID``) and/or ``mturk`` (``workerId``,
            ``assignmentId``, ``hitId``). Ids are stored hashed; one id enrols once.
        completion_code: shown when the participant has finished (Prolific's completion code).
        completion_url: where the finished participant is sent back (an ``http(s)`` URL, e.g.
            ``https://app.prolific.com/submissions/complete?cc=CODE``).
    """

    platforms: tuple[Platform, ...] = ()
    completion_code: str = ""
    completion_url: str = ""

    def validate(self) -> None:
        if len(set(self.platforms)) != len(self.platforms):
            raise ValueError(f"recruitment.platforms lists a platform twice: {list(self.platforms)}")
        if self.completion_url and not self.completion_url.startswith(("https://", "http://")):
            raise ValueError(f"recruitment.completion_url must be an http(s) URL, got {self.completion_url!r}")


@dataclass(frozen=True)
class ScreeningConfig:
    """Per-participant quality checks and their thresholds (the names are the ``--exclude`` rules).

    Attributes:
        min_response_s: ``too-fast``: a median response time (first serve to vote) below this.
        min_gold_accuracy: ``failed-gold``: gold-trial accuracy below this.
        max_same_position: ``straight-lining``: a larger share of choices at one screen position
            (over at least 6 judgements).
        position_bias_p: ``position-bias``: the chi-square test of the chosen screen positions
            against uniform has a p-value below this.
        min_agreement: ``low-agreement`` for the choice designs: agreement with the other
            participants' majority on the same trials below this (``None``: below chance, the
            agreement of random answers).
        min_correlation: ``low-agreement`` for ACR: Pearson correlation of the participant's
            ratings with the other participants' mean below this (ITU-T P.913, 12.4 uses 0.75).
    """

    min_response_s: float = 1.0
    min_gold_accuracy: float = 0.5
    max_same_position: float = 0.9
    position_bias_p: float = 0.01
    min_agreement: float | None = None
    min_correlation: float = 0.75


DEFAULT_TITLE = "Which result looks best?"
DEFAULT_CRITERIA = (
    Criterion("perceptual", "Which result has the best perceptual quality?"),
    Criterion("consistency", "Which result is most consistent with the LR input (structure and texture)?"),
)


@dataclass(frozen=True)
class StudyConfig:
    """A user study: the typed form of its YAML file, with every path absolute once loaded.

    Attributes:
        name: identifier used on the command line (``[A-Za-z0-9._-]``, at most 64 characters).
        methods: method name -> where its SR outputs come from: a folder of PNGs named by image
            id (or by LR file stem), or ``method:SPEC`` for any ``benchmark.methods`` spec
            (``bicubic``, ``cmd:...``, ``vosr-0.5b-os``...), generated once and cached. YAML may
            also write ``{folder: PATH}`` or ``{method: SPEC}``.
        criteria: the questions asked for every trial (one vote per criterion and trial); YAML
            may write a bare key for a criterion that is its own question.
        lr: folder of LR input PNGs named ``<image id>.png`` (or use ``dataset``).
        hr: folder of HR PNGs; needed only for gold trials.
        dataset: a paired dataset (folder or name) opened by ``benchmark.datasets.load_dataset``,
            in any layout it knows; replaces ``lr``/``hr``.
        scale: SR factor for generated methods when neither ``dataset`` nor a folder gives it.
        images: image ids in the study; empty means every LR image. YAML may instead write the
            block ``images: {lr: ..., hr: ..., ids: [...]}`` (or ``{dataset: ...}``).
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
            ``validate_study`` (so the config hash stored with each vote also pins the pixels
            voted on), not written in YAML.
    """

    name: str
    methods: dict[str, str]
    criteria: tuple[Criterion, ...] = DEFAULT_CRITERIA
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
    title: str = DEFAULT_TITLE
    instructions: str = ""
    crop: int = 128
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    content_hash: str = ""
    # Fields added with the study designs; left out of the stored form while at their defaults,
    # so the config hash of every study defined before them is unchanged (_ADDED_FIELDS).
    design: Design = "best_of_n"
    no_preference: bool = False
    reference: bool = False
    assignment: Literal["uniform", "adaptive"] = "uniform"
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    recruitment: RecruitmentConfig = field(default_factory=RecruitmentConfig)
    consent: str = ""
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)
    daily_cap: int | None = None

    def validate(self) -> None:
        """Value checks (called by :func:`core.config.from_dict`); the images are checked by
        ``validate_study``."""
        if not _NAME_RE.match(self.name):
            raise ValueError(f"name {self.name!r} must be 1-64 characters of letters, digits, '.', '_' or '-'")
        if len(self.methods) < 2:
            raise ValueError("'methods' must map at least two method names to output folders")
        for mname in self.methods:
            if mname.startswith("__") or not mname.strip():
                raise ValueError(f"method name {mname!r} is reserved or empty; rename it")
        if not self.criteria:
            raise ValueError("'criteria' must be a non-empty list of {key, question}")
        if len({c.key for c in self.criteria}) != len(self.criteria):
            raise ValueError(f"criteria keys must be unique, got {[c.key for c in self.criteria]}")
        if self.lr is None and self.dataset is None:
            raise ValueError("say where the LR images are: 'lr: FOLDER' or 'dataset: FOLDER_OR_NAME'")
        for key in ("scale", "votes_per_participant", "candidates_per_trial"):
            value = getattr(self, key)
            if value is not None:
                _positive(value, key)
        _positive(self.crop, "crop")
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer (or left out), got {self.seed!r}")
        if self.daily_cap is not None:
            _positive(self.daily_cap, "daily_cap")
        if self.no_preference and self.design != "pairwise":
            raise ValueError(f"no_preference applies to design: pairwise only (this study is {self.design})")
        if self.candidates_per_trial is not None and self.design in ("pairwise", "acr"):
            raise ValueError(
                f"candidates_per_trial applies to best_of_n and ranking; design {self.design} shows "
                f"{2 if self.design == 'pairwise' else 1} candidate(s) per trial"
            )
        if self.assignment == "adaptive":
            if self.design != "pairwise":
                raise ValueError(f"assignment: adaptive needs design: pairwise (this study is {self.design})")
            if self.votes_per_participant is None:
                raise ValueError("assignment: adaptive needs votes_per_participant (trials per participant)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (paths as strings); :func:`config_from_dict` reverses it.

        Fields added after the first studies were stored are left out while they hold their
        default, so an older study's stored form and config hash stay what they were.
        """
        out: dict[str, Any] = to_dict(self)
        defaults = _added_defaults()
        for name in _ADDED_FIELDS:
            if out[name] == defaults[name]:
                del out[name]
        return out

    @property
    def shows_per_trial(self) -> int | None:
        """Candidates per regular trial (``None``: all methods, or ``candidates_per_trial``)."""
        return {"pairwise": 2, "acr": 1}.get(self.design, self.candidates_per_trial)

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


_ADDED_FIELDS = (
    "design", "no_preference", "reference", "assignment", "adaptive", "recruitment", "consent", "screening",
    "daily_cap",
)  # fmt: skip


def _added_defaults() -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(StudyConfig)}
    out = {}
    for name in _ADDED_FIELDS:
        f = fields[name]
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out[name] = to_dict(value)
    return out


def _positive(value: int, key: str) -> None:
    if value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")


# --------------------------------------------------------------------------- YAML shorthands


@dataclass(frozen=True)
class ImagesBlock:
    """``images: {lr: ..., hr: ..., ids: [...]}`` or ``images: {dataset: ...}``."""

    lr: str | None = None
    hr: str | None = None
    ids: tuple[str | int, ...] = ()
    dataset: str | None = None


@dataclass(frozen=True)
class MethodSource:
    """``{folder: PATH}`` or ``{method: SPEC}`` (generated by a ``benchmark.methods`` spec)."""

    folder: str | None = None
    method: str | None = None

    def validate(self) -> None:
        if (self.folder is None) == (self.method is None):
            raise ValueError(f"give either 'folder: PATH' or 'method: SPEC', got {to_dict(self)}")


def _as_path(value: str | Path, base: Path) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _method_source(source: Any, base: Path, where: str) -> str:
    """A method's output source: an absolute folder path, or ``method:SPEC`` (generated)."""
    if isinstance(source, dict):
        spec = from_dict(MethodSource, source, where=where)
        if spec.method is not None:
            return GENERATED + spec.method.strip()
        source = spec.folder
    if not isinstance(source, str) or not source:
        raise StudyConfigError(f"{where}: expected a folder path or {{method: SPEC}}, got {source!r}")
    if source.startswith(GENERATED):
        return source
    return str(_as_path(source, base))


def _ids(value: Any, what: str) -> Any:
    """Image ids as strings (YAML reads ``001`` as the number 1; ids are names)."""
    if isinstance(value, (list, tuple)):
        return [str(i) if isinstance(i, int) and not isinstance(i, bool) else i for i in value]
    if value is None or isinstance(value, (str, dict)):
        raise StudyConfigError(f"{what} must be a list of image ids, got {value!r}")
    return value


def config_from_dict(raw: Any, base: Path | None = None, where: str = "study") -> StudyConfig:
    """Build a :class:`StudyConfig` from a YAML/JSON mapping; relative paths resolve against ``base``.

    Accepted layout (the ``images`` block may also be written flat as ``lr:``/``hr:``/``images:``)::

        name: vosr-multistep
        images: {lr: data/lr, hr: data/hr, ids: [img_001, img_002]}   # or dataset: FOLDER_OR_NAME
        methods: {VOSR-1.4B-ms: out/vosr, SeeSR: out/seesr, Bicubic: {method: bicubic}}
        criteria: [{key: perceptual, question: ...}, {key: consistency, question: ...}]
        votes_per_participant: 30
        gold: {images: [img_001], distractor: bicubic, per_participant: 1}

    The YAML shorthands are expanded first, then :func:`core.config.from_dict` checks every key
    and value against :class:`StudyConfig`.

    Raises:
        StudyConfigError: unknown keys (with a "did you mean"), wrong types or values.
    """
    try:
        return _config_from_dict(raw, Path.cwd() if base is None else base, where)
    except StudyConfigError:
        raise
    except ConfigError as exc:  # core.config's checks: one error class for every study problem
        raise StudyConfigError(str(exc)) from exc


def _config_from_dict(raw: Any, base: Path, where: str) -> StudyConfig:
    if not isinstance(raw, dict):
        raise StudyConfigError(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
    data = dict(raw)
    if isinstance(data.get("images"), dict):
        block = from_dict(ImagesBlock, data.pop("images"), where=f"{where}.images")
        for key in ("lr", "hr", "dataset"):
            if getattr(block, key) is not None:
                data[key] = getattr(block, key)
        if block.ids:
            data["images"] = list(block.ids)
    if data.get("images") is not None:
        data["images"] = _ids(data["images"], f"{where}: 'images' (ids)")
    if isinstance(data.get("methods"), dict):
        data["methods"] = {m: _method_source(s, base, f"{where}.methods.{m}") for m, s in data["methods"].items()}
    if isinstance(data.get("criteria"), list):
        data["criteria"] = [{"key": c} if isinstance(c, str) else c for c in data["criteria"]]
    if isinstance(data.get("gold"), dict) and "images" in data["gold"]:
        data["gold"] = {**data["gold"], "images": _ids(data["gold"]["images"], f"{where}: gold.images")}
    config = from_dict(StudyConfig, data, where=where)
    dataset = config.dataset
    if dataset is not None:
        # a path (relative to the YAML) when it exists, else a dataset name for the loader
        candidate = _as_path(dataset, base)
        dataset = str(candidate) if candidate.exists() else dataset
    return dataclasses.replace(
        config,
        lr=None if config.lr is None else _as_path(config.lr, base),
        hr=None if config.hr is None else _as_path(config.hr, base),
        dataset=dataset,
    )


def read_study(path: str | Path) -> StudyConfig:
    """Read a study YAML file and resolve its paths relative to the file (images not checked yet).

    Raises:
        MissingFileError: the YAML file does not exist.
        StudyConfigError: not YAML, unknown keys, bad values.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"study definition {path} not found; pass the path of a study YAML file")
    try:
        # YAML whatever the suffix (JSON is YAML too), as study files have always been read
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"{path}: not valid YAML ({exc})") from exc
    return config_from_dict(raw, base=path.resolve().parent, where=str(path))
