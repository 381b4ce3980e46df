"""SR methods: built-ins, folders, commands, Python entry points, the output cache."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from benchmark.datasets import load_dataset
from benchmark.images import read_image
from benchmark.methods import (
    FolderMethod,
    MethodError,
    RealESRGANMethod,
    VOSRMethod,
    create_method,
)
from core.errors import ConfigError, UnknownNameError


@pytest.fixture
def lr(tmp_path, save_png, smooth_image):
    return read_image(save_png(tmp_path / "lr" / "p1.png", smooth_image(np.random.default_rng(0), 12, 10)))


def test_bicubic_lanczos_equal_opencv_and_are_cached(lr, tmp_path, monkeypatch):
    import cv2

    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    for spec, flag in (("bicubic", cv2.INTER_CUBIC), ("lanczos", cv2.INTER_LANCZOS4)):
        m = create_method(spec)
        out = m.output("p1", lr, 4)
        assert np.array_equal(out.array, cv2.resize(lr.array, (40, 48), interpolation=flag))
        assert out.path.parent.parent.name == spec and out.path.is_file()
    assert create_method("bicubic").method_hash != create_method("lanczos").method_hash


_CALLS: list[int] = []


def _counting_sr(img: np.ndarray, scale: int) -> np.ndarray:
    _CALLS.append(1)
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def test_python_entry_point_and_cache_hit(lr, tmp_path, monkeypatch):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    mod = types.ModuleType("toy_sr_module")
    mod.nearest = _counting_sr
    mod.wrong = lambda img, scale: img
    monkeypatch.setitem(sys.modules, "toy_sr_module", mod)
    _CALLS.clear()
    m = create_method("near=py:toy_sr_module:nearest")
    assert m.name == "near"
    a = m.output("p1", lr, 2)
    b = create_method("near=toy_sr_module:nearest").output("p1", lr, 2)  # `py:` is optional
    assert len(_CALLS) == 1 and np.array_equal(a.array, b.array)  # second call: from the cache
    with pytest.raises(MethodError, match=r"output is 10x12 but x2 .* must be 20x24"):
        create_method("py:toy_sr_module:wrong").output("p1", lr, 2)
    with pytest.raises(MethodError, match="has no function"):
        create_method("py:toy_sr_module:absent")


def test_command_template(lr, tmp_path, monkeypatch):
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    script = tmp_path / "sr.py"
    script.write_text(
        "import sys\nfrom PIL import Image\n"
        "im = Image.open(sys.argv[1]); s = int(sys.argv[3])\n"
        "im.resize((im.width * s, im.height * s), Image.NEAREST).save(sys.argv[2])\n"
    )
    m = create_method(f"cmd:{sys.executable} {script} {{input}} {{output}} {{scale}}")
    out = m.output("p1", lr, 2)
    assert np.array_equal(out.array, np.repeat(np.repeat(lr.array, 2, 0), 2, 1))
    bad = create_method(f"cmd:{sys.executable} -c 'import sys; sys.exit(3)' {{input}} {{output}}")
    with pytest.raises(MethodError, match="exit status 3"):
        bad.output("p1", lr, 2)
    with pytest.raises(MethodError, match=r"needs \{input\} and \{output\}"):
        create_method("cmd:echo hi")


def test_folder_method_matches_by_stem(drealsr_dir):
    m = create_method(f"folder:{drealsr_dir / 'osediff'}")
    assert isinstance(m, FolderMethod) and m.name == "osediff" and m.precomputed
    lr = read_image(drealsr_dir / "test_LR" / "Canon_10_x1.png")
    assert m.output("Canon_10_x1", lr, 4).path.name == "Canon_10_x1.png"
    with pytest.raises(FileNotFoundError, match="no SR output for pair 'nope'"):
        m.output_path("nope", read_image(drealsr_dir / "test_LR" / "Canon_10_x1.png").__class__(
            drealsr_dir / "test_LR" / "nope.png", lr.array, "0"))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        create_method("folder:/nonexistent/outputs")


def test_unknown_method_did_you_mean():
    with pytest.raises(UnknownNameError) as exc:
        create_method("bicubc")
    assert isinstance(exc.value, KeyError)  # callers catching KeyError keep working
    # printed as written: no KeyError quotes around the whole message
    assert str(exc.value) == (
        "unknown method 'bicubc' (did you mean 'bicubic'?); "
        "other forms: folder:PATH, cmd:TEMPLATE, py:MODULE:FUNCTION, vosr:CKPT"
    )
    with pytest.raises(UnknownNameError, match=r"^unknown method 'bicubc' \(did you mean 'bicubic'\?\)"):
        create_method("bicubc@foo=1")  # the name is checked first, then the options


def test_folder_given_without_prefix_is_pointed_at(tmp_path):
    (tmp_path / "outs").mkdir()
    with pytest.raises(UnknownNameError, match=rf"{tmp_path / 'outs'} is a folder: .* folder:{tmp_path / 'outs'}"):
        create_method(str(tmp_path / "outs"))


def test_builtin_options_are_typed_and_checked():
    with pytest.raises(ConfigError) as exc:
        create_method("bicubic@foo=1")
    assert str(exc.value) == "unknown option 'foo' for bicubic in 'bicubic@foo=1': bicubic takes no options"
    with pytest.raises(ConfigError) as exc:
        create_method("realesrgan@tiles=128")
    assert str(exc.value) == (
        "unknown option 'tiles' for realesrgan in 'realesrgan@tiles=128' (did you mean 'tile'?); "
        "realesrgan takes tile, tile_pad, threads"
    )
    with pytest.raises(ConfigError, match=r"realesrgan options\.tile: expected an integer, got str 'big'"):
        create_method("realesrgan@tile=big")
    with pytest.raises(ConfigError, match="tile=2: use at least 8"):
        create_method("realesrgan@tile=2")
    with pytest.raises(ConfigError, match="expected key=value"):
        create_method("realesrgan@tile")
    m = create_method("realesrgan@tile=128@tile_pad=8@threads=2")
    assert (m.tile, m.tile_pad, m.threads) == (128, 8, 2)
    default = create_method("realesrgan")
    assert (default.tile, default.tile_pad, default.threads) == (256, 24, 0)
    # tiling is part of the method's identity; the thread count is not
    assert m.method_hash != default.method_hash
    assert create_method("realesrgan@threads=3").method_hash == default.method_hash


def test_folder_method_errors_name_the_fix(tmp_path, drealsr_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MethodError, match=r"folder:.*empty: holds no images"):
        create_method(f"folder:{tmp_path / 'empty'}")
    m = create_method(f"folder:{drealsr_dir / 'osediff'}")
    lr = read_image(drealsr_dir / "test_LR" / "Canon_10_x1.png")
    missing = lr.__class__(tmp_path / "nope.png", lr.array, "0")
    with pytest.raises(FileNotFoundError) as exc:
        m.output_path("nope", missing)  # the pair id and the LR stem coincide: named once
    assert "(looked for nope.*);" in str(exc.value) and "nope.* and" not in str(exc.value)
    with pytest.raises(FileNotFoundError, match=r"looked for p7\.\* or nope\.\*"):
        m.output_path("p7", missing)
    assert m.missing_outputs(load_dataset(drealsr_dir).pairs) == []


def test_vosr_specs_are_lazy(tmp_path, monkeypatch):
    """VOSR adapters are built without reading any weights; their identity (config) is resolved
    from the weight files on first use (tests/vosr/test_benchmark_method.py checks its values)."""
    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    m = create_method("vosr-0.5b-os")
    assert isinstance(m, VOSRMethod) and m.family == "one-step" and m.name == "vosr-0.5b-os"
    assert create_method("vosr-1.4b-ms").family == "multi-step"
    ckpt = tmp_path / "my.safetensors"
    ckpt.write_bytes(b"abc")
    c = create_method(f"vosr:{ckpt}")
    assert c.name == "my"
    with pytest.raises(ValueError, match=r"my\.safetensors: not a readable safetensors file"):
        c.config()
    o = create_method("vosr-0.5b-ms@steps=8@color_fix=wavelet")
    assert o.options == {"steps": 8, "color_fix": "wavelet"} and o.name == "vosr-0.5b-ms"
    with pytest.raises(FileNotFoundError, match=r"VOSR_0\.5B_ms.*ema_model\.safetensors"):
        o.method_hash  # noqa: B018 (the identity needs the weights: a clear error without them)
    with pytest.raises(ConfigError, match="key=value"):
        create_method("vosr-0.5b-ms@steps")


def test_vosr_adapter_calls_the_contract(tmp_path, monkeypatch, lr):
    """The adapter types its options once (vosr.config.upscaler_options), builds
    VOSRUpscaler(checkpoint, sampling, device=..., dtype=..., weights_dir=..., decoder=...,
    tile_batch=...) once and calls upscaler(image, upscale=scale); a stand-in module proves the
    plumbing (the vosr engineer's end-to-end test covers the real model)."""
    from vosr.config import SamplingConfig

    monkeypatch.setenv("SCREENSR_HOME", str(tmp_path / "home"))
    built = []

    class FakeUpscaler:
        def __init__(self, checkpoint, sampling, *, device, dtype, weights_dir, decoder, tile_batch):
            built.append((checkpoint, sampling, device, dtype, weights_dir, decoder, tile_batch))

        def __call__(self, image, upscale=4, *, name=None):
            return np.repeat(np.repeat(image, upscale, 0), upscale, 1)

    pipeline = types.ModuleType("vosr.pipeline")
    pipeline.VOSRUpscaler = FakeUpscaler
    monkeypatch.setitem(sys.modules, "vosr.pipeline", pipeline)
    m = create_method("vosr-0.5b-os@steps=1@dtype=bf16@tile_batch=2", device="cpu")
    a = m.upscale(lr.array, 4)
    m.upscale(lr.array, 4)
    assert a.shape == (48, 40, 3)
    assert built == [("vosr-0.5b-os", SamplingConfig(steps=1), "cpu", "bf16", None, "default", 2)]


def test_realesrgan_ncnn_tiled_equals_untiled(drealsr_dir):
    pytest.importorskip("ncnn", reason="pip install 'screensr[sr]' for Real-ESRGAN")
    lr = read_image(drealsr_dir / "test_LR" / "Canon_10_x1.png").array[:48, :48]
    whole = RealESRGANMethod("realesrgan", "GAN", tile=1024).upscale(lr, 4)
    tiled = RealESRGANMethod("realesrgan", "GAN", tile=24, tile_pad=24).upscale(lr, 4)
    assert whole.shape == (192, 192, 3)
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.mean() < 0.4 and np.percentile(diff, 99) <= 3  # 24 px of context hides the seams
    # a real SR model: closer to the true HR crop than bicubic in PSNR terms is not guaranteed on
    # real degradations, but it must be a faithful x4 of the input: downsampling gives it back
    import cv2

    back = cv2.resize(whole, (48, 48), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(back - lr).mean() < 12
    with pytest.raises(MethodError, match="x4plus"):
        RealESRGANMethod("realesrgan", "GAN").upscale(lr, 2)


def test_empty_screensr_home_means_the_default_not_the_working_directory(monkeypatch, tmp_path):
    from benchmark.methods import cache_dir

    monkeypatch.setenv("SCREENSR_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    m = create_method("bicubic")
    assert cache_dir(m) == tmp_path / ".cache" / "screensr" / "outputs" / "bicubic" / m.method_hash


def test_method_registry_has_one_shape_entry_name_lookup_and_suggestion():
    import dataclasses

    from benchmark.methods import BUILTINS, get_method

    for name, entry in BUILTINS.items():
        assert entry.name == name  # the dict is keyed by the entry's own name
        with pytest.raises(dataclasses.FrozenInstanceError):
            entry.name = "x"  # type: ignore[misc]
        method = create_method(name)
        # what the registry says is what the store records
        assert (method.name, method.family, method.description) == (name, entry.family, entry.description)
    assert get_method("lanczos") is BUILTINS["lanczos"]
    with pytest.raises(UnknownNameError, match=r"^unknown method 'lanczso' \(did you mean 'lanczos'\?\)"):
        get_method("lanczso")
    assert create_method("mine=bicubic").name == "mine" and create_method("mine=bicubic").family == "interpolation"
