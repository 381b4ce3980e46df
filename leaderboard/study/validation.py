"""Checking a study against its images: every method has every image, each decodes as 8-bit RGB,
candidates of one image share a size, gold trials have an HR image.

:func:`load_study` is the usual entry: read the YAML (:func:`leaderboard.study.config.read_study`)
and validate it. :func:`validate_study` fills in ``images``, ``files`` (every file shown) and
``content_hash`` (sha256 over those files' bytes), so the config hash stored with every vote also
pins the pixels voted on.

Example:
    >>> config = load_study("study.yaml")            # doctest: +SKIP
    >>> config.file("SeeSR", "img_001")              # doctest: +SKIP
    PosixPath('/srv/outputs/seesr/img_001.png')
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from core.errors import MissingFileError, did_you_mean
from core.imagelimits import check_pixels
from leaderboard.study.config import GENERATED, HR, LR, StudyConfig, StudyConfigError, read_study

IMAGE_SUFFIXES = (".png",)


def load_study(path: str | Path) -> StudyConfig:
    """Read a study YAML file, resolve its paths relative to the file and validate every image.

    Raises:
        FileNotFoundError: the YAML file or a folder/image it names is missing.
        StudyConfigError: unknown keys, bad values, missing or inconsistent images.
    """
    return validate_study(read_study(path))


def _image_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise MissingFileError(f"{what} folder {folder} not found; fix the path in the study YAML")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def check_image(path: Path) -> tuple[int, int]:
    """Open ``path`` and check it is an 8-bit RGB PNG that decodes; returns ``(width, height)``.

    The pixel limit (:func:`core.imagelimits.max_pixels`) is checked on the header, before decoding.

    Raises:
        FileNotFoundError: the file is missing.
        ImageTooLargeError: the header declares more pixels than the limit.
        StudyConfigError: corrupt file, or a mode other than 8-bit RGB (grayscale, RGBA, 16-bit,
            palette), which the study would have to convert and therefore not show losslessly.
    """
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise MissingFileError(f"image {path} not found")
    try:
        with Image.open(path) as im:
            mode, size = im.mode, im.size
            check_pixels(size[0], size[1], path)
            im.load()  # decodes the whole file, so truncation and bad CRCs show up here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if getattr(exc, "is_user_error", False):
            raise  # the pixel limit's own error
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
            hint = did_you_mean(config.gold.distractor, [*config.methods, "bicubic"])
            raise StudyConfigError(
                f"gold.distractor {config.gold.distractor!r} is neither 'bicubic' nor a method{hint}"
            )
        if config.gold.per_participant > len(gold_ids):
            raise StudyConfigError(
                f"gold.per_participant={config.gold.per_participant} exceeds the {len(gold_ids)} gold images"
            )
    if config.reference:
        no_hr = [i for i in ids if i not in hr_files]
        if no_hr:
            raise StudyConfigError(
                f"reference: true shows the HR image with every trial, but there is none for {no_hr[:5]}: set "
                f"'hr' (or images.hr) to the HR folder, use a dataset with HR images, or set reference: false"
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
    n_methods = len(config.methods)
    trials_per_image = {"pairwise": n_methods * (n_methods - 1) // 2, "acr": n_methods}.get(config.design, 1)
    if config.votes_per_participant is not None and config.votes_per_participant > n * trials_per_image:
        what = f"{n} images" if trials_per_image == 1 else (
            f"{n * trials_per_image} trials ({n} images x {trials_per_image} {'pairs' if config.design == 'pairwise' else 'methods'})")
        raise StudyConfigError(f"votes_per_participant={config.votes_per_participant} exceeds the {what}")
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

