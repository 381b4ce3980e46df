"""Submissions: validation rejects bad uploads with clear messages; accepted outputs are scored
by the benchmark harness itself (checked against OSEDiff's published per-image PSNR/SSIM)."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.store import ResultsStore
from leaderboard.board import submissions
from leaderboard.board.submissions import Submission, SubmissionError, validate_submission

REPO = Path(__file__).resolve().parents[3]
APP = str(REPO / "leaderboard" / "app.py")
DREALSR = REPO / "tests" / "data" / "drealsr_osediff"


@pytest.fixture(scope="module")
def env(tmp_path_factory, make_board_env):
    """A store of its own: these tests publish submissions into it."""
    return make_board_env(tmp_path_factory.mktemp("submit"))


@pytest.fixture
def store(env):
    s = ResultsStore(env.url)
    yield s
    s.close()


@pytest.fixture
def good(env, tmp_path) -> Path:
    """A valid submission folder for the synthetic DRealSR: a copy of m02's outputs."""
    folder = tmp_path / "good"
    shutil.copytree(env.outputs["m02"], folder)
    return folder


def _sub(**kw) -> Submission:
    return Submission(
        **{"dataset": "DRealSR", "method": "fresh", "version": "1.0", "family": "GAN", "owner": "tester", **kw}
    )


def _rejects(sub, folder, store, *patterns):
    with pytest.raises(SubmissionError) as info:
        validate_submission(sub, folder, store)
    text = str(info.value)
    for p in patterns:
        assert p in text, f"{p!r} not in: {text}"
    return info.value


# --------------------------------------------------------------------------- validation


def test_valid_folder_is_accepted(good, store):
    checked = validate_submission(_sub(), good, store)
    assert sorted(checked.outputs) == [f"img{i:03d}" for i in range(8)]
    assert not checked.resume


def test_missing_extra_and_wrong_size_are_all_reported_at_once(good, store):
    (good / "img003.png").unlink()
    Image.open(good / "img005.png").resize((60, 60)).save(good / "img005.png")
    shutil.copy(good / "img000.png", good / "holiday.png")
    err = _rejects(
        _sub(), good, store,
        "1 of 8 images have no output: img003",
        "img005.png: is 60x60 but the HR image of 'img005' is 64x64",
        "match no image of 'DRealSR': holiday",
    )  # fmt: skip
    assert len(err.problems) == 3


@pytest.mark.parametrize(
    ("mode", "message"),
    [("L", "is grayscale"), ("RGBA", "has an alpha channel"), ("I;16", "16-bit")],
)
def test_bad_image_modes_are_rejected_naming_the_file(good, store, mode, message):
    rgb = np.asarray(Image.open(good / "img001.png"))
    if mode == "I;16":
        Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(good / "img001.png")
    else:
        Image.fromarray(rgb).convert(mode).save(good / "img001.png")
    _rejects(_sub(), good, store, "img001.png", message)


def test_truncated_image_is_rejected(good, store):
    raw = (good / "img002.png").read_bytes()
    (good / "img002.png").write_bytes(raw[: len(raw) // 2])
    _rejects(_sub(), good, store, "img002.png", "corrupt or truncated")


def test_two_outputs_with_one_name(good, store):
    Image.open(good / "img004.png").save(good / "img004.jpg", quality=100)
    _rejects(_sub(), good, store, "two outputs share the name 'img004'")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "GT"}, "reserved for the ground truth"),
        ({"method": "my method!"}, "method name 'my method!' is not usable"),
        ({"version": ""}, "version '' is not usable"),
        ({"family": "wizardry"}, "family 'wizardry' is not one of"),
        ({"links": ("javascript:alert(1)",)}, "link 'javascript:alert(1)' is not an http(s) URL"),
        ({"method": "m00", "version": "1.0"}, "method 'm00' version '1.0' is already on the leaderboard"),
    ],
)
def test_bad_declarations(good, store, changes, message):
    _rejects(_sub(**changes), good, store, message)


def test_unknown_dataset_lists_known_ones(good, store):
    _rejects(_sub(dataset="Set14"), good, store, "dataset 'Set14' is unknown to the store; known: DRealSR, RealSR")


