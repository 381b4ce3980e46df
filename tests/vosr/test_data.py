"""Training data: folders, "path, weight" lists, WebDataset shards, crops, rank splitting."""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vosr.data import (
    DataError,
    StepBatches,
    TrainImages,
    decode_image,
    random_crop,
    rank_ids,
    resolve_sources,
)


def _shard(path: Path, images: list[np.ndarray], start: int = 0) -> Path:
    with tarfile.open(path, "w") as tf:
        for i, img in enumerate(images):
            ok, buf = cv2.imencode(".png", img[:, :, ::-1])
            assert ok
            for name, data in ((f"s{start + i:05d}.png", buf.tobytes()), (f"s{start + i:05d}.json", b"{}")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def test_folder_source_and_crop(tmp_path: Path, write_images) -> None:
    folder = write_images(tmp_path / "a", 3)
    (folder / "notes.txt").write_text("not an image")
    ds = TrainImages(resolve_sources([folder]), crop=64, seed=0)
    assert len(ds) == 3
    item = ds[5]
    assert item["hq"].shape == (3, 64, 64) and item["hq"].dtype == torch.float32
    assert 0 <= item["hq"].min() and item["hq"].max() <= 1
    assert torch.equal(ds[5]["hq"], item["hq"])  # deterministic by index
    # the crop is a window of the source image
    src = decode_image(ds.pick(5).read_bytes(), "x")
    crop = item["hq"].permute(1, 2, 0).numpy()
    found = any(
        np.array_equal(src[y : y + 64, x : x + 64], crop) for y in range(src.shape[0] - 63) for x in range(src.shape[1] - 63)
    )
    assert found


def test_small_images_are_upscaled_on_the_short_side() -> None:
    img = np.random.default_rng(0).random((40, 100, 3)).astype(np.float32)
    out = random_crop(img, 64, torch.Generator().manual_seed(0))
    assert out.shape == (64, 64, 3) and out.min() >= 0 and out.max() <= 1


def test_weighted_list_with_shards_and_folders(tmp_path: Path, synthetic_image, write_images) -> None:
    a = write_images(tmp_path / "a", 2, seed=0)
    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    for k in range(2):
        _shard(shard_dir / f"train-{k:03d}.tar", [synthetic_image(100 + 3 * k + j) for j in range(3)], start=3 * k)
    lst = tmp_path / "data.list"
    lst.write_text(f"# comment\n{a}, 1\nshards/train-{{000..001}}.tar, 3\n")
    sources = resolve_sources([lst])
    assert [len(s.images) for s in sources] == [2, 6] and [s.weight for s in sources] == [1.0, 3.0]
    ds = TrainImages(sources, crop=32, seed=1)
    picks = Counter("tar" if ds.pick(i).offset >= 0 else "dir" for i in range(4000))
    assert abs(picks["tar"] / 4000 - 0.75) < 0.03  # weight 3 : 1
    assert ds[7]["hq"].shape == (3, 32, 32)
    # a single shard given directly
    assert len(resolve_sources([shard_dir / "train-000.tar"])[0].images) == 3


def test_rank_ids_partition_the_global_batch() -> None:
    one = [i for m in range(2) for i in rank_ids(100, 4, 1, 0, m)]
    two = sorted(i for r in range(2) for i in rank_ids(100, 4, 2, r, 0))
    assert one == two == list(range(100, 108))
    batches = list(StepBatches(start_offset=8, steps=2, accum=2, micro_batch=2, world=2, rank=1))
    assert batches == [[10, 11], [14, 15], [18, 19], [22, 23]]


def test_bad_data_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder or list file"):
        resolve_sources([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no training images"):
        resolve_sources([tmp_path / "empty"])
    lst = tmp_path / "bad.list"
    lst.write_text(f"{tmp_path / 'empty'}, heavy\n")
    with pytest.raises(DataError, match=r"bad.list:1: expected 'path, weight'"):
        resolve_sources([lst])
    lst.write_text(f"{tmp_path / 'missing'}/x-{{0..1}}.tar, 1\n")
    with pytest.raises(FileNotFoundError, match="bad.list:1"):
        resolve_sources([lst])
    gray = tmp_path / "g"
    gray.mkdir()
    cv2.imwrite(str(gray / "g.png"), np.zeros((70, 70), np.uint8))
    with pytest.raises(DataError, match=r"g\.png: training images must be RGB, got a grayscale"):
        TrainImages(resolve_sources([gray]), 64)[0]
    rgba = tmp_path / "rgba"
    rgba.mkdir()
    cv2.imwrite(str(rgba / "a.png"), np.zeros((70, 70, 4), np.uint8))
    with pytest.raises(DataError, match="4-channel"):
        TrainImages(resolve_sources([rgba]), 64)[0]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"x\.png: cannot decode"):
        TrainImages(resolve_sources([broken]), 64)[0]
    bad_tar = tmp_path / "z.tar"
    bad_tar.write_bytes(b"not a tar" * 100)
    with pytest.raises(DataError, match="not a readable uncompressed tar"):
        resolve_sources([bad_tar])


def test_sixteen_bit_images_are_scaled_to_unit_range(tmp_path: Path, synthetic_image) -> None:
    img16 = (synthetic_image(3).astype(np.uint16) * 257)
    ok, buf = cv2.imencode(".png", img16)
    assert ok
    out = decode_image(buf.tobytes(), "x16")
    ref = decode_image(cv2.imencode(".png", synthetic_image(3))[1].tobytes(), "x8")
    assert np.allclose(out, ref, atol=1e-6)


def test_cropping_before_the_float_conversion_changes_no_value(tmp_path: Path, synthetic_image) -> None:
    """Items equal decode-everything-to-float-then-crop, for large photos and upscaled small ones."""
    from vosr.degradations import generator

    folder = tmp_path / "p"
    folder.mkdir()
    cv2.imwrite(str(folder / "big.jpg"), synthetic_image(1, 300, 410)[:, :, ::-1])
    cv2.imwrite(str(folder / "small.png"), synthetic_image(2, 40, 100)[:, :, ::-1])
    ds = TrainImages(resolve_sources([folder]), crop=64, seed=3)
    kinds = set()
    for i in range(12):
        ref = ds.pick(i)
        full = decode_image(ref.read_bytes(), str(ref))
        want = random_crop(full, 64, generator(3, "data-crop", i))
        assert np.array_equal(ds[i]["hq"].permute(1, 2, 0).numpy(), want)
        kinds.add(Path(ref.path).name)
    assert kinds == {"big.jpg", "small.png"}
