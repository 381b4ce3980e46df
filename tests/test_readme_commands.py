"""Every command in the README's ```bash blocks runs, or the README says why it cannot run here.

The README's convention (stated in its "Two commands" section): a command that cannot run offline
on a CPU ends with a comment holding ``needs: <what>`` (``# needs: released weights``,
``# needs: a GPU``, ``# needs: online``, ``# needs: several GPUs``, ...), visible to readers. Every
other command runs here, in README order, in one prepared workspace (its current folder) with
cold caches (``SCREENSR_HOME``, ``TORCH_HOME``, ``HF_HOME`` inside it) and small inputs, through
``bash -c`` and the real console script, and must exit 0 (and leave the output it promises, where
that is cheap to check).

What the test changes in a command is listed here, nothing else:

- ``REWRITES``: size substitutions (smaller images, fewer pairs) and README shorthand (``...``,
  ``a|b``, ``[--option VALUE]``) replaced by one concrete spelling;
- ``PLACEHOLDERS``: words that stand for a user's value (``NAME``);
- ``SERVERS``: commands that serve until stopped run with ``--dry-run`` (they print the
  ``streamlit run`` command they would start, after checking their options);
- ``INPUTS``: the input paths the commands read and how the workspace gets them (small files made
  here, a tiny dataset cut from ``tests/data/``, random LPIPS weights in the workspace cache so the
  perception-distortion plot has an LPIPS axis); an input is made only when no earlier command
  made it.

A command whose leading words are not in ``RECIPES`` (the command families this test knows how
to run) and that carries no ``needs:`` mark fails with "mark it or give it a recipe", naming its
README line: a README edit cannot add an untested command silently.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DREALSR = ROOT / "tests" / "data" / "drealsr_osediff"
PAIRS = ("Canon_10_x1.png", "DSC_0988_x1.png")  # two of the 19 DRealSR crops (LR 128, HR 512)

NEEDS = re.compile(r"#.*\bneeds:\s*(?P<what>\S.*)$")

# (README text, what this test runs instead): sizes made small and README shorthand made concrete
REWRITES: tuple[tuple[str, str], ...] = (
    # "..." stands for a run's arguments: a small run on the crops the first `bench run` scored
    ("screensr bench run ...",
     "screensr bench run --dataset data/DRealSR_crops --methods bicubic --metrics psnr,ssim,niqe "
     "--store sqlite:///results.db"),
    ("--screen 4k", "--size 960x540"),  # 3840x2160 canvases -> 960x540
    ("capture simulate canvases/ --out photos/",
     "capture simulate canvases/ --out photos/ --photo-size 1200x900"),  # 4032x3024 photos -> 1200x900
    ("screensr demo", "screensr demo --images 2 --size 128"),  # 6 images at 512 px -> 2 at 128
    ("--format markdown|csv|json [--plot figure2.png]", "--format markdown --plot figure2.png"),
    (" [--exclude failed-gold,too-fast]", " --exclude failed-gold,too-fast"),
    (" [--expect-head HASH]", ""),
)
PLACEHOLDERS = {"NAME": "readme-study"}  # the study name in INPUTS' study.yaml
SERVERS = ("screensr board", "screensr board study serve")  # exact RECIPES keys that serve until stopped


def command_key(argv: list[str]) -> str:
    """The leading words that name a command (``screensr bench run``), through ``torchrun``."""
    words: list[str] = []
    i = 0
    if argv and argv[0] == "torchrun":
        words.append("torchrun")
        i = 1
        while i < len(argv) and argv[i].startswith("-"):
            i += 1 if argv[i] == "--no-python" or "=" in argv[i] else 2
    while i < len(argv) and re.fullmatch(r"[a-z][a-z0-9-]*", argv[i]):
        words.append(argv[i])
        i += 1
    return " ".join(words)


@dataclass(frozen=True)
class Command:
    line: int  # README line number where the command starts
    text: str  # as written (continuations joined)
    needs: str | None  # the `needs:` reason, when marked

    def __str__(self) -> str:
        return f"README.md line {self.line}: {self.text}"


def readme_commands(text: str) -> list[Command]:
    """Every command of every ```bash block: continuations joined, comment-only lines skipped."""
    commands: list[Command] = []
    in_block = False
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):  # fences may be indented (inside a list item)
            in_block = line.strip() == "```bash" and not in_block
            continue
        if not in_block:
            continue
        line = line.strip()
        if not pending:
            if not line or line.lstrip().startswith("#"):
                continue
            start = number
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1].strip())
            continue
        pending.append(line.strip())
        joined = " ".join(pending)
        pending = []
        mark = NEEDS.search(joined)
        commands.append(Command(start, joined, mark.group("what").strip() if mark else None))
    return commands


