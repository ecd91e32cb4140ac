"""Time one pretraining step: the project's `pretrain` loop vs a plain PyTorch loop.

Same default generator (16 blocks, 64 channels, x4), same fixed batch (16 random 24x24 LR /
96x96 HR), same loss (MSE on [0, 1] + perceptual_weight x VGG relu5_4 with random weights),
Adam, all in one process. Rounds alternate one step of each variant, so load from other
processes on the machine hits all variants alike; the first --warmup rounds are not counted.

  * project       `pretrain` with conf/base's phase 1 settings (channels_last on), no EMA
  * project-nchw  `pretrain` with channels_last=False: same memory format as the plain loop,
                  so project-nchw / plain is the loop machinery's own overhead
  * plain         the textbook loop: forward, loss, zero_grad, backward, step, loss.item()
  * project-bf16  `pretrain` with amp_bf16=True (fast where the CPU has AMX / AVX512-BF16)

Then the data-wait share of `pretrain` fed by make_loader(PatchDataset) over PNG tiles
written to a temporary folder (480 px HR tiles, as data_prep cuts them).

    python benchmarks/train_step.py                 # ~3 min on 2 CPU cores
    python benchmarks/train_step.py --repeats 12 --workers 0 1
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srgan_pipeline.losses import pixel_loss
from srgan_pipeline.models import Generator, VGGPerceptualLoss, hr_to_unit
from srgan_pipeline.patches import PatchDataset, TileLoaders, make_loader
from srgan_pipeline.training import phase_config, pretrain

# The paper's VGG54 weight: the VGG forward and backward run at any weight > 0, so it sets the
# arithmetic, not the cost; fixed so that figures stay comparable across conf/base changes.
WEIGHT = 1.0


class Stamps:
    """Endless iterator over one batch that records when each batch is taken: the time
    between two takes is one full loop iteration, whatever the loop does in between."""

    def __init__(self, batch):
        self.batch, self.times = batch, []

    def __iter__(self):
        return self

    def __next__(self):
        self.times.append(time.perf_counter())
        return self.batch


class ProjectLoop:
    """`pretrain`, one step per call: each call resumes from the previous call's state, so
    optimiser state is warm and the timed step is a full iteration of the real loop."""

    def __init__(self, generator, perceptual, batch, channels_last, amp_bf16=False):
        self.args, self.batch, self.state = (generator, perceptual), batch, None
        # No EMA: the plain loop has none either (conf/base averages the weights).
        self.cfg = dict(channels_last=channels_last, amp_bf16=amp_bf16, log_every=1,
                        checkpoint_every=10**6, ema_decay=None, perceptual_weight=WEIGHT)

    def step(self) -> float:
        stamps, ends = Stamps(self.batch), []
        step = self.state["step"] if self.state else 0
        cfg = phase_config("pretrain", iterations=step + 1, **self.cfg)
        generator, perceptual = self.args
        self.state = pretrain(
            generator, stamps, perceptual, cfg, start=self.state,
            on_log=lambda step, metrics: ends.append(time.perf_counter()),
        )  # fmt: skip
        # From taking the batch to the step's on_log call: one loop iteration, without the
        # resume before it and the final-state snapshot after it (once per run, not per step).
        return ends[0] - stamps.times[0]


class PlainLoop:
    """The textbook loop: forward, loss, zero_grad, backward, step, loss.item()."""

    def __init__(self, generator, perceptual, batch, weight):
        self.generator, self.perceptual, self.weight = generator, perceptual, weight
        self.opt = torch.optim.Adam(generator.parameters(), lr=1e-4, betas=(0.9, 0.999))
        self.batches = Stamps(batch)

    def step(self) -> float:
        lr, hr = next(self.batches)
        sr = hr_to_unit(self.generator(lr))
        loss = pixel_loss(sr, hr) + self.weight * self.perceptual(sr, hr)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        loss.item()
        return time.perf_counter() - self.batches.times[-1]


def write_tiles(folder: Path, n: int, size: int = 480, scale: int = 4):
    """n random-content PNG tile pairs; returns PartitionedDataset-like loader dicts."""
    rng = np.random.default_rng(0)
    hr_tiles, lr_tiles = {}, {}
    for i in range(n):
        # Smooth-ish content (upsampled noise) so PNG sizes resemble photographs, not noise.
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        hr = np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))
        lr = np.asarray(Image.fromarray(hr).resize((size // scale, size // scale), Image.BICUBIC))
        for kind, arr, tiles in (("hr", hr, hr_tiles), ("lr", lr, lr_tiles)):
            path = folder / f"{kind}_{i:03d}.png"
            Image.fromarray(arr).save(path)
            tiles[f"t{i:03d}"] = lambda p=path: np.asarray(Image.open(p).convert("RGB"))
    return hr_tiles, lr_tiles


def data_wait_share(generator, perceptual, workers: int, steps: int, tiles) -> tuple[float, float]:
    dataset = PatchDataset(TileLoaders(*tiles, scale=4), patch_size=96)
    batches = make_loader(dataset, 16, workers, seed=0, device=torch.device("cpu"))
    logs = []
    cfg = phase_config("pretrain", iterations=steps + 1, log_every=1, checkpoint_every=10**6,
                       ema_decay=None, amp_bf16=False, perceptual_weight=WEIGHT)
    pretrain(generator, batches, perceptual, cfg, on_log=lambda s, m: logs.append(m))
    logs = logs[1:]  # the first step also starts the workers
    wait = statistics.mean(m["time/data_wait_share"] for m in logs)
    step_s = statistics.mean(1 / m["time/iters_per_sec"] for m in logs)
    return wait, step_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=6, help="timed rounds (default 6)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first rounds (default 2)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[0],
        help="DataLoader workers for the data-wait runs (default: 0)",
    )
    ap.add_argument("--data-steps", type=int, default=3, help="steps per data-wait run")
    ap.add_argument("--tiles", type=int, default=8, help="PNG tiles for the data-wait runs")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("srgan_pipeline").setLevel(logging.ERROR)  # random-VGG warnings

    torch.manual_seed(0)
    base = Generator()  # the default 16-block generator
    weight = WEIGHT
    g = torch.Generator().manual_seed(1)
    bs = args.batch_size
    vgg = lambda: VGGPerceptualLoss(weights="random")  # noqa: E731 (relu5_4, the default)
    batch = (torch.rand(bs, 3, 24, 24, generator=g), torch.rand(bs, 3, 96, 96, generator=g))
    variants = {
        "project": ProjectLoop(copy.deepcopy(base), vgg(), batch, channels_last=True),
        "project-nchw": ProjectLoop(copy.deepcopy(base), vgg(), batch, channels_last=False),
        "plain": PlainLoop(copy.deepcopy(base), vgg(), batch, weight),
        "project-bf16": ProjectLoop(copy.deepcopy(base), vgg(), batch, channels_last=True,
                                    amp_bf16=True),
    }
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {bs}, "
        f"perceptual_weight {weight}, {args.warmup} warm-up + {args.repeats} rounds, "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    times: dict[str, list[float]] = {k: [] for k in variants}
    t0 = time.perf_counter()
    for r in range(args.warmup + args.repeats):  # one step of each variant per round
        for name, loop in variants.items():
            dt = loop.step()
            if r >= args.warmup:
                times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        spread = f"min {min(v):.3f}, max {max(v):.3f}, n={len(v)}"
        print(f"  {k:13s} median {med[k]:.3f} s/step  ({spread})")
    print(f"ratio project/plain          {med['project'] / med['plain']:.3f}  (<= 1.0 wanted)")
    print(f"ratio project-nchw/plain     {med['project-nchw'] / med['plain']:.3f}  (loop overhead)")
    print(f"channels_last speed-up       {med['project-nchw'] / med['project']:.3f}x")
    print(f"bf16 autocast speed-up       {med['project'] / med['project-bf16']:.3f}x")
    print(f"(timing took {time.perf_counter() - t0:.0f} s)")

    with tempfile.TemporaryDirectory() as tmp:
        tiles = write_tiles(Path(tmp), args.tiles)
        for w in args.workers:
            share, step_s = data_wait_share(*variants["project"].args, w, args.data_steps, tiles)
            print(
                f"data wait share, PatchDataset of PNG tiles, {w} workers: {share:.1%} "
                f"of {step_s:.3f} s/step"
            )


if __name__ == "__main__":
    main()
