"""Training data: random aligned LR/HR patches cut from the data_prep training store (or tiles).

Reproducibility: the stream of patches is a pure function of (seed, sample number), see
`_SampleSeeds`, so it does not depend on the number of DataLoader workers, and a resumed run
continues with exactly the batches the killed one would have seen next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from srgan_pipeline.training_store import TrainingStore


class PatchDataset(Dataset):
    """Random aligned LR/HR patch pairs cut from the tiles of ``tiles``.

    ``tiles`` is a `TrainingStore` (what training reads: memory-mapped whole images, only the
    crop's rows are read, and the OS page cache holds them for every loader worker) or
    `TileLoaders` (tiles as loaders of arrays, e.g. Kedro partitions): both give tile i's key
    and its (HR, LR) pair in the same sorted key order, so the same tiles give the same stream.
    The LR tile is the HR tile downscaled by ``tiles.scale`` and aligned with it, so LR pixel
    (y, x) covers HR pixels (y*scale.., x*scale..). `patch_size` is the HR patch side and must
    be a multiple of the scale.

    `dataset[i]` takes from tile i a random LR crop of side patch_size // scale at (y, x) and
    the HR crop at (y*scale, x*scale), then (augment=True) the same random horizontal flip,
    vertical flip and 90-degree rotation on both. Returns (lr, hr), float32 CHW tensors in
    [0, 1].

    The randomness of one call comes from a numpy Generator seeded per call: from torch's
    RNG for an int index (DataLoader seeds torch per worker, so workers never repeat each
    other, unlike numpy's global RNG), or from the seed in an (index, seed) pair, which is
    what `make_loader`'s sampler passes so the stream is independent of worker scheduling.
    """

    def __init__(self, tiles: TrainingStore | TileLoaders, patch_size: int, augment: bool = True):
        scale = tiles.scale
        if not isinstance(patch_size, int) or patch_size <= 0 or patch_size % scale:
            raise ValueError(
                f"patch_size must be a positive multiple of the scale ({scale}); got {patch_size!r}"
            )
        if not len(tiles):  # TileLoaders refuse to be empty: only a store gets here
            raise ValueError(f"the training store at {tiles.folder} has no tiles: add training "
                             "images to data_prep.train_sources and re-run data_prep")
        self.tiles, self.patch_size, self.scale, self.augment = tiles, patch_size, scale, augment

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(index, tuple):
            index, seed = index
        else:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        rng = np.random.default_rng(seed)
        s = self.scale
        hr, lr = self.tiles.tile_pair(index)
        p = self.patch_size // s
        if lr.shape[0] < p or lr.shape[1] < p:
            raise ValueError(
                f"tile {self.tiles.tile_key(index)!r} is {hr.shape[0]}x{hr.shape[1]} px (HR), "
                f"smaller than patch_size={self.patch_size}"
            )
        y, x = int(rng.integers(lr.shape[0] - p + 1)), int(rng.integers(lr.shape[1] - p + 1))
        lr, hr = lr[y : y + p, x : x + p], hr[y * s : (y + p) * s, x * s : (x + p) * s]
        if self.augment:
            hflip, vflip, rot = rng.integers(2, size=3)
            if hflip:
                lr, hr = lr[:, ::-1], hr[:, ::-1]
            if vflip:
                lr, hr = lr[::-1], hr[::-1]
            if rot:  # with the flips, this reaches all 8 symmetries of the square
                lr, hr = np.rot90(lr), np.rot90(hr)
        return _to_tensor(lr), _to_tensor(hr)


class TileLoaders:
    """Equally keyed HR and LR tiles as ``{key: loader}``, a `PatchDataset`'s other source.

    `hr_tiles` / `lr_tiles` map a key to a callable returning an HxWx3 uint8 array (what
    Kedro's PartitionedDataset hands over, and `TrainingStore.tile_loaders` gives); tile i is
    the i-th key in sorted order. Each pair is checked as it is loaded.

    `cache=True` keeps each decoded tile pair in memory after its first use (about 0.7 MB
    per 480 px HR tile with its LR): worth it when the tiles fit in RAM, since decoding two
    PNGs per sample otherwise costs as much as a bf16 training step on 2 CPU cores. Each
    DataLoader worker holds its own cache.
    """

    def __init__(
        self,
        hr_tiles: Mapping[str, Callable[[], np.ndarray]],
        lr_tiles: Mapping[str, Callable[[], np.ndarray]],
        scale: int,
        cache: bool = False,
    ):
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive int; got {scale!r}")
        only_hr, only_lr = (
            sorted(set(hr_tiles) - set(lr_tiles)),
            sorted(set(lr_tiles) - set(hr_tiles)),
        )
        if only_hr or only_lr:
            raise ValueError(
                "hr_tiles and lr_tiles must have the same keys; "
                f"only in hr_tiles: {only_hr[:5]}{' ...' if len(only_hr) > 5 else ''}, "
                f"only in lr_tiles: {only_lr[:5]}{' ...' if len(only_lr) > 5 else ''}"
            )
        if not hr_tiles:
            raise ValueError("TileLoaders needs at least one tile; hr_tiles is empty")
        self.keys = sorted(hr_tiles)  # sorted: the index -> tile mapping must not vary by run
        self.hr_tiles, self.lr_tiles, self.scale = dict(hr_tiles), dict(lr_tiles), scale
        self.cache: dict[str, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.keys)

    def tile_key(self, index: int) -> str:
        return self.keys[index]

    def tile_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The checked (HR, LR) arrays of tile `index`, from the cache when it has them."""
        key = self.keys[index]
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        s = self.scale
        hr, lr = np.asarray(self.hr_tiles[key]()), np.asarray(self.lr_tiles[key]())
        for name, a in (("HR", hr), ("LR", lr)):
            if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
                raise ValueError(
                    f"tile {key!r}: {name} tile must be an HxWx3 uint8 array; "
                    f"got shape {a.shape}, dtype {a.dtype}"
                )
        if lr.shape[0] * s != hr.shape[0] or lr.shape[1] * s != hr.shape[1]:
            raise ValueError(
                f"tile {key!r}: LR tile {lr.shape[:2]} must be the HR tile {hr.shape[:2]} "
                f"divided by scale {s} exactly"
            )
        if self.cache is not None:
            self.cache[key] = (hr, lr)
        return hr, lr


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float().div_(255)


class _SampleSeeds(Sampler):
    """Endless (tile index, crop seed) pairs; sample k depends only on (seed, k).

    Drawing tiles with replacement forever means no epochs to manage, and because each
    pair comes from its own seed, `start` can jump to any sample without replaying the
    ones before it: that is what makes resumption continue the same data stream.

    Data-parallel training (`rank` of `world_size` processes): global batch g is samples
    start + g*B*W .. start + (g+1)*B*W - 1 of the stream, and rank r takes the r-th run of
    `batch_size` (B) of them. The ranks' batches are disjoint, together they are the
    stream's next B*W samples, and one process (W = 1) reads the stream as before; a resume
    under another W continues at the same sample. (torch's DistributedSampler deals out
    the indices of a finite epoch; this stream has none, so the few lines are written here.)
    """

    def __init__(self, num_tiles: int, seed: int, start: int = 0, batch_size: int = 1,
                 rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0 .. {world_size - 1}, got {rank}")
        self.num_tiles, self.seed, self.start = num_tiles, seed, start
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step, offset = self.batch_size * self.world_size, self.rank * self.batch_size
        first = self.start + offset
        while True:
            for k in range(first, first + self.batch_size):
                rng = np.random.default_rng([self.seed, k])
                yield int(rng.integers(self.num_tiles)), int(rng.integers(2**63))
            first += step


def make_loader(
    dataset: PatchDataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    device: torch.device,
    start_batch: int = 0,
    *,
    start_sample: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless iterator of (lr, hr) batches for the training loops.

    `start_batch`: batches already consumed, for a resumed run: pass the checkpoint's
    `state["batches"]` when resuming the same phase (0 otherwise). `start_sample` (the
    checkpoint's `state["samples"]`) says the same in samples of the stream and wins: a
    data-parallel run consumes batch_size x world_size samples per batch. `rank` /
    `world_size`: this process's shard of the stream (see `_SampleSeeds`).
    """
    start = start_batch * batch_size if start_sample is None else start_sample
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=_SampleSeeds(len(dataset), seed, start, batch_size, rank, world_size),
        num_workers=num_workers,
        pin_memory=device.type == "cuda",  # pinned host memory -> asynchronous copies
        persistent_workers=num_workers > 0,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),  # fixes the workers' torch seeds
    )
    return iter(loader)