def strip_comment(text: str) -> str:
    """The command without its trailing ``# ...`` comment (a ``#`` inside quotes is kept)."""
    # the comment starts at the first '#' that begins a word outside quotes
    quote = None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip()
    return text.rstrip()


# ---------------------------------------------------------------------------------------------
# the workspace: inputs made on demand


def _images(folder: Path, names: tuple[str, ...], size: int) -> None:
    import cv2
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        img = getattr(skimage.data, name)()
        side = min(img.shape[:2])
        img = cv2.resize(img[:side, :side], (size, size), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{name}.png"), img[:, :, ::-1])


def _crops(ws: Path, name: str) -> None:
    for side in ("test_HR", "test_LR"):
        (ws / "data" / name / side).mkdir(parents=True, exist_ok=True)
        for pair in PAIRS:
            shutil.copy(DREALSR / side / pair, ws / "data" / name / side / pair)


def _osediff(ws: Path) -> None:
    (ws / "out" / "osediff").mkdir(parents=True, exist_ok=True)
    for pair in PAIRS:
        shutil.copy(DREALSR / "osediff" / pair, ws / "out" / "osediff" / pair)


def _lr(ws: Path) -> None:
    (ws / "lr").mkdir(parents=True, exist_ok=True)
    for pair in PAIRS:
        shutil.copy(DREALSR / "test_LR" / pair, ws / "lr" / pair)


def _study_yaml(ws: Path) -> None:
    _crops(ws, "DRealSR_crops")
    _osediff(ws)
    (ws / "study.yaml").write_text(
        f"name: {PLACEHOLDERS['NAME']}\n"
        "images: {dataset: data/DRealSR_crops}\n"
        "methods:\n  OSEDiff: out/osediff\n  Bicubic: {method: bicubic}\n"
        "criteria:\n  - key: perceptual\n    question: Which result has the best perceptual quality?\n"
    )


def _drealsr_subset(ws: Path) -> None:
    """``tests/data/drealsr_osediff`` as the worked example reads it, cut to the two PAIRS."""
    dest = ws / "tests" / "data" / "drealsr_osediff"
    for side in ("test_HR", "test_LR", "osediff"):
        (dest / side).mkdir(parents=True, exist_ok=True)
        for pair in PAIRS:
            shutil.copy(DREALSR / side / pair, dest / side / pair)


def _reported_table(ws: Path) -> None:
    """A user's table of published numbers (the README's ``my_table.csv``), on the crops' names."""
    (ws / "my_table.csv").write_text(
        "dataset,method,metric,value,source,n\n"
        "DRealSR_crops,bicubic,psnr,26.5,a paper (Table 3),2\n"
        "DRealSR_crops,bicubic,ssim,0.71,a paper (Table 3),2\n"
    )


def _cli(ws: Path, args: str) -> None:
    """Run a preparation command in the workspace (the same environment as the README commands)."""
    proc = subprocess.run(["bash", "-c", args], cwd=ws, env=workspace_env(ws), capture_output=True, text=True)
    assert proc.returncode == 0, f"preparing the workspace: {args}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


def _tiny_run(ws: Path, out: str) -> None:
    """A tiny-recipe run folder (2 steps, random-init components created by the command)."""
    if not (ws / "photos").exists():
        INPUTS["photos/"](ws)
    _cli(ws, f"screensr vosr train --recipe tiny --data photos/ --out {out} --max-steps 2 --no-progress")


INPUTS: dict[str, Callable[[Path], None]] = {
    # README path -> how the workspace gets it when no earlier command made it
    "sources/": lambda ws: _images(ws / "sources", ("astronaut", "coffee"), 256),
    "photos/": lambda ws: _images(ws / "photos", ("astronaut", "coffee", "chelsea", "rocket"), 320),
    "lr/": _lr,
    "data/DRealSR_crops": lambda ws: _crops(ws, "DRealSR_crops"),
    "data/RealSR_crops": lambda ws: _crops(ws, "RealSR_crops"),
    "out/osediff": _osediff,
    "runs/mine": lambda ws: _tiny_run(ws, "runs/mine"),
    "study.yaml": _study_yaml,
    "admin-secret.txt": lambda ws: (ws / "admin-secret.txt").write_text("readme-test-secret\n"),
    "demo/results.db": lambda ws: _cli(ws, "screensr demo --images 2 --size 128 --out demo --no-progress"),
    "tests/data/drealsr_osediff": _drealsr_subset,
    "my_table.csv": _reported_table,
    "export.yaml": lambda ws: (ws / "export.yaml").write_text("crops: 1\ncrop_size: 64\nzoom: 2\n"),
}


def _has_files(*patterns: str) -> Callable[[Path], list[str]]:
    def check(ws: Path) -> list[str]:
        return [p for p in patterns if not any(ws.glob(p))]

    return check


def _nothing(ws: Path) -> list[str]:
    return []


# command family -> the outputs that must exist afterwards (glob patterns; nothing = exit status only)
RECIPES: dict[str, Callable[[Path], list[str]]] = {
    "screensr demo": _has_files("demo/results.db", "demo/results.csv"),
    "screensr bench run": _has_files("results.db"),
    "torchrun screensr bench run": _has_files("results.db"),
    "screensr bench gt-quality": _nothing,
    "screensr bench report": _nothing,
    "screensr bench metrics": _nothing,
    "screensr bench reconcile": _nothing,
    "screensr bench import-reported": _nothing,
    "screensr capture canvas": _has_files("canvases/*.png", "canvases/*.layout.json"),
    "screensr capture simulate": _has_files("photos/*.jpg", "photos/*.truth.json"),
    "screensr capture build": _has_files("dataset/manifest.jsonl", "dataset/report.md", "hf/*", "shards/*.tar"),
    "python": _nothing,
    "screensr vosr train": _has_files("runs/tiny/checkpoints/ema_model.safetensors"),
    "screensr vosr distill": _has_files("runs/tiny-os/checkpoints/ema_model.safetensors"),
    "screensr vosr infer": _has_files("sr/*.png"),
    "screensr board": _nothing,
    "screensr board hash-secret": _nothing,
    "screensr board export": _has_files("site/index.html"),
    "screensr board study create": _nothing,
    "screensr board study serve": _nothing,
    "screensr board study status": _nothing,
    "screensr board study report": _has_files("figure2.png"),
    "screensr board study verify": _nothing,
    "screensr board study export": _has_files("votes.parquet"),
}


# `slow` (about 4 of the file's 8 minutes on 2 busy cores): the tiny VOSR commands. The default run
# still runs the README's train -> distill -> infer lines verbatim, in-process, in
# tests/vosr/test_tiny_newcomer.py.
SLOW = {"screensr vosr train", "screensr vosr distill", "screensr vosr infer"}


def workspace_env(ws: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "SCREENSR_HOME": str(ws / ".cache" / "screensr"),
        "TORCH_HOME": str(ws / ".cache" / "torch"),
        "HF_HOME": str(ws / ".cache" / "hf"),
        "XDG_CACHE_HOME": str(ws / ".cache" / "xdg"),
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "MPLBACKEND": "Agg",
        # the checkout under test, for the console script and `python -c` alike
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", ""))),
    }
    env.pop("SCREENSR_STORE", None)
    env.pop("SCREENSR_STUDY_STORE", None)
    return env


def rewritten(command: Command) -> str:
    """The command without its comment, with REWRITES applied."""
    text = strip_comment(command.text)
    for old, new in REWRITES:
        text = text.replace(old, new)
    return text


def key_of(command: Command) -> str:
    return command_key(shlex.split(rewritten(command)))


def runnable(command: Command) -> str:
    """The command this test runs for ``command``: comment dropped, REWRITES, PLACEHOLDERS, SERVERS."""
    text = rewritten(command)
    for word, value in PLACEHOLDERS.items():
        text = re.sub(rf"(?<![\w/.-]){word}(?![\w/.-])", value, text)
    if key_of(command) in SERVERS:
        text += " --dry-run"
    return text


def reads(text: str, path: str) -> bool:
    """Whether the command reads ``path`` (it names it other than as its ``--out`` / ``-o``)."""
    return any(not re.search(r"(--out|-o)\s+$", text[: m.start()])
               for m in re.finditer(rf"(?<![\w/.-]){re.escape(path)}", text))


def _lpips_random_weights(ws: Path) -> None:
    """Random LPIPS weights in the workspace's cache (the plot commands need an LPIPS column)."""
    code = (
        "import torch, torchvision\n"
        "from benchmark.weights import metric_weight_files\n"
        "from pyiqa.archs.lpips_arch import LPIPS\n"
        "files = {f.name: f.path for f in metric_weight_files('lpips')}\n"
        "torch.manual_seed(0)\n"
        "alex = files['alexnet-owt-7be5be79.pth']; alex.parent.mkdir(parents=True, exist_ok=True)\n"
        "torch.save(torchvision.models.alexnet().state_dict(), alex)\n"
        "lin = files['LPIPS_v0.1_alex-df73285e.pth']; lin.parent.mkdir(parents=True, exist_ok=True)\n"
        "net = LPIPS(pretrained=False, net='alex')\n"
        "torch.save({k: (v.abs() + 0.01 if k.startswith('lin') else v) for k, v in net.state_dict().items()}, lin)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=workspace_env(ws), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("readme-workspace")
    _lpips_random_weights(ws)
    return ws


def test_the_readme_has_commands_and_every_rewrite_is_used() -> None:
    assert len(COMMANDS) > 20, "no ```bash blocks found in README.md"
    texts = [strip_comment(c.text) for c in COMMANDS]
    unused = [old for old, _ in REWRITES if not any(old in t for t in texts)]
    assert not unused, f"REWRITES entries match no README command any more (remove them): {unused}"
    for word in PLACEHOLDERS:
        assert any(re.search(rf"\b{word}\b", t) for t in texts), f"placeholder {word} is in no README command"
    for path in INPUTS:
        assert any(path in t for t in texts), f"INPUTS entry {path!r} is read by no README command"


def test_needs_marks_give_a_reason() -> None:
    for command in COMMANDS:
        if "needs:" in command.text:
            assert command.needs, f"{command}: `needs:` without a reason"


def test_command_extraction_on_a_hand_made_block() -> None:
    text = (
        "text\n```bash\n# a comment line\nscreensr a --x 1 \\\n    --y 2   # note\n\n"
        "screensr b   # needs: a GPU\n```\n```python\nnot a command\n```\n"
    )
    got = readme_commands(text)
    assert [(c.line, c.text, c.needs) for c in got] == [
        (4, "screensr a --x 1 --y 2   # note", None), (7, "screensr b   # needs: a GPU", "a GPU"),
    ]
    assert reads("screensr x --data photos/ --out runs/a", "photos/")
    assert not reads("screensr capture simulate canvases/ --out photos/", "photos/")
    assert reads("screensr bench run --methods folder:out/osediff", "out/osediff")
    assert strip_comment(got[0].text) == "screensr a --x 1 --y 2"
    assert strip_comment("python -c \"print('# not a comment')\"  # one") == "python -c \"print('# not a comment')\""
    assert command_key(shlex.split("torchrun --no-python --nproc_per_node 2 screensr bench run --x")) == (
        "torchrun screensr bench run"
    )
    assert command_key(shlex.split("screensr board study create study.yaml")) == "screensr board study create"


@pytest.mark.parametrize("command", [
    pytest.param(c, id=f"L{c.line}-{key_of(c)}", marks=[pytest.mark.slow] if key_of(c) in SLOW and not c.needs else [])
    for c in COMMANDS
])
def test_readme_command(command: Command, workspace: Path) -> None:
    if command.needs:
        pytest.skip(f"{command}: marked in the README as needing {command.needs}")
    text = runnable(command)
    key = key_of(command)
    if key not in RECIPES:
        pytest.fail(
            f"{command}\n  runs here as: {text}\n  no recipe for {key!r}: mark it or give it a recipe "
            "(a trailing `# needs: <what>` comment in the README, or a RECIPES entry in "
            "tests/test_readme_commands.py)"
        )
    leftover = [w for w in re.findall(r"\b[A-Z][A-Z_]{2,}\b", text) if w not in ("GPU", "CPU")]
    assert not leftover, f"{command}\n  placeholder(s) {leftover} have no PLACEHOLDERS entry: mark it or give it a recipe"
    for path, make in INPUTS.items():
        if reads(text, path) and not (workspace / path.rstrip("/")).exists():
            make(workspace)
    proc = subprocess.run(["bash", "-c", text], cwd=workspace, env=workspace_env(workspace),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (
        f"{command}\n  ran as: {text}\n  exit status {proc.returncode}\n"
        f"--- stdout (end) ---\n{proc.stdout[-2000:]}\n--- stderr (end) ---\n{proc.stderr[-4000:]}"
    )
    missing = RECIPES[key](workspace)
    assert not missing, f"{command}\n  ran as: {text}\n  exit 0 but it left no {missing}"
