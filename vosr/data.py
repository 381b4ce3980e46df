"""Training images: folders, "path, weight" lists and WebDataset shards, with random crops.

A data specification (``--data``) is one of

* a folder of HQ images (searched recursively; .png .jpg .jpeg .webp .bmp .tif .tiff);
* a WebDataset shard ``.tar`` (each sample's first image member is used), or a brace pattern
  such as ``shards/train-{000000..000099}.tar``;
* a list file (any other file): one source per line, ``path, weight`` or ``path`` (weight 1),
  ``#`` comments; relative paths are relative to the list file. A line may be a folder, a shard
  or a shard pattern; all shards of one line form one source.

Sampling is map-style and stateless: the global sample index ``i`` alone decides which source
(by weight), which image (uniform within the source) and which crop, through generators keyed
by ``(seed, i)``. Ranks and DataLoader workers therefore split the work without coordination,
and resuming only needs the number of samples already consumed. Shards are indexed once
(member offsets, with the standard library's ``tarfile``) and read by random access, which is
what makes exact resume and weighted sampling possible without streaming state.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.errors import MissingFileError, UserError
from vosr.degradations import generator

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class DataError(UserError, ValueError):
    """A training-data problem the user can fix (bad path, list line, or image)."""


@dataclass(frozen=True)
class ImageRef:
    """Where one training image lives: a file, or a member of a tar shard (offset, size in bytes)."""

    path: str
    offset: int = -1  # -1: a plain file
    size: int = -1

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as f:
            if self.offset < 0:
                return f.read()
            f.seek(self.offset)
            return f.read(self.size)

    def __str__(self) -> str:
        return self.path if self.offset < 0 else f"{self.path}@{self.offset}"


@dataclass(frozen=True)
class Source:
    """A group of images with one sampling weight (a folder, or the shards of one list line)."""

    name: str
    images: tuple[ImageRef, ...]
    weight: float


def _expand(pattern: str) -> list[str]:
    if "{" not in pattern:
        return [pattern]
    try:
        from braceexpand import braceexpand
    except ImportError as exc:  # shipped with webdataset
        raise ImportError(
            f"shard pattern {pattern!r} needs braceexpand: pip install 'screensr[vosr]'"
        ) from exc
    return list(braceexpand(pattern))


def list_folder(folder: Path) -> tuple[ImageRef, ...]:
    """All images under ``folder`` (recursive, sorted by relative path for reproducibility)."""
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    return tuple(ImageRef(str(p)) for p in files)


def index_shard(path: Path) -> tuple[ImageRef, ...]:
    """The image members of a WebDataset shard: the first image file of each sample key."""
    refs: list[ImageRef] = []
    seen: set[str] = set()
    try:
        with tarfile.open(path, "r:") as tf:  # uncompressed tar only: random access needs offsets
            for m in tf:
                if not m.isfile():
                    continue
                name = os.path.basename(m.name)
                key = os.path.join(os.path.dirname(m.name), name.split(".", 1)[0])
                if Path(name).suffix.lower() in IMAGE_EXTENSIONS and key not in seen:
                    seen.add(key)
                    refs.append(ImageRef(str(path), m.offset_data, m.size))
    except tarfile.TarError as exc:
        raise DataError(
            f"{path} is not a readable uncompressed tar shard ({exc}); WebDataset shards must be plain "
            ".tar files (re-create compressed ones with `tar cf`)"
        ) from exc
    return tuple(refs)


def _source_from_path(path: Path, weight: float, origin: str) -> Source:
    if path.is_dir():
        images = list_folder(path)
    else:
        shards = [Path(p) for p in _expand(str(path))]
        missing = [str(p) for p in shards if not p.is_file()]
        if missing:
            raise MissingFileError(
                f"{origin}: data path {missing[0]} does not exist (expected a folder of images, a .tar "
                "shard or a shard pattern)"
            )
        images = tuple(ref for p in shards for ref in index_shard(p))
    if not images:
        raise DataError(
            f"{origin}: no training images in {path} (looked for {', '.join(IMAGE_EXTENSIONS)} files)"
        )
    if not (weight > 0):
        raise DataError(f"{origin}: sampling weight must be > 0, got {weight}")
    return Source(str(path), images, float(weight))


def parse_list(list_file: Path) -> list[Source]:
    """Read a "path, weight" list file (see the module docstring)."""
    sources = []
    for lineno, raw in enumerate(list_file.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.rsplit(",", 1)]
        weight = 1.0
        if len(parts) == 2:
            try:
                weight = float(parts[1])
            except ValueError:
                raise DataError(
                    f"{list_file}:{lineno}: expected 'path, weight' with a number weight, got {raw!r}"
                ) from None
        p = Path(parts[0]).expanduser()
        if not p.is_absolute():
            p = list_file.parent / p
        sources.append(_source_from_path(p, weight, f"{list_file}:{lineno}"))
    if not sources:
        raise DataError(f"{list_file}: the data list has no entries ('path, weight' per line)")
    return sources


def resolve_sources(specs: Sequence[str | os.PathLike]) -> list[Source]:
    """Turn ``--data`` values (folders, shards, patterns, list files) into weighted sources."""
    if not specs:
        raise DataError("no training data given: pass --data DIR_OR_LIST")
    out: list[Source] = []
    for spec in specs:
        p = Path(spec).expanduser()
        if p.is_dir() or str(p).endswith(".tar") or "{" in str(p):
            out.append(_source_from_path(p, 1.0, "--data"))
        elif p.is_file():
            out.extend(parse_list(p))
        else:
            raise MissingFileError(
                f"--data {spec}: no such folder or list file (give a folder of HQ images, a .tar shard, "
                "or a text file of 'path, weight' lines)"
            )
    return out


def decode_raw(data: bytes, origin: str) -> tuple[np.ndarray, float]:
    """Decode 8- or 16-bit RGB image bytes: (H, W, 3) BGR array as stored, and its full-scale value."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DataError(f"{origin}: cannot decode the image (corrupt or unsupported file); remove or replace it")
    if arr.ndim != 3 or arr.shape[2] != 3:
        got = "grayscale" if arr.ndim == 2 or arr.shape[2] == 1 else f"{arr.shape[2]}-channel (RGBA?)"
        raise DataError(
            f"{origin}: training images must be RGB, got a {got} image; convert it to RGB "
            "(e.g. PIL Image.convert('RGB')) or remove it from the data"
        )
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    else:
        raise DataError(f"{origin}: unsupported sample type {arr.dtype}; use 8- or 16-bit RGB images")
    return arr, scale


