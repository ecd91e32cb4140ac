"""Training samples per second: PNG tiles vs the training store, at 0, 1 and 2 loader workers.

What training consumes: make_loader batches of 16 random aligned 96 px HR / 24 px LR crops with
flips and rotations, from
  * png    the PNG tiles data_prep wrote before the store (480 px HR tiles every 240 px and
           their LR, compress_level 1, decoded for every sample: PatchDataset without cache)
  * store  the training store (PatchDataset of the store: memory-mapped whole images, no decoding)
built from the same photographs (SunHays80 from ../shared when present, else scikit-image's).
Each configuration is warmed up (workers started, first batches), then timed for --seconds.

    python benchmarks/loader.py                  # ~1 min on 2 CPU cores
    python benchmarks/loader.py --images 10 --seconds 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from srgan_pipeline.datasets import RGBImageDataset
from srgan_pipeline.imaging import imresize, load_rgb, mod_crop
from srgan_pipeline.patches import PatchDataset, TileLoaders, make_loader
from srgan_pipeline.tiles import tile_grid
from srgan_pipeline.training_store import StoreContent, TrainingStore, write_store

SUNHAYS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "SunHays80" / "HR"
SCALE, TILE, STRIDE, BATCH, PATCH = 4, 480, 240, 16, 96


def photographs(count: int) -> list[Path]:
    if SUNHAYS.is_dir():
        return sorted(SUNHAYS.iterdir())[:count]
    import skimage

    folder = Path(skimage.data.data_dir)
    return [folder / name for name in ("astronaut.png", "coffee.png", "chelsea.png",
                                       "rocket.jpg", "motorcycle_left.png")][:count]


def hr_image(path: Path) -> np.ndarray:
    return mod_crop(load_rgb(path), SCALE)


def write_png_tiles(paths: list[Path], folder: Path) -> tuple[dict, dict]:
    hr_tiles, lr_tiles = {}, {}
    for path in paths:
        hr = hr_image(path)
        lr = imresize(hr, 1 / SCALE)
        for number, tile in enumerate(tile_grid(*hr.shape[:2], TILE, STRIDE), start=1):
            key = f"{path.stem}_s{number:03d}"
            for part, tiles, array, window in (("hr", hr_tiles, hr, tile.hr()),
                                               ("lr", lr_tiles, lr, tile.lr(SCALE))):
                dataset = RGBImageDataset(filepath=str(folder / part / f"{key}.png"),
                                          save_args={"compress_level": 1})
                dataset.save(array[window])
                tiles[key] = dataset.load
    return hr_tiles, lr_tiles


def samples_per_second(dataset, workers: int, seconds: float) -> float:
    batches = make_loader(dataset, BATCH, workers, seed=0, device=torch.device("cpu"))
    for _ in range(3 + 2 * workers):  # start the workers, fill their prefetch queues
        next(batches)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(batches)
        count += BATCH
    rate = count / (time.perf_counter() - start)
    del batches  # stops the workers
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=8, help="photographs to tile (default 8)")
    ap.add_argument("--seconds", type=float, default=4.0, help="timed seconds per configuration")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = photographs(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        tiles = write_png_tiles(paths, Path(tmp) / "png")
        content = StoreContent({p.stem: (partial(hr_image, p), hr_image(p).shape[:2])
                                for p in paths}, SCALE, TILE, STRIDE)
        write_store(Path(tmp) / "store", content)
        store = TrainingStore(Path(tmp) / "store")
        png_bytes = sum(f.stat().st_size for f in (Path(tmp) / "png").rglob("*.png"))
        store_bytes = sum(f.stat().st_size for f in store.folder.iterdir())
        print(f"{len(paths)} photographs from {paths[0].parent}: {len(store)} tiles; "
              f"PNG tiles {png_bytes / 1e6:.1f} MB, store {store_bytes / 1e6:.1f} MB; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        datasets = {"png": PatchDataset(TileLoaders(*tiles, scale=SCALE), patch_size=PATCH),
                    "store": PatchDataset(store, patch_size=PATCH)}
        rates = {}
        print(f"batch {BATCH}, {PATCH} px HR crops with augmentation, samples/s:")
        for workers in args.workers:
            for name, dataset in datasets.items():
                rates[name, workers] = samples_per_second(dataset, workers, args.seconds)
            print(f"  {workers} workers: png {rates['png', workers]:8.0f}   "
                  f"store {rates['store', workers]:8.0f}   "
                  f"store/png {rates['store', workers] / rates['png', workers]:5.1f}x")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
