"""`capture build` killed with SIGKILL at several moments, then resumed, gives exactly the result of
an uninterrupted build: manifest, records, dataset.json, report text, HR/LR images and exports, with
no temporary file left behind. Only the measured timings of recomputed pairs may differ.

A child process runs the build with one hook that sends itself SIGKILL at a chosen moment: just
before or just after the rename that publishes a given file (``os.replace``, used by every atomic
write), or on the n-th call of a pipeline function. The hook lives in this test only; the code
under test is unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMING_KEYS = ("timings_ms", "register_ms")

CHILD = r"""
import importlib, json, os, signal, sys
from pathlib import Path

spec, args = json.loads(sys.argv[1]), json.loads(sys.argv[2])
count = [0]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if spec["kind"] in ("before_replace", "after_replace"):
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        if str(dst).replace(os.sep, "/").endswith(spec["match"]):
            count[0] += 1
            if count[0] == spec.get("nth", 1):
                if spec["kind"] == "before_replace":
                    die()
                real_replace(src, dst, *a, **k)
                die()
        return real_replace(src, dst, *a, **k)

    os.replace = replace
else:
    mod_name, name = spec["target"].rsplit(".", 1)
    mod = importlib.import_module(mod_name)
    real_fn = getattr(mod, name)

    def hooked(*a, **k):
        count[0] += 1
        if count[0] == spec["nth"]:
            die()
        return real_fn(*a, **k)

    setattr(mod, name, hooked)

from data_capture.build import BuildConfig, build_dataset, export_imagefolder, export_webdataset

out = Path(args["out"])
build_dataset(Path(args["sources"]), Path(args["canvases"]), Path(args["photos"]), out,
              BuildConfig(name="kill-test", report=args["full"]), progress=False)
if args["full"]:
    export_imagefolder(out, Path(args["hf"]))
    export_webdataset(out, Path(args["wds"]))
sys.exit(3)  # the hook never fired: the moment was not reached
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, simulated_capture) -> dict[str, Path]:
    """Three small sources, their canvases and simulated photos (one pair per source)."""
    return simulated_capture(tmp_path_factory.mktemp("kill-inputs"), ["astronaut", "chelsea", "coffee"])


def _run_all(inputs: dict[str, Path], work: Path, full: bool) -> Path:
    """The build (with its report and both exports when ``full``)."""
    from data_capture.build import BuildConfig, build_dataset, export_imagefolder, export_webdataset

    out = work / "ds"
    build_dataset(inputs["sources"], inputs["canvases"], inputs["photos"], out,
                  BuildConfig(name="kill-test", report=full), progress=False)
    if full:
        export_imagefolder(out, work / "hf")
        export_webdataset(out, work / "wds")
    return out


def _reference(inputs, tmp_path_factory, full: bool) -> Path:
    from data_capture.build import read_manifest

    work = tmp_path_factory.mktemp("kill-reference")
    out = _run_all(inputs, work, full)
    assert [r["status"] for r in read_manifest(out)] == ["ok"] * 3, [r["reason"] for r in read_manifest(out)]
    return work


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    """The uninterrupted build (no report, no exports: the default-run moments)."""
    return _reference(inputs, tmp_path_factory, False)


@pytest.fixture(scope="module")
def reference_full(inputs, tmp_path_factory) -> Path:
    """The uninterrupted build with its report and both exports."""
    return _reference(inputs, tmp_path_factory, True)


def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in TIMING_KEYS}


def _state(work: Path) -> dict[str, object]:
    """Everything a build and its exports produced, timings removed, bytes for images."""
    out = work / "ds"
    state: dict[str, object] = {
        "manifest": [_strip(json.loads(line)) for line in (out / "manifest.jsonl").read_text().splitlines()],
        "dataset.json": json.loads((out / "dataset.json").read_text()),
        "files": sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file() and p.name != ".build.lock"),
    }
    if (out / "report.md").is_file():
        state["report.md"] = (out / "report.md").read_text()
    if (work / "hf").is_dir():
        state["hf/metadata"] = (work / "hf" / "test" / "metadata.jsonl").read_text()
    for p in sorted((out / "records").iterdir()):
        state[f"records/{p.name}"] = _strip(json.loads(p.read_text()))
    for sub in ("hr", "lr"):
        for p in sorted((out / sub).iterdir()):
            state[f"{sub}/{p.name}"] = p.read_bytes()
        for p in sorted((work / "hf" / "test" / sub).iterdir()) if (work / "hf").is_dir() else []:
            state[f"hf/{sub}/{p.name}"] = p.read_bytes()
    for shard in sorted((work / "wds").iterdir()) if (work / "wds").is_dir() else []:
        with tarfile.open(shard) as tf:
            for m in sorted(tf.getmembers(), key=lambda m: m.name):
                data = tf.extractfile(m).read()  # type: ignore[union-attr]
                state[f"wds/{shard.name}/{m.name}"] = _strip(json.loads(data)) if m.name.endswith(".json") else data
    return state


def _temporaries(work: Path) -> list[Path]:
    return [p for p in work.rglob(".*") if p.is_file() and ".tmp" in p.name]


