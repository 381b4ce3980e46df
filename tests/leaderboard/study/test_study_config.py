"""Study definitions: YAML loading, validation errors, server-side assignment, served image bytes."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, PngImagePlugin

from leaderboard.study.assignment import assign_trials, build_trials, position_label
from leaderboard.study.config import BICUBIC, HR, LR, StudyConfigError, config_from_dict
from leaderboard.study.serving import candidate_image, crop_box, png_bytes, trial_pngs, zoomed_crop
from leaderboard.study.validation import load_study


def _edit_yaml(path: Path, **changes: object) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data))


def test_fixture_writes_a_valid_study(tmp_path: Path, make_study_files) -> None:
    config = load_study(make_study_files(tmp_path, n_images=3))
    assert config.images == ("img_00", "img_01", "img_02")
    assert config.method_names == ("alpha", "beta", "gamma")


def test_load_resolves_paths_and_fills_images(tmp_path: Path, make_study_files) -> None:
    config = load_study(make_study_files(tmp_path, n_images=3))
    assert config.lr == (tmp_path / "lr").resolve()
    assert config.methods["beta"] == str((tmp_path / "beta").resolve())
    assert config.file("beta", "img_01") == (tmp_path / "beta" / "img_01.png").resolve()
    assert config.file(HR, "img_01") == (tmp_path / "hr" / "img_01.png").resolve()
    assert config.images == ("img_00", "img_01", "img_02")
    assert [c.key for c in config.criteria] == ["perceptual", "consistency"]
    # the stored form round-trips to the same config (and hash)
    again = config_from_dict(config.to_dict())
    assert again == config and again.config_hash() == config.config_hash()


def test_dataset_folder_layout(tmp_path: Path, make_study_files) -> None:
    path = make_study_files(tmp_path, n_images=2)
    data = yaml.safe_load(path.read_text())
    data["images"] = {"dataset": "."}
    path.write_text(yaml.safe_dump(data))
    config = load_study(path)
    assert config.dataset == str(tmp_path.resolve()) and config.lr is None
    assert config.file(LR, "img_00").name == "img_00.png" and config.file(HR, "img_01").parent.name == "hr"


def test_unknown_key_gets_did_you_mean(tmp_path: Path, make_study_files) -> None:
    path = make_study_files(tmp_path)
    _edit_yaml(path, votes_per_participnt=3)
    with pytest.raises(StudyConfigError, match="did you mean 'votes_per_participant'"):
        load_study(path)


def test_unknown_criterion_key_rejected(tmp_path: Path, make_study_files) -> None:
    path = make_study_files(tmp_path)
    _edit_yaml(path, criteria=[{"key": "perceptual", "questoin": "?"}])
    with pytest.raises(StudyConfigError, match="did you mean 'question'"):
        load_study(path)


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_study(tmp_path / "nope.yaml")


def test_method_lacking_an_image_is_named(tmp_path: Path, make_study_files) -> None:
    path = make_study_files(tmp_path, n_images=3)
    (tmp_path / "gamma" / "img_01.png").unlink()
    with pytest.raises(StudyConfigError, match=r"method 'gamma'.*img_01"):
        load_study(path)


def test_missing_method_folder(tmp_path: Path, make_study_files) -> None:
    path = make_study_files(tmp_path)
    _edit_yaml(path, methods={"alpha": "alpha", "zeta": "zeta"})
    with pytest.raises(FileNotFoundError, match="zeta"):
        load_study(path)


def test_corrupt_image_is_named(tmp_path: Path, make_study_files) -> None:
    path = make_study_files(tmp_path)
    target = tmp_path / "beta" / "img_02.png"
    target.write_bytes(target.read_bytes()[:60])
    with pytest.raises(StudyConfigError, match=r"beta/img_02.png is corrupt"):
        load_study(path)


@pytest.mark.parametrize(
    "mode,array",
    [
        ("L", np.zeros((32, 32), np.uint8)),
        ("RGBA", np.zeros((32, 32, 4), np.uint8)),
        ("I;16", np.zeros((32, 32), np.uint16)),
    ],
)
def test_non_rgb_images_rejected_with_fix(tmp_path: Path, mode: str, array: np.ndarray, make_study_files) -> None:
    path = make_study_files(tmp_path)
    Image.fromarray(array).save(tmp_path / "alpha" / "img_00.png")
    with pytest.raises(StudyConfigError, match=r"alpha/img_00.png has mode .*convert\('RGB'\)"):
        load_study(path)


def test_size_mismatch_named(tmp_path: Path, make_study_files) -> None:
    path = make_study_files(tmp_path)
    Image.new("RGB", (30, 32)).save(tmp_path / "beta" / "img_03.png")
    with pytest.raises(StudyConfigError, match=r"img_03.*beta: 30x32"):
        load_study(path)


def test_gold_needs_hr_and_known_distractor(tmp_path: Path, make_study_files) -> None:
    path = make_study_files(tmp_path, gold={"images": ["img_00"], "distractor": "gama"})
    with pytest.raises(StudyConfigError, match="did you mean 'gamma'"):
        load_study(path)
    data = yaml.safe_load(path.read_text())
    data["gold"]["distractor"] = "bicubic"
    data["images"] = {"lr": "lr"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(StudyConfigError, match="HR folder"):
        load_study(path)


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("votes_per_participant", 0, "positive integer"),
        ("votes_per_participant", 9, "exceeds the 4 images"),
        ("candidates_per_trial", 1, "between 2 and 3"),
        ("open_enrolment", "yes", "true or false"),
        ("name", "bad name!", "letters, digits"),
        ("seed", -1, "seed must be a non-negative integer"),
        ("seed", "7", r"seed: expected an integer, got str .7."),
    ],
)
def test_bad_values(tmp_path: Path, key: str, value: object, match: str, make_study_files) -> None:
    path = make_study_files(tmp_path)
    _edit_yaml(path, **{key: value})
    with pytest.raises(StudyConfigError, match=match):
        load_study(path)


def test_trials_and_gold(tmp_path: Path, make_study_files) -> None:
    config = load_study(make_study_files(tmp_path, gold={"images": ["img_01"]}))
    trials = build_trials(config)
    assert [t.image_id for t in trials] == ["img_00", "img_01", "img_02", "img_03", "img_01"]
    assert trials[-1].candidates == (HR, BICUBIC) and trials[-1].gold_answer == HR
    assert all(t.candidates == ("alpha", "beta", "gamma") for t in trials[:-1])


def test_assignment_balanced_reproducible_and_permuted(tmp_path: Path, make_study_files) -> None:
    config = load_study(make_study_files(tmp_path, n_images=4, votes_per_participant=2))
    trials = build_trials(config)
    load: dict[int, int] = {}
    plans = []
    for index in range(8):
        plan = assign_trials(config, trials, index, load)
        assert plan == assign_trials(config, trials, index, dict(load)), "same inputs, same plan"
        for a in plan:
            load[a.trial_position] = load.get(a.trial_position, 0) + 1
        plans.append(plan)
    # 8 participants x 2 trials over 4 images: least-assigned-first gives exactly 4 each
    assert sorted(load.values()) == [4, 4, 4, 4]
    # every candidate appears in every position about equally often (randomised positions)
    first = Counter(a.shown[0] for plan in plans for a in plan)
    assert set(first) == {"alpha", "beta", "gamma"}
    assert all(sorted(a.shown) == ["alpha", "beta", "gamma"] for plan in plans for a in plan)


def test_assignment_subsets_balance_methods(tmp_path: Path, make_study_files) -> None:
    config = load_study(
        make_study_files(tmp_path, methods=("a1", "a2", "a3", "a4", "a5"), n_images=6, candidates_per_trial=2)
    )
    trials = build_trials(config)
    method_load: dict[str, int] = {}
    for index in range(5):
        for a in assign_trials(config, trials, index, {}, method_load):
            assert len(a.shown) == 2
            for m in a.shown:
                method_load[m] = method_load.get(m, 0) + 1
    assert sum(method_load.values()) == 5 * 6 * 2
    assert max(method_load.values()) - min(method_load.values()) <= 1


def test_position_labels() -> None:
    assert [position_label(i) for i in (0, 1, 25, 26, 27)] == ["A", "B", "Z", "AA", "AB"]


def test_png_bytes_lossless_and_metadata_free(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "SecretMethod v2")
    src = tmp_path / "SecretMethod.png"
    Image.fromarray(pixels).save(src, pnginfo=info, icc_profile=b"\0" * 128)
    with Image.open(src) as im:
        assert "Software" in im.info and "icc_profile" in im.info
        data = png_bytes(im.convert("RGB") if im.mode != "RGB" else im.copy())
    assert b"SecretMethod" not in data
    out = Image.open(io.BytesIO(data))
    assert out.format == "PNG" and not {"Software", "icc_profile", "exif"} & set(out.info)
    np.testing.assert_array_equal(np.asarray(out), pixels)
    # only the critical chunks
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    assert set(chunks) <= {b"IHDR", b"IDAT", b"IEND"}


def test_crop_box_clamps() -> None:
    assert crop_box((100, 80), (0.5, 0.5), 20) == (40, 30, 60, 50)
    assert crop_box((100, 80), (0.0, 1.0), 20) == (0, 60, 20, 80)
    assert crop_box((10, 8), (0.5, 0.5), 20) == (0, 0, 10, 8)


def test_zoomed_crops_show_the_same_region(tmp_path: Path, make_study_files) -> None:
    config = load_study(make_study_files(tmp_path, lr_size=8, scale=4))
    lr_png, crops = trial_pngs(config, "img_00", ("gamma", "alpha"), center=(0.25, 0.75), zoom=3)
    sr = np.asarray(candidate_image(config, "img_00", "gamma"))
    # crop 16 px of 32 centred at (8, 24) -> box x 0..16, y 16..32; nearest zoom x3
    expected = np.kron(sr[16:32, 0:16], np.ones((3, 3, 1), dtype=np.uint8))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(crops[0]))), expected)
    lr = np.asarray(Image.open(tmp_path / "lr" / "img_00.png"))
    # the LR crop is the same region at LR resolution, enlarged to the same display size
    expected_lr = np.kron(lr[4:8, 0:4], np.ones((12, 12, 1), dtype=np.uint8))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(lr_png))), expected_lr)
    assert all(Image.open(io.BytesIO(c)).size == (48, 48) for c in crops)


def test_candidate_images_hr_and_bicubic(tmp_path: Path, make_study_files, method_of_png) -> None:
    config = load_study(make_study_files(tmp_path, gold={"images": ["img_00"]}))
    assert method_of_png(png_bytes(candidate_image(config, "img_00", HR)), config.method_names) == HR
    bic = candidate_image(config, "img_00", BICUBIC)
    assert bic.size == (32, 32)
    with pytest.raises(StudyConfigError, match="not a method"):
        candidate_image(config, "img_00", "omega")


def test_zoomed_crop_nearest_neighbour() -> None:
    image = Image.fromarray(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3))
    out = np.asarray(zoomed_crop(image, (0.5, 0.5), 4, 2))
    np.testing.assert_array_equal(out[::2, ::2], np.asarray(image)[6:10, 6:10])


DREALSR = Path(__file__).resolve().parents[2] / "data" / "drealsr_osediff"


def test_real_dataset_with_folder_and_generated_methods(tmp_path: Path) -> None:
    """DRealSR crops (benchmark dataset loader) + OSEDiff's published outputs + generated bicubic."""
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "drealsr-mini",
        "dataset": str(DREALSR),
        "images": ["Canon_10_x1", "DSC_0988_x1"],
        "methods": {"OSEDiff": str(DREALSR / "osediff"), "Bicubic": {"method": "bicubic"},
                    "Lanczos": {"method": "lanczos"}},
        "gold": {"images": ["DSC_1241_x1"], "distractor": "Bicubic"},
    }))  # fmt: skip
    config = load_study(path)
    assert config.images == ("Canon_10_x1", "DSC_0988_x1")
    assert config.methods["Bicubic"] == "method:bicubic"
    assert config.file("OSEDiff", "Canon_10_x1") == DREALSR / "osediff" / "Canon_10_x1.png"
    assert config.file(LR, "DSC_1241_x1").parent.name == "test_LR"
    bicubic = candidate_image(config, "Canon_10_x1", "Bicubic")
    lr = Image.open(config.file(LR, "Canon_10_x1"))
    assert bicubic.size == (4 * lr.size[0], 4 * lr.size[1]) == (512, 512)
    # generated outputs are cached: loading again generates nothing and gives the same files
    again = load_study(path)
    assert again.files == config.files and again.config_hash() == config.config_hash()
    trials = build_trials(config)
    assert trials[-1].candidates == (HR, "Bicubic")