def test_new_version_of_ones_own_method_is_accepted(good, store):
    from benchmark.store import MethodRecord

    store.upsert_method(MethodRecord("Mine", "GAN", version="1.0", owner="tester"))
    checked = validate_submission(_sub(method="Mine", version="2.0", owner="  Tester "), good, store)
    assert len(checked.outputs) == 8 and checked.submission.owner == "tester"
    _rejects(_sub(method="Mine", version="2.0", owner="someone else"), good, store, "another submitter's method")
    _rejects(_sub(method="MINE", version="2.0"), good, store, "differs only in case from your method 'Mine'")


@pytest.mark.parametrize("name", ["m00", "M00"])
def test_a_name_the_suite_runs_is_refused(good, store, name):
    _rejects(_sub(method=name, version="2.0"), good, store, f"method name {name!r} is a method the suite runs itself")


@pytest.mark.parametrize(("name", "builtin"), [("bicubic", "bicubic"), ("Lanczos", "lanczos"), ("VOSR-0.5B-OS", "vosr-0.5b-os")])
def test_builtin_names_are_refused_even_before_they_were_run(good, store, name, builtin):
    _rejects(_sub(method=name), good, store, f"is the suite's built-in method {builtin!r}")


def test_a_submitter_is_required(good, store):
    _rejects(_sub(owner=" "), good, store, "no submitter given")


# --------------------------------------------------------------------------- archives


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buf.getvalue()