def _to_float_rgb(arr: np.ndarray, scale: float) -> np.ndarray:
    return np.ascontiguousarray(arr[:, :, ::-1], dtype=np.float32) / scale


def decode_image(data: bytes, origin: str) -> np.ndarray:
    """Decode 8- or 16-bit RGB image bytes to float32 (H, W, 3) in [0, 1]."""
    return _to_float_rgb(*decode_raw(data, origin))


def random_crop(img: np.ndarray, size: int, g: torch.Generator) -> np.ndarray:
    """A ``size`` x ``size`` crop; the short side is first upscaled (bicubic) to ``size`` if smaller."""
    import cv2

    h, w = img.shape[:2]
    if min(h, w) < size:
        s = size / min(h, w)
        nh, nw = max(size, round(h * s)), max(size, round(w * s))
        img = np.clip(cv2.resize(img, (nw, nh), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
        h, w = nh, nw
    top = int(torch.randint(h - size + 1, (), generator=g))
    left = int(torch.randint(w - size + 1, (), generator=g))
    return img[top : top + size, left : left + size]


class TrainImages(torch.utils.data.Dataset):
    """Map-style view of weighted sources; item ``i`` is global sample ``i`` (any int >= 0).

    ``dataset[i]`` returns ``{"hq": (3, crop, crop) float32 in [0, 1], "id": i}``. The set of
    indices is unbounded; ``len()`` is the number of distinct images.
    """

    def __init__(self, sources: Sequence[Source], crop: int, seed: int = 0) -> None:
        if not sources:
            raise DataError("no training sources")
        self.sources = list(sources)
        self.crop = int(crop)
        self.seed = int(seed)
        self._weights = torch.tensor([s.weight for s in self.sources], dtype=torch.float64)

    def __len__(self) -> int:
        return sum(len(s.images) for s in self.sources)

    def pick(self, index: int) -> ImageRef:
        """The image that global sample ``index`` uses (source by weight, image uniformly)."""
        g = generator(self.seed, "data-pick", int(index))
        src = self.sources[int(torch.multinomial(self._weights, 1, generator=g))]
        return src.images[int(torch.randint(len(src.images), (), generator=g))]

    def __getitem__(self, index: int) -> dict[str, object]:
        ref = self.pick(index)
        raw, scale = decode_raw(ref.read_bytes(), str(ref))
        g = generator(self.seed, "data-crop", int(index))
        if min(raw.shape[:2]) < self.crop:  # the upscale works in float
            crop = random_crop(_to_float_rgb(raw, scale), self.crop, g)
        else:
            # crop the stored integers, then convert: the same values as converting the whole
            # photo first, without a float copy of it (the dominant cost for camera-sized images)
            crop = _to_float_rgb(random_crop(raw, self.crop, g), scale)
        return {"hq": torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1), "id": int(index)}


def rank_ids(offset: int, micro_batch: int, world: int, rank: int, micro_step: int) -> list[int]:
    """Global sample ids of one rank's micro-batch.

    Within a step starting at global sample ``offset``, micro-step ``m`` of rank ``r`` takes
    ``offset + (m * world + r) * micro_batch + j``: the union over ranks and micro-steps is the
    same contiguous range whatever the split, so N processes see exactly the samples one process
    with the combined batch would.
    """
    start = offset + (micro_step * world + rank) * micro_batch
    return list(range(start, start + micro_batch))


class StepBatches(torch.utils.data.Sampler[list[int]]):
    """Batch sampler over a fixed schedule: ``accum`` micro-batches per step, ``steps`` steps."""

    def __init__(self, start_offset: int, steps: int, accum: int, micro_batch: int, world: int, rank: int) -> None:
        self.start_offset, self.steps, self.accum = start_offset, steps, accum
        self.micro_batch, self.world, self.rank = micro_batch, world, rank

    def __len__(self) -> int:
        return self.steps * self.accum

    def __iter__(self) -> Iterator[list[int]]:
        per_step = self.accum * self.world * self.micro_batch
        for s in range(self.steps):
            for m in range(self.accum):
                yield rank_ids(self.start_offset + s * per_step, self.micro_batch, self.world, self.rank, m)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack ``hq`` crops to (B, 3, S, S) and keep the ids as a list."""
    return {"hq": torch.stack([it["hq"] for it in items]), "ids": [int(it["id"]) for it in items]}
