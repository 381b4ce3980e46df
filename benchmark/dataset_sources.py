"""Where the benchmark datasets come from, how their folders look, and which are on this machine.

Two catalogues, both plain data:

- :data:`LAYOUT_GUIDE`: for every layout :func:`benchmark.datasets.load_dataset` reads, the
  folder structure it expects (used in the errors for folders that do not match, and by
  ``screensr bench datasets``).
- :data:`KNOWN_DATASETS`: the public test sets papers report on (ScreenSR, RealSR and DRealSR at
  full size and as the StableSR/OSEDiff 128->512 centre crops), each with its origin and the
  name under ``$SCREENSR_HOME/datasets/`` that ``--dataset NAME`` finds.

Sources: RealSR V3, Cai et al., "Toward Real-World Single Image
Super-Resolution: A New Benchmark and A New Model", ICCV 2019 (github.com/csjcai/RealSR);
DRealSR, Wei et al., "Component Divide-and-Conquer for Real-World Image Super-Resolution",
ECCV 2020 (github.com/xiezw5/Component-Divide-and-Conquer-for-Real-World-Image-Super-Resolution);
the centre crops, Wang et al., "Exploiting Diffusion Prior for Real-World Image
Super-Resolution" (StableSR), distributed as ``StableSR_testsets.zip`` in the Hugging Face dataset
``Iceclear/StableSR-TestSets`` (folders ``RealSRVal_crop128/`` and ``DrealSRVal_crop128/``) and
copied into OSEDiff's repository (github.com/cswry/OSEDiff, ``preset/datasets/benchmark_realsr/``
and ``benchmark_drealsr/``), both with ``test_HR/`` and ``test_LR/``.

Example:
    >>> get_known_dataset("drealsr_crops").name
    'DRealSR_crops'
    >>> LAYOUT_GUIDE["crops"].structure[0]
    'test_HR/NAME.png'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import UnknownNameError
from core.paths import screensr_home


@dataclass(frozen=True)
class LayoutGuide:
    """How a dataset folder of one layout looks.

    Attributes:
        layout: the layout name (``--layout``).
        summary: one line.
        structure: the expected paths, relative to the dataset folder, one per line.
        signature: the few paths that identify the layout, for one-line error messages.
    """

    layout: str
    summary: str
    structure: tuple[str, ...]
    signature: str

    def describe(self, indent: str = "  ") -> str:
        """``summary`` then the structure lines, indented."""
        return "\n".join([self.summary, *(f"{indent}{line}" for line in self.structure)])


LAYOUT_GUIDE: dict[str, LayoutGuide] = {
    g.layout: g
    for g in (
        LayoutGuide("generic", "an HR and an LR folder whose files pair by stem",
                    ("hr/NAME.png (or gt/, test_HR/)", "lr/NAME.png (or lq/, test_LR/), same NAMEs as hr/"),
                    "hr/ + lr/"),
        LayoutGuide("capture", "a dataset built by `screensr capture build`",
                    ("manifest.jsonl (one {\"id\", \"status\": ok|rejected, \"scale\"} per line)",
                     "hr/ID.png", "lr/ID.png", "dataset.json"),
                    "manifest.jsonl + hr/ + lr/"),
        LayoutGuide("crops", "the StableSR/OSEDiff centre crops (LR 128x128, HR 512x512, x4)",
                    ("test_HR/NAME.png", "test_LR/NAME.png (the same file names as test_HR/)"),
                    "test_HR/ + test_LR/"),
        LayoutGuide("realsr", "full-size RealSR V3 (Canon and Nikon, x2/x3/x4)",
                    ("<Camera>/Test/<scale>/<NAME>_HR.png", "<Camera>/Test/<scale>/<NAME>_LR<scale>.png"),
                    "<Camera>/Test/<scale>/*_HR.png"),
        LayoutGuide("drealsr", "full-size DRealSR (x2/x3/x4)",
                    ("Test_x<scale>/test_HR/<NAME>_x1.png", "Test_x<scale>/test_LR/<NAME>_x<scale>.png"),
                    "Test_x<scale>/test_HR/ + test_LR/"),
        LayoutGuide("screensr", "the ScreenSR release: HR/ and LR/ (read as generic) or hf:REPO_OR_DIR",
                    ("HR/NAME.png", "LR/NAME.png"), "HR/ + LR/"),
        LayoutGuide("nr", "LR images only, no ground truth (no-reference metrics only)",
                    ("NAME.png (directly in the folder), or lr/NAME.png",), "LR images only"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class KnownDataset:
    """A public test set: what it is, where it comes from, where this suite looks for it.

    Attributes:
        name: the folder name under ``$SCREENSR_HOME/datasets/`` (what ``--dataset NAME`` finds).
        layout: the layout of that folder (:data:`LAYOUT_GUIDE`).
        title: one line: the data and its citation.
        pairs: the number of test pairs of the published set (None where it varies).
        scale: the SR factor of the published numbers.
        get: how to obtain it, ending with what to put where.
    """

    name: str
    layout: str
    title: str
    pairs: int | None
    scale: int
    get: str

    def folder(self) -> Path:
        """Where ``--dataset NAME`` looks for it: ``$SCREENSR_HOME/datasets/<name>``."""
        return datasets_home() / self.name


_STABLESR = "StableSR_testsets.zip from the Hugging Face dataset Iceclear/StableSR-TestSets"
_OSEDIFF = "OSEDiff's repository (github.com/cswry/OSEDiff)"

KNOWN_DATASETS: dict[str, KnownDataset] = {
    d.name: d
    for d in (
        KnownDataset(
            "ScreenSR", "screensr",
            "ScreenSR: screen re-photographed HR/LR pairs (this project's release, CSWRY/ScreenSR)", None, 4,
            "`--dataset hf:CSWRY/ScreenSR` downloads it once (online) into $SCREENSR_HOME/datasets/ScreenSR/; "
            "offline, run `hf download --repo-type dataset CSWRY/ScreenSR --local-dir DIR` where there is "
            "network, copy DIR here and pass `--dataset hf:DIR`",
        ),
        KnownDataset(
            "RealSR_crops", "crops",
            "RealSR test set centre-cropped by StableSR (Cai et al. ICCV 2019; Wang et al. 2023), 100 pairs",
            100, 4,
            f"{_STABLESR} (folder RealSRVal_crop128/), or {_OSEDIFF}, preset/datasets/benchmark_realsr/; "
            "put its test_HR/ and test_LR/ folders",
        ),
        KnownDataset(
            "DRealSR_crops", "crops",
            "DRealSR test set centre-cropped by StableSR (Wei et al. ECCV 2020; Wang et al. 2023), 93 pairs",
            93, 4,
            f"{_STABLESR} (folder DrealSRVal_crop128/), or {_OSEDIFF}, preset/datasets/benchmark_drealsr/; "
            "put its test_HR/ and test_LR/ folders",
        ),
        KnownDataset(
            "RealSR", "realsr",
            "RealSR V3 at full size, Canon and Nikon (Cai et al. ICCV 2019)", None, 4,
            "the RealSR V3 archive linked from github.com/csjcai/RealSR; put its Canon/ and Nikon/ folders",
        ),
        KnownDataset(
            "DRealSR", "drealsr",
            "DRealSR at full size (Wei et al. ECCV 2020), 93 test pairs at x4", 93, 4,
            "the dataset linked from github.com/xiezw5/Component-Divide-and-Conquer-for-Real-World-Image-"
            "Super-Resolution; put its Test_x4/ folder (and Test_x2/, Test_x3/ if wanted; pick with --scale)",
        ),
    )
}  # fmt: skip


def datasets_home() -> Path:
    """Where named datasets live: ``$SCREENSR_HOME/datasets``."""
    return screensr_home() / "datasets"


def get_known_dataset(name: str) -> KnownDataset:
    """The known public test set called ``name`` (case-insensitive: ``drealsr_crops`` works).

    Raises:
        UnknownNameError: no known set has that name (a ``KeyError``), with the closest one.
    """
    wanted = name.lower()
    found = next((d for d in KNOWN_DATASETS.values() if d.name.lower() == wanted), None)
    if found is None:
        raise UnknownNameError("public dataset", name, KNOWN_DATASETS,
                               hint="`screensr bench datasets` lists them")  # fmt: skip
    return found


def how_to_get(known: KnownDataset) -> str:
    """The sentence that says where ``known`` comes from and where to put it."""
    where = f" in {known.folder()}/" if known.layout != "screensr" else ""
    return f"{known.title}. Get it: {known.get}{where}, or pass any folder with --dataset DIR"


def layouts_text() -> str:
    """All layouts on one line, ``hr/ + lr/ (generic), ...`` (for errors about folders that match none)."""
    # the screensr release reads as generic: its signature would only repeat hr/ + lr/
    return ", ".join(f"{g.signature} ({g.layout})" for g in LAYOUT_GUIDE.values() if g.layout != "screensr")


def local_dataset_dirs() -> list[Path]:
    """The folders under ``$SCREENSR_HOME/datasets`` (named datasets), sorted by name."""
    home = datasets_home()
    if not home.is_dir():
        return []
    return sorted((p for p in home.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def find_local(name: str) -> Path | None:
    """The named dataset folder ``name`` under ``$SCREENSR_HOME/datasets`` (exact name first,
    then case-insensitive), or None."""
    if not name or os.sep in name or "/" in name:
        return None
    exact = datasets_home() / name
    if exact.is_dir():
        return exact
    wanted = name.lower()
    return next((p for p in local_dataset_dirs() if p.name.lower() == wanted), None)