def test_zip_and_tar_with_one_top_folder_are_unpacked(good, tmp_path):
    files = {f"outputs/{p.name}": p.read_bytes() for p in sorted(good.glob("*.png"))}
    folder = submissions.unpack_upload("sub.zip", _zip(files), tmp_path / "z")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in good.glob("*.png"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for p in sorted(good.glob("*.png")):
            tf.add(p, arcname=p.name)
    folder = submissions.unpack_upload("sub.tar.gz", buf.getvalue(), tmp_path / "t")
    assert len(list(folder.glob("*.png"))) == 8


def test_unsafe_archives_are_refused(tmp_path):
    with pytest.raises(SubmissionError, match="points outside the archive"):
        submissions.unpack_upload("evil.zip", _zip({"../evil.png": b"x"}), tmp_path / "a")
    assert not (tmp_path / "evil.png").exists()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("link.png")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(SubmissionError, match="is a link, device"):
        submissions.unpack_upload("links.tar", buf.getvalue(), tmp_path / "b")
    with pytest.raises(SubmissionError, match="not a readable zip"):
        submissions.unpack_upload("broken.zip", b"PK\x03\x04garbage", tmp_path / "c")
    with pytest.raises(SubmissionError, match="not a .zip or .tar"):
        submissions.unpack_upload("outputs.rar", b"Rar!", tmp_path / "d")


def test_admin_hash_configuration(monkeypatch):
    from core.secrets import hash_secret

    monkeypatch.delenv(submissions.LEGACY_ADMIN_ENV, raising=False)
    monkeypatch.setenv(submissions.ADMIN_ENV, "not-a-hash")
    with pytest.raises(submissions.AdminSecretError, match="screensr board hash-secret"):
        submissions.admin_hash()
    stored = hash_secret("pw-long-enough")
    monkeypatch.setenv(submissions.ADMIN_ENV, f"  {stored}\n")
    assert submissions.admin_hash() == stored
    assert submissions.check_admin("pw-long-enough", stored) and not submissions.check_admin("pw-long-enough ", stored)
    assert not submissions.check_admin("", stored)
    monkeypatch.delenv(submissions.ADMIN_ENV)
    assert submissions.admin_hash() is None
    assert submissions.admin_hash({"board_admin_hash": stored}) == stored


@pytest.mark.parametrize("where", ["env", "secrets"])
def test_an_unsalted_sha256_no_longer_unlocks_anything(monkeypatch, where):
    """The earlier configuration (sha256 hex) must fail loudly with the fix, never keep working."""
    digest = hashlib.sha256(b"pw").hexdigest()
    monkeypatch.delenv(submissions.ADMIN_ENV, raising=False)
    secrets = None
    if where == "env":
        monkeypatch.setenv(submissions.LEGACY_ADMIN_ENV, digest)
    else:
        monkeypatch.delenv(submissions.LEGACY_ADMIN_ENV, raising=False)
        secrets = {"board_admin_sha256": digest}
    with pytest.raises(submissions.AdminSecretError, match="unsalted sha256.*screensr board hash-secret"):
        submissions.admin_hash(secrets)
    assert not submissions.check_admin("pw", digest)  # and the old hash never matches a secret


# --------------------------------------------------------------------------- the Submit page


@pytest.fixture
def admin_app(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core.secrets import hash_secret

    monkeypatch.setenv(submissions.ADMIN_ENV, hash_secret("s3cret-admin"))

    def start(url: str):
        monkeypatch.setenv("SCREENSR_STORE", url)
        at = AppTest.from_file(APP, default_timeout=120).run()
        at.switch_page("board/pages/submit.py").run()
        at.text_input(key="sub_secret").set_value("s3cret-admin")
        at.button[0].click().run()
        assert at.get("file_uploader"), [e.value for e in at.error]
        return at

    return start


def _submit(
    at, *, dataset: str, method: str, files, metrics=("psnr", "ssim"), version="1.0", family="GAN", owner="tester"
):
    at.selectbox(key="sub_dataset").set_value(dataset).run()
    at.selectbox(key="sub_family").set_value(family)
    at.text_input(key="sub_method").set_value(method)
    at.text_input(key="sub_owner").set_value(owner)
    at.text_input(key="sub_version").set_value(version)
    at.multiselect(key="sub_metrics").set_value(list(metrics))
    at.file_uploader(key="sub_upload").set_value(files)
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_rejects_an_archive_with_missing_images(admin_app, env):
    files = {p.name: p.read_bytes() for p in sorted(env.outputs["m01"].glob("*.png"))[:5]}
    at = _submit(admin_app(env.url), dataset="DRealSR", method="partial", files=[("p.zip", _zip(files), "application/zip")])
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "Submission rejected" in errors[0]
    assert "3 of 8 images have no output: img005, img006, img007" in errors[0]
    assert not at.success


def test_page_rejects_rgba_images_naming_the_file(admin_app, env):
    files = []
    for p in sorted(env.outputs["m01"].glob("*.png")):
        buf = io.BytesIO()
        Image.open(p).convert("RGBA").save(buf, format="PNG")
        files.append((p.name, buf.getvalue(), "image/png"))
    at = _submit(admin_app(env.url), dataset="DRealSR", method="alpha", files=files)
    assert any("img000.png: has an alpha channel" in e.value for e in at.error)


def test_page_rejects_unsafe_archive(admin_app, env):
    at = _submit(
        admin_app(env.url), dataset="DRealSR", method="evil", files=[("e.zip", _zip({"../x.png": b"1"}), "application/zip")]
    )
    assert any("points outside the archive" in e.value for e in at.error)


# --------------------------------------------------------------------------- end to end, real data


SUBSET = ("Canon_10_x1", "DSC_1241_x1", "sony_54_x1")


def _drealsr_store(base: Path, stems: tuple[str, ...] | None) -> tuple[str, Path]:
    """A store that knows the DRealSR centre-crop pairs of tests/data (all, or ``stems``), no scores."""
    from benchmark.datasets import load_dataset

    root = DREALSR
    if stems is not None:  # a copy of a few pairs keeps the default run fast
        root = base / "drealsr"
        for sub in ("test_HR", "test_LR", "osediff"):
            (root / sub).mkdir(parents=True)
            for stem in stems:
                shutil.copy(DREALSR / sub / f"{stem}.png", root / sub / f"{stem}.png")
    url = f"sqlite:///{base / 'results.db'}"
    store = ResultsStore(url)
    store.upsert_dataset(load_dataset(root, layout="crops", name="DRealSR-crops").record())
    store.close()
    return url, root / "osediff"


def _end_to_end(admin_app, url: str, outputs_dir: Path) -> None:
    """OSEDiff's published outputs, submitted through the page, get OSEDiff's published PSNR/SSIM."""
    outputs = sorted(outputs_dir.glob("*.png"))
    archive = _zip({f"osediff/{p.name}": p.read_bytes() for p in outputs})
    at = _submit(
        admin_app(url), dataset="DRealSR-crops", method="OSEDiff", files=[("osediff.zip", archive, "application/zip")]
    )
    assert not at.error, [e.value for e in at.error]
    assert any("Published OSEDiff 1.0 on DRealSR-crops" in s.value for s in at.success)

    store = ResultsStore(url)
    scores = store.scores_frame(method="OSEDiff").pivot_table(index="image", columns="metric", values="value")
    methods = store.methods_frame().set_index("name")
    store.close()
    published = pd.read_csv(DREALSR / "osediff_published_metrics.csv")
    published["image"] = published["image"].str.replace(".png", "", regex=False)
    published = published.set_index("image").loc[scores.index]
    assert len(scores) == len(outputs)
    np.testing.assert_allclose(scores["psnr"], published["PSNR"], atol=1e-5)
    np.testing.assert_allclose(scores["ssim"], published["SSIM"], atol=1e-5)
    assert methods.loc["OSEDiff", "version"] == "1.0" and methods.loc["OSEDiff", "family"] == "GAN"
    assert Path(methods.loc["OSEDiff", "outputs"]).is_dir()  # staged under $SCREENSR_HOME/submissions

    # the leaderboard shows it at once (the page clears the cached board)
    at.switch_page("board/pages/leaderboard.py").run()
    table = [d.value for d in at.dataframe if "Mean rank ↓" in d.value.columns][0]
    assert table["Method"].tolist() == ["OSEDiff"]
    assert table["PSNR ↑"].iloc[0] == pytest.approx(published["PSNR"].mean(), abs=1e-5)

    # the same method+version again: a duplicate
    at = _submit(
        admin_app(url), dataset="DRealSR-crops", method="OSEDiff", files=[("osediff.zip", archive, "application/zip")]
    )
    assert any("version '1.0' is already on the leaderboard" in e.value for e in at.error)
    # the same bytes under another name: a duplicate too
    at = _submit(admin_app(url), dataset="DRealSR-crops", method="Copycat", files=[("c.zip", archive, "application/zip")])
    assert any("byte-identical to those of method 'OSEDiff'" in e.value for e in at.error)


def test_submission_is_scored_by_the_harness_and_published(admin_app, tmp_path):
    url, outputs = _drealsr_store(tmp_path, SUBSET)
    _end_to_end(admin_app, url, outputs)


@pytest.mark.slow
def test_submission_of_all_19_drealsr_pairs(admin_app, tmp_path):
    url, outputs = _drealsr_store(tmp_path, None)
    _end_to_end(admin_app, url, outputs)


def test_compare_page_finds_outputs_the_runner_generated(tmp_path, monkeypatch, image_folders):
    """Generated outputs live in the method's cache keyed by the LR file's hash; the compare page
    must find them and show exactly their pixels."""
    from streamlit.testing.v1 import AppTest

    from benchmark.images import read_image
    from benchmark.methods import create_method
    from benchmark.runner import evaluate
    from leaderboard import crops
    from leaderboard.board import loading

    root, _ = image_folders(tmp_path, "tiny", [], ["a", "b"], hr=64)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    evaluate([str(root)], ["bicubic"], ["psnr"], store=url, progress=False)
    board = loading.load_board(url)
    files = crops.dataset_images(board.datasets, "tiny")["a"]
    location = board.methods.set_index("name").loc["bicubic", "outputs"]
    found = crops.method_output(location, files)
    assert found is not None and found.parent == Path(location)
    lr = read_image(files.lr).array
    np.testing.assert_array_equal(read_image(found).array, create_method("bicubic").upscale(lr, 4))

    monkeypatch.setenv("SCREENSR_STORE", url)
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("board/pages/compare.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [c for img in at.get("image") for c in img.captions] == ["LR input", "HR reference", "bicubic"]
