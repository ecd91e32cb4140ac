"""Training patches (patches.py): aligned, augmented crops and a stream that depends only on
(seed, sample number); synthetic tiles whose pixels say where they were cut from."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from srgan_pipeline.patches import PatchDataset, TileLoaders, make_loader

SCALE, PATCH = 4, 32
CPU = torch.device("cpu")


def coded_tiles(n: int = 3, lr_size: int = 16, scale: int = SCALE):
    """LR tiles whose pixels encode (row, column, tile) in (R, G, B), and HR tiles made of
    scale x scale blocks of the LR pixel they belong to: any aligned crop and any flip or
    rotation applied to both keeps lr == hr[..., ::scale, ::scale]."""
    hr_tiles, lr_tiles = {}, {}
    for t in range(n):
        rows, cols = np.meshgrid(np.arange(lr_size), np.arange(lr_size), indexing="ij")
        lr = np.stack([rows, cols, np.full_like(rows, t)], axis=-1).astype(np.uint8)
        hr = lr.repeat(scale, axis=0).repeat(scale, axis=1)
        hr_tiles[f"img{t}_s001"] = lambda a=hr: a
        lr_tiles[f"img{t}_s001"] = lambda a=lr: a
    return hr_tiles, lr_tiles

def loader(seed: int = 0, start_batch: int = 0, batch_size: int = 2, num_workers: int = 0):
    dataset = PatchDataset(TileLoaders(*coded_tiles(), scale=SCALE), patch_size=PATCH)
    return make_loader(dataset, batch_size, num_workers, seed, CPU, start_batch=start_batch)


def test_patch_dataset_crops_are_aligned_and_augmented():
    dataset = PatchDataset(TileLoaders(*coded_tiles(), scale=SCALE), patch_size=PATCH)
    assert len(dataset) == 3
    p, orientations = PATCH // SCALE, set()
    torch.manual_seed(0)
    for k in range(40):
        lr, hr = dataset[k % 3] if k % 2 else dataset[(k % 3, k)]
        assert lr.shape == (3, p, p) and hr.shape == (3, PATCH, PATCH)
        assert lr.dtype == hr.dtype == torch.float32
        assert 0 <= lr.min() and lr.max() <= 1
        assert torch.equal(lr, hr[:, ::SCALE, ::SCALE])  # aligned after crop + flip + rot
        rows, cols = (lr[:2] * 255).round().long()
        # A contiguous p x p window of the tile, seen under one of the 8 symmetries.
        assert sorted(set(rows.flatten().tolist())) == list(range(rows.min(), rows.min() + p))
        assert sorted(set(cols.flatten().tolist())) == list(range(cols.min(), cols.min() + p))
        assert (lr[2] * 255).round().eq(k % 3).all()  # the requested tile
        orientations.add(
            (rows[0, 0] < rows[-1, -1], cols[0, 0] < cols[-1, -1], rows[0, 0] == rows[0, 1])
        )
    assert len(orientations) > 4  # flips and rotations do happen
    assert all(torch.equal(a, b) for a, b in zip(dataset[(1, 7)], dataset[(1, 7)], strict=True))

    plain = PatchDataset(TileLoaders(*coded_tiles(), scale=SCALE), patch_size=PATCH, augment=False)
    lr, _ = plain[0]
    assert (lr[0, 1:] > lr[0, :-1]).all() and (lr[1, :, 1:] > lr[1, :, :-1]).all()

def test_patch_dataset_refuses_bad_input():
    hr, lr = coded_tiles()
    with pytest.raises(ValueError, match="img9_s001"):
        PatchDataset(TileLoaders(hr | {"img9_s001": hr["img0_s001"]}, lr, SCALE), PATCH)
    with pytest.raises(ValueError, match="multiple of the scale"):
        PatchDataset(TileLoaders(hr, lr, SCALE), 30)
    small_hr, small_lr = coded_tiles(n=1, lr_size=6)
    with pytest.raises(ValueError, match=r"img0_s001.*smaller than patch_size=32"):
        PatchDataset(TileLoaders(small_hr, small_lr, SCALE), PATCH)[0]
    with pytest.raises(ValueError, match="divided by scale"):
        bad = {k: (lambda: np.zeros((15, 16, 3), np.uint8)) for k in lr}
        PatchDataset(TileLoaders(hr, bad, SCALE), PATCH)[0]
    with pytest.raises(ValueError, match="uint8"):
        PatchDataset(TileLoaders(hr, {k: (lambda: np.zeros((16, 16, 3))) for k in lr}, SCALE),
                     PATCH)[0]

def test_cached_patch_dataset_decodes_each_tile_once_and_gives_the_same_patches():
    hr_tiles, lr_tiles = coded_tiles()
    calls = []
    counted = {k: (lambda f=f, k=k: calls.append(k) or f()) for k, f in hr_tiles.items()}
    plain = PatchDataset(TileLoaders(hr_tiles, lr_tiles, SCALE), patch_size=PATCH)
    cached = PatchDataset(TileLoaders(counted, lr_tiles, SCALE, cache=True), patch_size=PATCH)
    for k in range(12):
        for a, b in zip(plain[(k % 3, k)], cached[(k % 3, k)], strict=True):
            assert torch.equal(a, b)
    assert sorted(calls) == sorted(hr_tiles)  # 12 samples, 3 tiles, each decoded once

def test_loader_stream_depends_on_seed_and_position_only():
    first = list(itertools.islice(loader(seed=3), 4))
    resumed = next(loader(seed=3, start_batch=3))
    with_worker = list(itertools.islice(loader(seed=3, num_workers=1), 4))
    assert all(torch.equal(a, b) for a, b in zip(first[3], resumed, strict=True))
    for x, y in zip(first, with_worker, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(x, y, strict=True))
    other = next(loader(seed=4))
    assert not torch.equal(first[0][1], other[1])