MOMENTS = {
    # during a pair: computing it (nothing of it written yet)
    "while registering pair 2": {"kind": "call", "target": "data_capture.pair.register", "nth": 2},
    # during a pair: its HR published, its LR still a temporary file, no record
    "while writing pair 2's LR": {"kind": "before_replace", "match": "/lr/chelsea.png"},
    # between pairs: pair 1's record published, pair 2 not started
    "between pairs 1 and 2": {"kind": "after_replace", "match": "/records/astronaut.json"},
    # while writing the manifest (all pairs done)
    "while writing the manifest": {"kind": "before_replace", "match": "/manifest.jsonl"},
}
SLOW_MOMENTS = {
    "while writing pair 3's record": {"kind": "before_replace", "match": "/records/coffee.json"},
    "while writing dataset.json": {"kind": "before_replace", "match": "/dataset.json"},
    "while writing the report": {"kind": "before_replace", "match": "/report.md"},
    "while writing the ImageFolder export": {"kind": "before_replace", "match": "/test/metadata.jsonl"},
    "while writing the WebDataset shard": {"kind": "before_replace", "match": "/screensr-000000.tar"},
}


def _kill_and_resume(inputs: dict[str, Path], reference: Path, work: Path, spec: dict, full: bool) -> None:
    args = {**{k: str(v) for k, v in inputs.items()}, "out": str(work / "ds"), "hf": str(work / "hf"),
            "wds": str(work / "wds"), "full": full}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec), json.dumps(args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])
    from data_capture.build import read_manifest

    # what a reader sees right after the kill: never a record without its images
    recs = work / "ds" / "records"
    published = [p for p in recs.glob("*.json") if not p.name.startswith(".")] if recs.is_dir() else []
    for p in published:
        rec = json.loads(p.read_text())
        if rec["status"] == "ok":
            assert (work / "ds" / rec["hr"]).is_file() and (work / "ds" / rec["lr"]).is_file(), p.name
    done = {p.name: p.stat().st_mtime_ns for p in published}
    _run_all(inputs, work, full)  # resume
    assert _temporaries(work) == []
    assert _state(work) == _state(reference)
    # the pairs finished before the kill were not recomputed
    assert {n: (recs / n).stat().st_mtime_ns for n in done} == done
    assert len(read_manifest(work / "ds")) == 3


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_then_resume_gives_the_uninterrupted_result(inputs, reference, tmp_path, moment):
    _kill_and_resume(inputs, reference, tmp_path, MOMENTS[moment], full=False)


@pytest.mark.slow
@pytest.mark.parametrize("moment", list(MOMENTS) + list(SLOW_MOMENTS))
def test_sigkill_with_report_and_exports_then_resume_gives_the_uninterrupted_result(inputs, reference_full, tmp_path,
                                                                                     moment):
    _kill_and_resume(inputs, reference_full, tmp_path, {**MOMENTS, **SLOW_MOMENTS}[moment], full=True)


def test_a_killed_build_leaves_temporaries_that_the_next_run_removes(inputs, tmp_path):
    """The kill really interrupts a write (a temporary file is left), and the resume cleans it."""
    args = {**{k: str(v) for k, v in inputs.items()}, "out": str(tmp_path / "ds"), "hf": str(tmp_path / "hf"),
            "wds": str(tmp_path / "wds"), "full": False}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    spec = {"kind": "before_replace", "match": "/lr/chelsea.png"}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec), json.dumps(args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    left = _temporaries(tmp_path)
    assert [p.parent.name for p in left] == ["lr"] and left[0].name.startswith(".chelsea.png.")
    assert (tmp_path / "ds" / "hr" / "chelsea.png").is_file() and not (tmp_path / "ds" / "records" / "chelsea.json").exists()
    from data_capture.build import BuildConfig, build_dataset

    build_dataset(inputs["sources"], inputs["canvases"], inputs["photos"], tmp_path / "ds",
                  BuildConfig(name="kill-test", report=False), progress=False)
    assert _temporaries(tmp_path) == []
    shutil.rmtree(tmp_path / "ds")


def test_two_builds_of_one_folder_cannot_run_at_once(inputs, tmp_path):
    """A second concurrent build of the same folder stops with a clear error (and the lock of a
    killed build does not block the next one: the kernel releases it)."""
    import fcntl

    from core.errors import UserError
    from data_capture.build import BuildConfig, build_dataset

    out = tmp_path / "ds"
    out.mkdir()
    with open(out / ".build.lock", "a+b") as fh:  # another process holding the lock
        holder = subprocess.Popen([sys.executable, "-c",
                                   "import fcntl, sys, time; f = open(sys.argv[1], 'a+b'); "
                                   "fcntl.flock(f.fileno(), fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
                                   str(out / ".build.lock")], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"  # type: ignore[union-attr]
            with pytest.raises(UserError, match=r"another `screensr capture build` is writing .*ds"):
                build_dataset(inputs["sources"], inputs["canvases"], inputs["photos"], out, BuildConfig(), progress=False)
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kill
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    build_dataset(inputs["sources"], inputs["canvases"], inputs["photos"], out, BuildConfig(report=False), progress=False)
    assert np.all([p.is_file() for p in (out / "records").iterdir()])