def test_assignment_properties_hold_for_any_design(tmp_path: Path, make_study_files) -> None:
    """Property: coverage stays balanced, plans are permutations, gold trials appear as configured."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = load_study(make_study_files(tmp_path, methods=("m1", "m2", "m3", "m4"), n_images=7,
                                       gold={"images": ["img_00", "img_01"]}))  # fmt: skip

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        k=st.integers(1, 7), participants=st.integers(1, 12), subset=st.sampled_from([None, 2, 3, 4]),
        gold=st.integers(0, 2), seed=st.integers(0, 2**16),
    )  # fmt: skip
    def check(k: int, participants: int, subset: int | None, gold: int, seed: int) -> None:
        import dataclasses

        gold_cfg = dataclasses.replace(base.gold, per_participant=gold) if gold else None
        config = dataclasses.replace(base, votes_per_participant=k, candidates_per_trial=subset, gold=gold_cfg,
                                     seed=seed)  # fmt: skip
        trials = build_trials(config)
        load: dict[int, int] = {}
        method_load: dict[str, int] = {}
        for index in range(participants):
            plan = assign_trials(config, trials, index, load, method_load)
            regular = [a for a in plan if trials[a.trial_position].gold_answer is None]
            assert len(regular) == k and len(plan) == k + gold
            assert len({a.trial_position for a in plan}) == len(plan), "no trial twice"
            assert [a.order for a in plan] == list(range(len(plan)))
            for a in plan:
                load[a.trial_position] = load.get(a.trial_position, 0) + 1
                for m in a.shown:
                    method_load[m] = method_load.get(m, 0) + 1
                t = trials[a.trial_position]
                assert set(a.shown) <= set(t.candidates) and len(set(a.shown)) == len(a.shown)
                assert len(a.shown) == (subset if subset and t.gold_answer is None else len(t.candidates))
            regular_loads = [load.get(t.position, 0) for t in trials if t.gold_answer is None]
            assert max(regular_loads) - min(regular_loads) <= 1, "balanced coverage after every participant"

    check()
