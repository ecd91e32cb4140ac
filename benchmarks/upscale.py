"""Time whole-image inference: the project's `upscale` vs a plain PyTorch forward.

Same default generator (64 channels, 16 blocks, x4, random weights, eval mode), same 256x256
LR input, in one process. Rounds alternate one call of each variant, so load from other
processes on the machine hits all variants alike; the first --warmup rounds are not counted,
and the median of --repeats rounds is reported.

  * plain    the textbook call: uint8 HWC -> float NCHW tensor (default contiguous format),
             ``generator(x)`` under ``torch.no_grad()``, -> uint8 HWC. One untiled forward.
  * project  ``upscale(generator, lr)`` with its defaults: channels_last, inference_mode,
             tile 256 / overlap = receptive radius (40), hr_to_unit + quantize. A 256x256
             input is one tile: this is the per-call inference_model copy, NHWC and the
             rewritten graph, with no tiling overhead.
  * project nchw  the same with channels_last=False: project nchw / project is what NHWC
             adds, plain / project nchw what the rest (BatchNorm folding, tail conv moved
             before the last PixelShuffle: see inference_model) adds.
  * project bf16  ``upscale(..., precision="bf16")``: bf16 weights and activations (BatchNorm
             folded first); on a CPU with AMX/AVX512-BF16 oneDNN runs its convs on the bf16
             units. Compared with every --bf16-tiles tile size (default 128 and 256).
  * --tiles N [N ...] adds ``upscale(..., tile=N)`` variants (e.g. 128: 4 tiles with 40 px of
             recomputed context each), to compare tile sizes.
  * --openvino adds ``InferencePlan(cpu, P, N, "openvino").prepare(generator).upscale(lr)``:
             the same inference copy compiled by OpenVINO for the CPU (``runtime: openvino``; needs
             ``pip install -e ".[openvino]"``), bf16 at every --openvino-tiles tile size
             (default 128 and 256) and fp32 at 256. Compiled once before timing (the
             conversion time is printed), as the upscale and evaluation nodes do per run.

Each line prints the median time, GFLOP/s (4.44 MFLOP per LR pixel of the default generator,
multiply-adds counted as 2), the speed-up over plain float32 and the largest difference from
the plain output in grey levels.

--large N instead compares the rate on an NxN LR image with the rate on a 256x256 one (no
tile halos: one tile), in useful GFLOP/s (LR pixels x 4.44 MFLOP, recomputed context not
counted), in --precision with --tile: the project's upscale (a generator in its two stages,
inference/tiling.py) and the same with the whole model per tile and the receptive radius of
context (``--whole-model``'s path, as before the stages). Rounds alternate the three.

--peak-memory instead upscales one 2000x2000 LR image (-> 8000x8000, 192 MB of uint8 output)
with the defaults and prints the time and the process's peak RSS: tiles bound the memory,
not the image size.

    python benchmarks/upscale.py                  # ~1 min on 2 CPU cores
    python benchmarks/upscale.py --tiles 128 512
    python benchmarks/upscale.py --large 1024 --precision bf16 --repeats 2   # ~3 min
    python benchmarks/upscale.py --peak-memory    # ~4-5 min on 2 CPU cores
    python benchmarks/upscale.py --peak-memory --whole-model   # as before the two stages
    python benchmarks/upscale.py --peak-memory --precision bf16
    python benchmarks/upscale.py --openvino
    python benchmarks/upscale.py --peak-memory --precision bf16 --runtime openvino
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import resource
import statistics
import time

import numpy as np
import torch

from srgan_pipeline.inference import DEFAULT_TILE, InferencePlan, upscale
from srgan_pipeline.inference.tiling import features_tile
from srgan_pipeline.models import Generator

CPU = torch.device("cpu")

GFLOP_PER_LR_PIXEL = 4.44e-3  # default generator: 4.44 MFLOP per LR pixel


def make_lr(size: int, seed: int = 0) -> np.ndarray:
    """Smooth colour waves plus noise (content does not change the speed of dense convs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    waves = np.stack([128 + 90 * np.sin(xx / (9 + c)) * np.cos(yy / 7) for c in range(3)], -1)
    return np.clip(waves + rng.normal(0, 10, waves.shape), 0, 255).astype(np.uint8)


def plain_forward(generator: Generator, lr: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().contiguous() / 255
    with torch.no_grad():
        y = generator(x)
    return ((y[0] + 1) / 2 * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def speed(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    generator = Generator().eval()
    plain_model = copy.deepcopy(generator)  # stays NCHW: upscale converts its model in place
    lr = make_lr(args.size)

    variants = {"plain": lambda: plain_forward(plain_model, lr), "project": lambda: upscale(
        generator, lr)}  # fmt: skip
    variants["project nchw"] = lambda: upscale(generator, lr, channels_last=False)
    for tile in args.tiles:
        variants[f"project tile={tile}"] = lambda tile=tile: upscale(generator, lr, tile=tile)
    for tile in args.bf16_tiles:
        variants[f"project bf16 tile={tile}"] = lambda tile=tile: upscale(
            generator, lr, tile=tile, precision="bf16")
    if args.openvino:
        compiled = {}
        for precision in ("bf16", "fp32"):
            start = time.perf_counter()
            compiled[precision] = InferencePlan(CPU, precision, 256, "openvino").prepare(generator)
            print(f"OpenVINO {precision}: converted and compiled in "
                  f"{time.perf_counter() - start:.1f} s, runs {compiled[precision].precision}")
        for tile in args.openvino_tiles:
            variants[f"openvino bf16 tile={tile}"] = lambda tile=tile: dataclasses.replace(
                compiled["bf16"], tile=tile).upscale(lr)
        variants["openvino fp32 tile=256"] = lambda: compiled["fp32"].upscale(lr)

    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs = {}
    for round_ in range(args.warmup + args.repeats):
        for name, call in variants.items():
            start = time.perf_counter()
            outputs[name] = call()
            elapsed = time.perf_counter() - start
            if round_ >= args.warmup:
                times[name].append(elapsed)

    print(f"default Generator (64 ch, 16 blocks, x4), {args.size}x{args.size} LR -> "
          f"{4 * args.size}x{4 * args.size}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} after {args.warmup} warm-up")  # fmt: skip
    plain = statistics.median(times["plain"])
    gflop = GFLOP_PER_LR_PIXEL * args.size**2
    for name, samples in times.items():
        median = statistics.median(samples)
        diff = np.abs(outputs[name].astype(np.int16) - outputs["plain"]).max()
        print(f"  {name:<22} {median:7.3f} s  {gflop / median:6.0f} GFLOP/s   "
              f"speed-up plain/this {plain / median:5.2f}x   "
              f"max |diff| vs plain {diff} grey levels   "
              f"(all: {', '.join(f'{t:.2f}' for t in samples)})")  # fmt: skip


def large(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    prepared = InferencePlan(CPU, args.precision, args.tile).prepare(Generator().eval())
    small, big = make_lr(256), make_lr(args.large)
    variants = {"256x256": (small, None), f"{args.large} stages": (big, None),
                f"{args.large} whole model": (big, prepared.receptive_radius)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.warmup + args.repeats):
        for name, (lr, overlap) in variants.items():
            # the small image three times a round: a second's call is what load hits hardest
            for _ in range(3 if lr is small else 1):
                start = time.perf_counter()
                prepared.upscale(lr, overlap=overlap)
                if round_ >= args.warmup:
                    times[name].append(time.perf_counter() - start)
    features = features_tile(args.tile, args.precision)
    print(f"default Generator, {args.precision}, tile {args.tile} (features tiles {features}), "
          f"{torch.get_num_threads()} threads, median of {args.repeats} after {args.warmup} "
          "warm-up")
    rate = {name: GFLOP_PER_LR_PIXEL * lr.shape[0] * lr.shape[1] / statistics.median(times[name])
            for name, (lr, _) in variants.items()}
    for name in variants:
        print(f"  {name:<20} {statistics.median(times[name]):7.2f} s  {rate[name]:5.0f} useful "
              f"GFLOP/s  {rate[name] / rate['256x256']:.2f} of the 256x256 rate  "
              f"(all: {', '.join(f'{t:.2f}' for t in times[name])})")


def peak_memory(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    generator = Generator().eval()
    lr = make_lr(args.peak_size)
    prepared = InferencePlan(CPU, args.precision, args.tile, args.runtime).prepare(generator)
    before = peak_rss_mib()
    start = time.perf_counter()
    out = prepared.upscale(lr, overlap=prepared.receptive_radius if args.whole_model else None)
    elapsed = time.perf_counter() - start
    how = "whole model per tile" if args.whole_model or not prepared.stage_radii else "stages"
    print(f"upscale {args.peak_size}x{args.peak_size} -> {out.shape[1]}x{out.shape[0]} "
          f"({args.runtime} {args.precision}, tile {args.tile}, {how}, "
          f"{torch.get_num_threads()} threads): "
          f"{elapsed:.1f} s; peak RSS {peak_rss_mib():.0f} MiB (peak before the call {before:.0f} "
          f"MiB; the uint8 output alone is {out.nbytes / 2**20:.0f} MiB)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="LR side (default 256)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiles", type=int, nargs="*", default=[])
    parser.add_argument("--bf16-tiles", type=int, nargs="*", default=[128, 256])
    parser.add_argument("--openvino", action="store_true",
                        help="add OpenVINO variants (needs the openvino extra)")
    parser.add_argument("--openvino-tiles", type=int, nargs="*", default=[128, 256])
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="for --peak-memory and --large")
    parser.add_argument("--runtime", choices=["torch", "openvino"], default="torch",
                        help="for --peak-memory")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help="for --peak-memory and --large")
    parser.add_argument("--peak-memory", action="store_true")
    parser.add_argument("--peak-size", type=int, default=2000)
    parser.add_argument("--whole-model", action="store_true",
                        help="for --peak-memory: each tile through the whole model")
    parser.add_argument("--large", type=int, default=None, metavar="N",
                        help="the rate on NxN LR against 256x256 (--precision, --tile)")
    args = parser.parse_args()
    (peak_memory if args.peak_memory else large if args.large else speed)(args)


if __name__ == "__main__":
    main()
