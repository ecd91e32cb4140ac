"""data_prep at DIV2K scale: speed with 1 and 2 workers, and the store's size against PNG tiles.

speed: makes --images synthetic DIV2K-sized photographs (2040x1356: mosaics of 3x3 random crops
of scikit-image's builtin photographs, resampled to 680x452 each, saved as PNG), then runs
`kedro run --env=quickstart --pipelines=data_prep` on them as the only training source (480/240
px tiles, as conf/base) with data_prep.workers=1 and =2, in a scratch copy of the project.
Prints images/s (from Kedro's pipeline time, without its start-up), bytes written, checks both
runs wrote the same store, and extrapolates the wall time of the full training set at 2, 16 and
64 cores, assuming the measured 2-worker efficiency holds (disk bandwidth not modelled: the
MB/s it would need is printed).

sizes: PNG bytes per pixel of 480 px tiles (HR and LR, compress_level 1, as data_prep wrote
them before the store) on real photographs (SunHays80, Urban100 from ../shared), and both
footprints computed for DIV2K + Flickr2K.

    python benchmarks/data_prep_scale.py --images 24          # ~2.5 min on 2 CPU cores
    python benchmarks/data_prep_scale.py --part sizes
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from srgan_pipeline.imaging import imresize, load_rgb, mod_crop
from srgan_pipeline.tiles import tile_grid

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT / ".." / "shared" / "datasets"
WIDTH, HEIGHT, SCALE, TILE, STRIDE = 2040, 1356, 4, 480, 240
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina", "motorcycle_left")
# The training set the extrapolation is for. DIV2K's 800 training images are 2040 px on their
# long side and ~1356 on the other on average; Flickr2K's 2650 likewise (2040 px long side).
# The faces source has no default; CelebA-HQ (30,000 at 1024x1024) is the large case.
FULL_SET = {"DIV2K + Flickr2K": (800 + 2650) * WIDTH * HEIGHT,
            "... + faces (CelebA-HQ, 30,000 at 1024x1024)": (800 + 2650) * WIDTH * HEIGHT
            + 30_000 * 1024 * 1024}


def synthetic_photographs(folder: Path, count: int) -> None:
    import skimage.data

    photos = [np.asarray(skimage.data.stereo_motorcycle()[0]) if name ==
              "motorcycle_left" else getattr(skimage.data, name)() for name in PHOTOS]
    photos = [np.stack([p] * 3, -1) if p.ndim == 2 else p[..., :3] for p in photos]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    cell_w, cell_h = WIDTH // 3, HEIGHT // 3
    for i in range(count):
        canvas = Image.new("RGB", (WIDTH, HEIGHT))
        for row in range(3):
            for col in range(3):
                photo = photos[rng.integers(len(photos))]
                h, w = photo.shape[:2]
                ch, cw = int(h * rng.uniform(0.5, 0.9)), int(w * rng.uniform(0.5, 0.9))
                y, x = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
                crop = Image.fromarray(photo[y:y + ch, x:x + cw].astype(np.uint8))
                canvas.paste(crop.resize((cell_w, cell_h), Image.BICUBIC),
                             (col * cell_w, row * cell_h))
        canvas.save(folder / f"{i:04d}.png")


def scratch_project(folder: Path) -> Path:
    shutil.copytree(PROJECT / "conf", folder / "conf", ignore=shutil.ignore_patterns("local"))
    (folder / "conf" / "local").mkdir()
    (folder / "src").mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT / name, folder / name)
    return folder


def run_data_prep(project: Path, images: Path, workers: int, threads: dict[str, str]
                  ) -> tuple[float, float, dict]:
    shutil.rmtree(project / "data", ignore_errors=True)
    params = ",".join([
        "data_prep.train_sources.skimage_photos.enabled=false",
        f"data_prep.train_sources.synthetic.path={images}",
        f"data_prep.tiles.size={TILE}", f"data_prep.tiles.stride={STRIDE}",
        f"data_prep.workers={workers}"])
    start = time.perf_counter()
    done = subprocess.run(["kedro", "run", "--env=quickstart", "--pipelines=data_prep",
                           f"--params={params}"], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "DO_NOT_TRACK": "true", "COLUMNS": "200",
                               "KEDRO_DISABLE_TELEMETRY": "1", **threads})
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    pipeline = float(re.search(r"successfully in ([\d.]+) sec", done.stdout + done.stderr)[1])
    written = {name: sum(f.stat().st_size for f in (project / "data" / sub).rglob("*")
                         if f.is_file())
               for name, sub in (("HR PNG (02_intermediate)", "02_intermediate/train_hr"),
                                 ("store (03_primary)", "03_primary/train_store"))}
    digest = hashlib.sha256()
    for f in sorted((project / "data" / "03_primary" / "train_store").iterdir()):
        digest.update(f.read_bytes())
    written["store sha256"] = digest.hexdigest()[:16]
    return pipeline, wall, written


def speed(count: int, blas_threads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        synthetic_photographs(images, count)
        source_mb = sum(f.stat().st_size for f in images.iterdir()) / 1e6
        print(f"{count} synthetic {WIDTH}x{HEIGHT} photographs, {source_mb:.0f} MB of PNG; "
              f"load average {os.getloadavg()[0]:.2f}")
        project = scratch_project(Path(tmp) / "project")
        results = {}
        # One process = one core: workers get one BLAS thread each (srgan_pipeline.parallel), and
        # the one-worker run (in the Kedro process) the same through OMP_NUM_THREADS, unless
        # --blas-threads says otherwise.
        threads = {"OMP_NUM_THREADS": str(blas_threads)} if blas_threads else {}
        for workers in (1, 2):
            pipeline, wall, written = run_data_prep(project, images, workers, threads)
            results[workers] = pipeline
            print(f"  workers={workers}: pipeline {pipeline:6.1f} s ({count / pipeline:.2f} "
                  f"images/s), wall with Kedro start-up {wall:.1f} s; written: "
                  + ", ".join(f"{k} {v / 1e6:.0f} MB" if isinstance(v, int) else f"{k} {v}"
                              for k, v in written.items()))
        speedup = results[1] / results[2]
        per_image = results[1] / count
        bytes_per_image = sum(v for v in written.values() if isinstance(v, int)) / count
        print(f"speed-up 1 -> 2 workers: {speedup:.2f}x (efficiency {speedup / 2:.0%}); "
              f"load average after {os.getloadavg()[0]:.2f}")
        for name, pixels in FULL_SET.items():
            equivalents = pixels / (WIDTH * HEIGHT)
            cells = []
            for cores in (2, 16, 64):
                seconds = equivalents * per_image / (cores * speedup / 2)
                need = equivalents * bytes_per_image / seconds / 1e6
                cells.append(f"{cores} cores {seconds / 60:.1f} min ({need:.0f} MB/s written)")
            print(f"  {name} ({equivalents:,.0f} DIV2K-sized images): " + ", ".join(cells))


def png_bytes(array: np.ndarray) -> int:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.tell()


def sizes(per_set: int) -> None:
    hr_bytes = lr_bytes = hr_px = lr_px = 0
    names = []
    for name in ("SunHays80/HR", "Urban100/HR"):
        folder = SHARED / name
        if not folder.is_dir():
            continue
        names.append(name)
        for path in sorted(folder.iterdir())[:per_set]:
            hr = mod_crop(load_rgb(path), SCALE)
            lr = imresize(hr, 1 / SCALE)
            for tile in tile_grid(*hr.shape[:2], TILE, STRIDE):
                hr_tile, lr_tile = hr[tile.hr()], lr[tile.lr(SCALE)]
                hr_bytes, hr_px = hr_bytes + png_bytes(hr_tile), hr_px + hr_tile[..., 0].size
                lr_bytes, lr_px = lr_bytes + png_bytes(lr_tile), lr_px + lr_tile[..., 0].size
    if not names:
        raise SystemExit(f"no real photographs under {SHARED}")
    hr_bpp, lr_bpp = hr_bytes / hr_px, lr_bytes / lr_px
    print(f"PNG tiles at compress_level 1 on {per_set} images each of {', '.join(names)}: "
          f"{hr_bpp:.2f} bytes/px HR, {lr_bpp:.2f} bytes/px LR (raw: 3.00)")
    grid = tile_grid(HEIGHT, WIDTH, TILE, STRIDE)
    tile_hr_px = sum(t.size_y * t.size_x for t in grid)
    images = 800 + 2650
    png = images * tile_hr_px * (hr_bpp + lr_bpp / SCALE**2)
    store = images * WIDTH * HEIGHT * 3 * (1 + 1 / SCALE**2)
    print(f"DIV2K + Flickr2K as {images} images of {WIDTH}x{HEIGHT}: {len(grid)} tiles each, "
          f"covering every pixel {tile_hr_px / (WIDTH * HEIGHT):.2f} times on average")
    print(f"  PNG tiles {png / 1e9:.1f} GB, training store {store / 1e9:.1f} GB "
          f"(store / tiles = {store / png:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=24, help="synthetic images (default 24)")
    ap.add_argument("--per-set", type=int, default=10, help="real images per set for sizes")
    ap.add_argument("--part", choices=("speed", "sizes", "all"), default="all")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="OMP_NUM_THREADS of the Kedro process (0: unset; default 1)")
    args = ap.parse_args()
    if args.part in ("sizes", "all"):
        sizes(args.per_set)
    if args.part in ("speed", "all"):
        speed(args.images, args.blas_threads)


if __name__ == "__main__":
    main()
