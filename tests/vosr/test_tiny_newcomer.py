"""The tiny recipe works for a newcomer with no weight files (issue 13.1, 13.5).

The README's train -> distill -> infer lines run verbatim (extracted from the README) in an empty
cache: the commands create the random-init components, record them in the run folders, and
inference finds them without --weights-dir. A rerun of a finished run says it is complete.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import cv2
import pytest
import torch

from vosr.components import COMPONENTS_FILE, ComponentsError, read_record, resolve_components, run_weights_dir
from vosr.config import model_config
from vosr.recipes import load_recipe
from vosr.train import Trainer

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_tiny_lines() -> list[str]:
    """The command lines of the README's tiny train -> distill -> infer block, as written."""
    text = README.read_text()
    start = text.index("The tiny recipe end to end")
    body = text[text.index("```bash\n", start) + len("```bash\n") :]
    lines = [line for line in body[: body.index("```")].splitlines() if line.strip()]
    assert [shlex.split(line)[:3] for line in lines] == [
        ["screensr", "vosr", "train"], ["screensr", "vosr", "distill"], ["screensr", "vosr", "infer"]
    ]
    return lines


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_caches: Path) -> Path:
    """A working directory with fresh, empty caches (nothing any other test wrote)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_readme_train_distill_infer_lines_run_verbatim(empty_caches: Path, capsys: pytest.CaptureFixture, synthetic_image, write_images) -> None:
    from importlib.metadata import entry_points

    from screensr.cli import main

    # the README's first word is the console script, i.e. screensr.cli:main
    assert [ep.value for ep in entry_points(group="console_scripts", name="screensr")] == ["screensr.cli:main"]
    write_images(empty_caches / "photos", 4)
    (empty_caches / "lr").mkdir()
    for i in range(2):
        cv2.imwrite(str(empty_caches / "lr" / f"x{i}.png"), synthetic_image(70 + i, 16, 24)[:, :, ::-1])
    for line in readme_tiny_lines():
        argv = shlex.split(line)
        assert main(argv[1:]) == 0, line
    out = capsys.readouterr()
    assert "created a random-init tiny-kl autoencoder" in out.err
    assert "created a random-init dinov2_tiny semantic encoder" in out.err
    assert "noise-like images by design" in out.out
    for i in range(2):
        assert cv2.imread(str(empty_caches / "sr" / f"x{i}.png")).shape == (64, 96, 3)
    # the records: the teacher's components in the teacher run, the student points at them
    tiny = json.loads((empty_caches / "runs" / "tiny" / COMPONENTS_FILE).read_text())
    assert tiny["weights_dir"] == "components" and tiny["random_init"]
    student = json.loads((empty_caches / "runs" / "tiny-os" / COMPONENTS_FILE).read_text())
    assert student["weights_dir"] == "../tiny/components"
    snap = sorted((empty_caches / "runs" / "tiny" / "snapshots").iterdir())[-1]
    assert run_weights_dir(snap) == (empty_caches / "runs" / "tiny" / "components").resolve()
    # no weights were written into the default caches (only the weight-file hash cache, which
    # identifies the inference settings)
    home = empty_caches.parent / "cache"
    written = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
    assert written in ([], ["screensr_home/vosr/sha256_cache.json"]), written


def test_rerunning_a_finished_run_says_it_is_complete(empty_caches: Path, capsys: pytest.CaptureFixture, write_images) -> None:
    from screensr.cli import main

    write_images(empty_caches / "photos", 2)
    argv = ["vosr", "train", "--recipe", "tiny", "--data", "photos", "--out", "runs/t", "--max-steps", "2",
            "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    mtime = (empty_caches / "runs" / "t" / "state" / "step_00000002.pt").stat().st_mtime_ns
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "already complete at step 2" in out.out and "already complete at step 2" in out.err
    assert "last logged loss" in out.out
    assert "nan" not in out.out.lower() and "nan" not in out.err.lower()
    assert (empty_caches / "runs" / "t" / "state" / "step_00000002.pt").stat().st_mtime_ns == mtime


def test_resume_keeps_the_created_components(empty_caches: Path, write_images) -> None:
    images = write_images(empty_caches / "photos", 2)
    run = empty_caches / "r"
    t1 = Trainer(load_recipe("tiny"), [images], run, max_steps=1, progress=False, log=lambda m: None)
    t1.fit()
    ae_file = run / "components" / "tiny-kl-vae" / "diffusion_pytorch_model.safetensors"
    before = ae_file.read_bytes()
    notes: list[str] = []
    t2 = Trainer(load_recipe("tiny"), [images], run, max_steps=2, progress=False, log=notes.append)
    assert t2.fit().step == 2
    assert not any("created" in n for n in notes)  # found through the run's own record
    assert ae_file.read_bytes() == before and t2.components.weights_dir == (run / "components").resolve()


def test_components_found_in_the_caches_are_recorded_not_created(tmp_path: Path, tiny_cache_weights) -> None:
    comps = resolve_components(model_config("vosr-tiny"), semantic=True, run_dir=tmp_path / "r")
    assert comps.weights_dir is None and not comps.created and comps.random_init
    assert comps.autoencoder.path.name == "tiny-kl-vae"


def test_distillation_never_creates_components(empty_caches: Path) -> None:
    with pytest.raises(ComponentsError, match="teacher's run folder"):
        resolve_components(model_config("vosr-tiny"), semantic=True, run_dir=empty_caches / "os", allow_create=False)


def test_a_teacher_file_without_its_run_is_refused(empty_caches: Path, write_images) -> None:
    images = write_images(empty_caches / "photos", 2)
    Trainer(load_recipe("tiny"), [images], empty_caches / "ms", max_steps=1, progress=False, log=lambda m: None).fit()
    lone = empty_caches / "elsewhere" / "teacher.safetensors"
    lone.parent.mkdir()
    lone.write_bytes((empty_caches / "ms" / "checkpoints" / "ema_model.safetensors").read_bytes())
    trainer = Trainer(load_recipe("tiny", {"mode": "distill"}), [images], empty_caches / "os", teacher=lone,
                      max_steps=1, progress=False)
    with pytest.raises(ComponentsError, match="random-init components"):
        trainer.fit()


def test_run_weights_dir_prefers_the_explicit_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ema_model.safetensors").write_bytes(b"")
    assert run_weights_dir(run) is None and read_record(run) is None
    (run / COMPONENTS_FILE).write_text(json.dumps({"weights_dir": "components"}))
    assert run_weights_dir(run) == (run / "components").resolve()
    assert run_weights_dir(run / "checkpoints" / "ema_model.safetensors") == (run / "components").resolve()
    assert run_weights_dir(run, tmp_path / "mine") == tmp_path / "mine"
    (run / COMPONENTS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="unreadable components record"):
        run_weights_dir(run)


def test_created_components_are_seeded(tmp_path: Path) -> None:
    from vosr.components import write_random_autoencoder

    a = write_random_autoencoder("tiny-kl", tmp_path / "a", seed=3)
    b = write_random_autoencoder("tiny-kl", tmp_path / "b", seed=3)
    name = "diffusion_pytorch_model.safetensors"
    assert (a / name).read_bytes() == (b / name).read_bytes()
    state = torch.get_rng_state()
    write_random_autoencoder("tiny-kl", tmp_path / "c", seed=4)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched
    assert (tmp_path / "c" / name).read_bytes() != (a / name).read_bytes()
    with pytest.raises(ComponentsError, match="trained weights only"):
        write_random_autoencoder("sd21", tmp_path / "d")


def test_tiny_recipe_trains_on_one_cpu_thread_and_restores_the_setting(empty_caches: Path,
                                                                       monkeypatch: pytest.MonkeyPatch, write_images) -> None:
    from screensr.cli import main
    from vosr.config import ConfigError

    assert load_recipe("tiny").cpu_threads == 1 and load_recipe("vosr-0.5b-ms").cpu_threads == 0
    seen: list[int] = []
    real = Trainer.train_step

    def spy(self, *a, **kw):
        seen.append(torch.get_num_threads())
        return real(self, *a, **kw)

    monkeypatch.setattr(Trainer, "train_step", spy)
    write_images(empty_caches / "photos", 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        base = ["vosr", "train", "--recipe", "tiny", "--data", "photos", "--max-steps", "1", "--no-progress",
                "--device", "cpu"]
        assert main([*base, "--out", "runs/a"]) == 0
        assert seen == [1] and torch.get_num_threads() == 2
        assert main([*base, "--out", "runs/b", "--cpu-threads", "2"]) == 0
        assert seen == [1, 2]
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="cpu_threads must be >= 0"):
        load_recipe("tiny", {"cpu_threads": -1})
