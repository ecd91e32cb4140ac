"""Quality of bf16 inference against float32 with a trained generator, on a whole test set.

Each LR image of the set goes through the project's inference twice, with the generator
prepared as an ``Upscaler`` in float32 and in bf16 (``InferencePlan.prepare``, the path
evaluation and upscale take with ``precision``), at each precision's own tile size. Prints,
per precision, the mean Y-PSNR (as the evaluation tables compute it: 8-bit outputs, ``scale``
pixels cropped per border), the difference of the means, the largest per-image Y-PSNR
difference, the largest per-pixel difference between the two outputs in grey levels, and the
time of each pass.

    python benchmarks/precision_quality.py \
        data/06_models/generator_pretrained.pt/<version>/generator_pretrained.pt
    python benchmarks/precision_quality.py CHECKPOINT --hr ../shared/datasets/Urban100/HR \
        --lr ../shared/datasets/Urban100/LR_bicubic_X4 --limit 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from srgan_pipeline.checkpoints import generator_from_checkpoint
from srgan_pipeline.imaging import load_rgb, mod_crop
from srgan_pipeline.inference import InferencePlan
from srgan_pipeline.metrics import psnr_y

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "Urban100"


def pairs(hr_dir: Path, lr_dir: Path, scale: int, limit: int | None):
    """(name, LR, HR) of the set: MATLAB's LR files, HR mod-cropped to the scale."""
    names = sorted(p.name for p in hr_dir.iterdir() if p.suffix.lower() == ".png")[:limit]
    if not names:
        raise SystemExit(f"no PNG images in {hr_dir}")
    for name in names:
        stem = Path(name).stem
        lr_path = next(lr_dir.glob(f"{stem}*.png"), None)
        if lr_path is None:
            raise SystemExit(f"no LR image for {name} in {lr_dir}")
        yield name, load_rgb(lr_path), mod_crop(load_rgb(hr_dir / name), scale)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="a generator checkpoint written by train_gan")
    ap.add_argument("--hr", type=Path, default=SHARED / "HR")
    ap.add_argument("--lr", type=Path, default=SHARED / "LR_bicubic_X4")
    ap.add_argument("--limit", type=int, default=None, help="the first N images (default all)")
    ap.add_argument("--tile-fp32", type=int, default=256)
    ap.add_argument("--tile-bf16", type=int, default=256)
    args = ap.parse_args()

    generator = generator_from_checkpoint(torch.load(args.checkpoint, weights_only=True))
    scale = generator.scale
    tiles = {"fp32": args.tile_fp32, "bf16": args.tile_bf16}
    cpu = torch.device("cpu")
    models = {precision: InferencePlan(cpu, precision, tiles[precision]).prepare(generator)
              for precision in tiles}
    psnr = {"fp32": [], "bf16": []}
    seconds = {"fp32": 0.0, "bf16": 0.0}
    max_pixel_diff, worst = 0, ("", 0.0)
    for name, lr, hr in pairs(args.hr, args.lr, scale, args.limit):
        outputs = {}
        for precision, model in models.items():
            start = time.perf_counter()
            outputs[precision] = model.upscale(lr)
            seconds[precision] += time.perf_counter() - start
            psnr[precision].append(psnr_y(outputs[precision], hr, crop=scale))
        diff = int(np.abs(outputs["bf16"].astype(np.int16) - outputs["fp32"]).max())
        max_pixel_diff = max(max_pixel_diff, diff)
        gap = psnr["bf16"][-1] - psnr["fp32"][-1]
        if abs(gap) > abs(worst[1]):
            worst = (name, gap)
    count = len(psnr["fp32"])
    for precision in models:
        print(f"{precision}: mean Y-PSNR {statistics.mean(psnr[precision]):.4f} dB over {count} "
              f"images, tile {tiles[precision]}, {seconds[precision]:.1f} s")
    mean_gap = statistics.mean(psnr["bf16"]) - statistics.mean(psnr["fp32"])
    print(f"bf16 - fp32: mean {mean_gap:+.4f} dB; largest per-image {worst[1]:+.4f} dB "
          f"({worst[0]}); largest per-pixel difference {max_pixel_diff} grey levels; "
          f"bf16 {seconds['fp32'] / seconds['bf16']:.2f}x faster")


if __name__ == "__main__":
    main()
