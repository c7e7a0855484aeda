"""Datasets over folders and tar shards: filtering, labels, determinism, workers."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import color_image
from tinct.data import ColorizationDataset, DataConfig, colorfulness


def test_colorfulness_known_values():
    gray = np.full((8, 8, 3), 128, np.uint8)
    assert colorfulness(gray) == 0.0
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200  # rg = 200, yb = 100 everywhere: no spread, only the mean term
    assert colorfulness(red) == pytest.approx(0.3 * np.sqrt(200**2 + 100**2))


def test_shard_labels_and_gray_filter(shard, caplog):
    with caplog.at_level("INFO"):
        ds = ColorizationDataset([str(shard)], DataConfig(image_size=32, min_colorfulness=5))
    assert len(ds) == 12 and ds.dropped_gray == 3
    assert any("3 dropped" in r.message for r in caplog.records)
    sample = ds[0]
    assert sample["rgb"].shape == (3, 32, 32) and sample["gray"].shape == (1, 32, 32)
    assert 0 <= sample["rgb"].min() and sample["rgb"].max() <= 1
    w = torch.tensor([0.2989, 0.5870, 0.1140]).view(3, 1, 1)
    assert torch.allclose(sample["gray"], (sample["rgb"] * w).sum(0, keepdim=True), atol=1e-6)
    assert sorted({int(ds[i]["label"]) for i in range(len(ds))}) == [0, 1, 2, 3, 4]
    kept_all = ColorizationDataset([str(shard)], DataConfig(image_size=32, min_colorfulness=0))
    assert len(kept_all) == 15


def test_folder_recursive_and_deterministic(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for i in range(3):
        color_image(seed=i).save(tmp_path / "a" / f"{i}.png")
    color_image(seed=9).save(tmp_path / "a" / "b" / "deep.jpg")
    (tmp_path / "a" / "readme.txt").write_text("not an image")
    ds1 = ColorizationDataset(str(tmp_path), DataConfig(image_size=16), seed=5)
    ds2 = ColorizationDataset(str(tmp_path), DataConfig(image_size=16), seed=5)
    assert len(ds1) == 4
    assert torch.equal(ds1[2]["rgb"], ds2[2]["rgb"])  # same seed, same crop
    ds2.set_epoch(1)
    assert not torch.equal(ds1[2]["rgb"], ds2[2]["rgb"])  # next epoch, new crop


def test_multi_worker_loading_matches_single(shard):
    ds = ColorizationDataset([str(shard)], DataConfig(image_size=24))
    one = torch.cat([b["rgb"] for b in DataLoader(ds, batch_size=4, num_workers=0)])
    two = torch.cat([b["rgb"] for b in DataLoader(ds, batch_size=4, num_workers=2)])
    assert torch.equal(one, two)


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        ColorizationDataset(str(tmp_path / "nope"))


def test_colorfulness_filter_is_cached_and_invalidated(shard, tmp_path, monkeypatch):
    import shutil

    import tinct.data as data

    copy = tmp_path / "s.tar.gz"
    shutil.copy(shard, copy)
    first = ColorizationDataset([str(copy)], DataConfig(image_size=16, min_colorfulness=5))
    calls = []
    monkeypatch.setattr(data, "colorfulness", lambda arr: calls.append(1) or 100.0)
    again = ColorizationDataset([str(copy)], DataConfig(image_size=16, min_colorfulness=5))
    assert calls == [] and len(again) == len(first) == 12 and again.dropped_gray == 3
    copy.touch()  # a changed file (new mtime) is filtered again
    import os
    import time

    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = ColorizationDataset([str(copy)], DataConfig(image_size=16, min_colorfulness=5))
    assert calls and len(changed) == 15
