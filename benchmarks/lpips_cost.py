"""What the LPIPS column costs: LPIPS of every Urban100 image, fp32 and bf16, on this machine.

Each HR image of ``../shared/datasets/Urban100/HR`` against its bicubic x4 upscaling (MATLAB's
imresize of the LR in ``LR_bicubic_X4``, the evaluation's bicubic row), with the border crop of
the tables (4 px), one image at a time as the evaluation scores them. Prints the seconds of
each precision (upscaling excluded) and the bf16 difference of the mean LPIPS.

The backbone is the ImageNet one (default; from the torch hub cache or downloaded), or with
``--weights random`` (said in the output) a seeded random one: the same network, so the same
cost, but then the bf16 difference is that of a random network, not of LPIPS.

    python benchmarks/lpips_cost.py [--weights imagenet|random] [--net alex|vgg] [--images N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srgan_pipeline.imaging import imresize
from srgan_pipeline.lpips_metric import LPIPSMetric

URBAN100 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "Urban100"


def pairs(limit: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    hr_paths = sorted((URBAN100 / "HR").glob("*.png"))[:limit]
    out = []
    for path in hr_paths:
        hr = np.asarray(Image.open(path).convert("RGB"))
        lr = np.asarray(Image.open(URBAN100 / "LR_bicubic_X4" / path.name).convert("RGB"))
        sr = imresize(lr, 4)[:hr.shape[0], :hr.shape[1]]
        out.append((sr[4:-4, 4:-4], hr[:sr.shape[0], :sr.shape[1]][4:-4, 4:-4]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", choices=("imagenet", "random"), default="imagenet")
    parser.add_argument("--net", choices=("alex", "vgg"), default="alex")
    parser.add_argument("--images", type=int, default=None, help="the first N (default: all)")
    args = parser.parse_args()
    metric = LPIPSMetric(args.net, args.weights)
    images = pairs(args.images)
    print(f"{len(images)} Urban100 images, LPIPS-{args.net}, {args.weights} backbone, "
          f"{torch.get_num_threads()} threads")
    means = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        metric(*images[0], dtype=dtype)  # warm-up: oneDNN's first call builds its kernels
        started = time.perf_counter()
        scores = [metric(sr, hr, dtype=dtype) for sr, hr in images]
        seconds = time.perf_counter() - started
        means[name] = float(np.mean(scores))
        print(f"{name}: {seconds:.1f} s ({seconds / len(images):.3f} s/image), "
              f"mean LPIPS {means[name]:.5f}")
    print(f"bf16 - fp32 difference of the mean: {means['bf16'] - means['fp32']:+.5f}")


if __name__ == "__main__":
    main()
