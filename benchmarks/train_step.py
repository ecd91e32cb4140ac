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

--device cuda (or auto on a CUDA machine): phase 1 (`pretrain`, batch --batch-size) and phase 2
(`train_adversarial`, default Critic, conf/base's n_critic, same VGG), each as eager fp32, eager
bf16, and torch.compile(mode="reduce-overhead") fp32 and bf16 (the phases' `compile` setting;
skipped, and said so, where phase_config has no such setting). Per variant: median and mean ms
per step (phase 2: per generator iteration, its n_critic critic steps included), TFLOP/s (FLOPs
counted once per phase by FlopCounterMode over one eager fp32 step) and the time relative to
the eager step of the same precision. Then the data-wait share of `pretrain` fed by the training
store through make_loader with conf/base's loader workers.

The training step reads no values back on CUDA, so a host clock at each batch take measures
how fast the host queues work, not the GPU. All timed steps of a variant run in ONE loop call;
the batch iterator synchronises only at the two takes that bracket them (mean = their wall
time / steps), and records a CUDA event at each timed iteration's first take (event gaps: each
iteration's GPU-clock time, for the median; an event adds no sync). Logging and checkpoints are
set beyond the run's end, so nothing else syncs. The batch sits on the GPU already: these
figures are the step's; the data path is the data-wait run's.

    python benchmarks/train_step.py --device cuda   # ~2 min on one H200 (eager variants)
    python benchmarks/train_step.py --device cuda --steps 200 --adv-steps 40
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from srgan_pipeline import training_store
from srgan_pipeline.imaging import load_rgb, mod_crop
from srgan_pipeline.losses import pixel_loss
from srgan_pipeline.models import Critic, Generator, VGGPerceptualLoss, hr_to_unit
from srgan_pipeline.params import ParameterError
from srgan_pipeline.patches import PatchDataset, TileLoaders, make_loader
from srgan_pipeline.training import phase_config, pretrain, train_adversarial
from srgan_pipeline.training.config import CONF_BASE
from srgan_pipeline.training_store import StoreContent, TrainingStore

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


def data_wait_share(generator, perceptual, batches, steps: int, log_every: int = 1,
                    amp_bf16: bool = False, settings: dict | None = None) -> tuple[float, float]:
    """Data-wait share and s/step of `pretrain` over `batches`, from its logged windows; the
    first window is left out (it also starts the loader workers and, on CUDA, picks cuDNN's
    convolutions)."""
    logs = []
    cfg = phase_config("pretrain", iterations=steps + log_every, log_every=log_every,
                       checkpoint_every=10**6, ema_decay=None, amp_bf16=amp_bf16,
                       perceptual_weight=WEIGHT, **(settings or {}))
    pretrain(generator, batches, perceptual, cfg, on_log=lambda s, m: logs.append(m))
    logs = logs[1:]
    # Weighted by each window's time: the share of the whole timed stretch spent waiting.
    seconds = [log_every / m["time/iters_per_sec"] for m in logs]
    wait = sum(m["time/data_wait_share"] * t for m, t in zip(logs, seconds, strict=True))
    return wait / sum(seconds), sum(seconds) / (log_every * len(logs))


def print_data_wait(source: str, workers: int, share: float, step_s: float) -> None:
    per_step = f"{step_s:.3f} s/step" if step_s >= 0.1 else f"{step_s * 1000:.1f} ms/step"
    print(f"data wait share, {source}, {workers} workers: {share:.1%} of {per_step}")


def cpu_main(args) -> None:
    """Four variants of one phase-1 step, alternating, then data wait over PNG tiles."""
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
        dataset = PatchDataset(TileLoaders(*tiles, scale=4), patch_size=96)
        for w in args.workers:
            batches = make_loader(dataset, 16, w, seed=0, device=torch.device("cpu"))
            share, step_s = data_wait_share(*variants["project"].args, batches, args.data_steps)
            print_data_wait("PatchDataset of PNG tiles", w, share, step_s)


# ---- --device cuda ---------------------------------------------------------------------------

# (name, torch.compile mode or None for eager, bf16 autocast)
CUDA_VARIANTS = [("eager fp32", None, False), ("eager bf16", None, True),
                 ("reduce-overhead fp32", "reduce-overhead", False),
                 ("reduce-overhead bf16", "reduce-overhead", True)]
PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mark(device: torch.device):
    """A point in time on the device's own clock: a recorded CUDA event (no sync), or the host
    clock where the device runs synchronously with the host (CPU)."""
    if device.type != "cuda":
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def seconds_between(a, b) -> float:
    return a.elapsed_time(b) / 1000 if isinstance(a, torch.cuda.Event) else b - a


class BracketedTakes:
    """Endless iterator over one batch that times `steps` loop iterations after `warmup`
    untimed ones, inside one loop call (see the module's docstring): synchronises at the two
    takes that bracket the timed iterations and marks the first take of each."""

    def __init__(self, batch, device: torch.device, takes_per_step: int, warmup: int,
                 steps: int):
        self.batch, self.device, self.every, self.steps = batch, device, takes_per_step, steps
        self.first, self.last = warmup * takes_per_step, (warmup + steps) * takes_per_step
        self.taken, self.wall, self.marks = 0, [], []

    def __iter__(self):
        return self

    def __next__(self):
        k = self.taken
        if self.first <= k <= self.last and (k - self.first) % self.every == 0:
            if k in (self.first, self.last):
                synchronize(self.device)
                self.wall.append(time.perf_counter())
            self.marks.append(mark(self.device))
        self.taken += 1
        return self.batch

    def step_seconds(self) -> tuple[list[float], float]:
        """(each timed iteration's seconds, their mean from the two synchronised takes)."""
        if len(self.wall) != 2:
            raise RuntimeError(f"the loop took {self.taken} batches, fewer than the "
                               f"{self.last + 1} that bracket the timed steps: give it "
                               "warmup + steps + 1 iterations")
        synchronize(self.device)  # the events' times are known once the GPU has passed them
        each = [seconds_between(a, b) for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return each, (self.wall[1] - self.wall[0]) / self.steps


def compile_unsupported() -> str | None:
    """None where the phases take the `compile` setting; else phase_config's refusal."""
    try:
        phase_config("pretrain", compile="reduce-overhead")
    except ParameterError as error:
        if "compile" not in str(error):
            raise
        return str(error).splitlines()[0]
    return None


@dataclasses.dataclass
class CudaPhase:
    """One training phase as the CUDA benchmark drives it."""

    label: str
    phase: str  # phase_config's name
    takes_per_step: int  # batches one iteration takes (phase 2: n_critic + 1)
    build: Callable[[], tuple]  # fresh trained modules on the device, same initial weights
    train: Callable  # (modules, batches, cfg) -> final state
    settings: dict  # phase settings beyond the variant's

    def config(self, iterations: int, amp_bf16: bool, compile_mode: str | None,
               has_compile: bool):
        # Eager says compile: null explicitly where the setting exists, whatever conf/base sets.
        extra = {"compile": compile_mode} if has_compile else {}
        return phase_config(self.phase, iterations=iterations, log_every=10**6,
                            checkpoint_every=10**6, amp_bf16=amp_bf16, **self.settings, **extra)


def cuda_phases(device: torch.device, perceptual) -> list[CudaPhase]:
    torch.manual_seed(0)
    base, critic = Generator(), Critic()  # the defaults, as conf/base builds them

    def generator():
        return (copy.deepcopy(base).to(device),)

    def gan():
        return copy.deepcopy(base).to(device), copy.deepcopy(critic).to(device)

    n_critic = phase_config("adversarial").n_critic
    return [
        CudaPhase("phase 1 (pretrain), one step", "pretrain", 1, generator,
                  lambda m, b, cfg: pretrain(m[0], b, perceptual, cfg),
                  {"perceptual_weight": WEIGHT, "ema_decay": None}),
        CudaPhase(f"phase 2 (train_adversarial), one generator iteration = {n_critic} critic "
                  "steps + 1 generator step", "adversarial", n_critic + 1, gan,
                  lambda m, b, cfg: train_adversarial(m[0], m[1], b, perceptual, cfg),
                  {"perceptual_weight": WEIGHT}),
    ]


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker: every FLOP counts towards "Global"."""

    parents = frozenset({"Global"})

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


class TotalFlopCounter(FlopCounterMode):
    """FlopCounterMode without its per-module table: the module tracker's backward hooks make
    torch.autograd.grad fail ("A leaf node was passed to _will_engine_execute_node", pytorch
    issue 131753), and phase 2's gradient penalty calls it. The total is all we print."""

    def __init__(self):
        super().__init__(display=False)
        self.mod_tracker = _GlobalOnly()


def flops_per_step(phase: CudaPhase, batch, has_compile: bool) -> int:
    """FLOPs of one eager fp32 iteration, counted by torch's FlopCounterMode (matrix products
    and convolutions, forward and backward, the gradient penalty's double backward too)."""
    cfg = phase.config(1, False, None, has_compile)
    with TotalFlopCounter() as counter:
        phase.train(phase.build(), itertools.repeat(batch), cfg)
    return counter.get_total_flops()


def time_variant(phase: CudaPhase, batch, device, warmup: int, steps: int, amp_bf16: bool,
                 compile_mode: str | None, has_compile: bool) -> tuple[list[float], float]:
    takes = BracketedTakes(batch, device, phase.takes_per_step, warmup, steps)
    # + 1: the take that ends the last timed iteration is the next iteration's first.
    phase.train(phase.build(), takes,
                phase.config(warmup + steps + 1, amp_bf16, compile_mode, has_compile))
    return takes.step_seconds()


def cuda_phase_report(phase: CudaPhase, batch, device, warmup: int, steps: int,
                      no_compile: str | None) -> dict[str, float]:
    """Print the phase's variants; their mean seconds per iteration."""
    flops = flops_per_step(phase, batch, no_compile is None)
    print(f"\n{phase.label}: {flops / 1e12:.3f} TFLOP per iteration (FlopCounterMode over one "
          f"eager fp32 iteration); {warmup} warm-up + {steps} timed iterations per variant",
          flush=True)
    means: dict[str, float] = {}
    for name, mode, bf16 in CUDA_VARIANTS:
        if mode is not None and no_compile is not None:
            print(f"  {name:<21} skipped: no `compile` phase setting in this tree", flush=True)
            continue
        each, mean = time_variant(phase, batch, device, warmup, steps, bf16, mode,
                                  no_compile is None)
        means[name] = mean
        eager = "eager bf16" if bf16 else "eager fp32"
        ratio = ("(the reference)" if mode is None
                 else f"time / {eager} {mean / means[eager]:.3f}")
        print(f"  {name:<21} median {statistics.median(each) * 1e3:7.2f} ms  mean "
              f"{mean * 1e3:7.2f} ms  {flops / mean / 1e12:6.1f} TFLOP/s  {ratio}", flush=True)
        torch.compiler.reset()  # each variant compiles its own modules afresh
    print(f"  bf16 / fp32, eager: {means['eager bf16'] / means['eager fp32']:.3f} "
          "(<= 1 wanted)")
    return means


def photo_store(folder: Path) -> TrainingStore:
    """A training store of scikit-image's bundled photographs, tiled as conf/base's data_prep."""
    from skimage import data as skdata

    tiles = conf_base("parameters_data_prep.yml")["data_prep"]["tiles"]
    images = {}
    for name in PHOTOS:
        path = Path(skdata.data_dir) / name
        images[path.stem] = (partial(hr_photo, path), hr_photo(path).shape[:2])
    training_store.write_store(folder, StoreContent(images, 4, tiles["size"], tiles["stride"]))
    return TrainingStore(folder)


def hr_photo(path: Path) -> np.ndarray:
    return mod_crop(load_rgb(path), 4)


def conf_base(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF_BASE / name))


def cuda_main(args, device: torch.device) -> None:
    name = torch.cuda.get_device_name(device)
    bs = args.batch_size
    no_compile = compile_unsupported()
    print(f"{name}, torch {torch.__version__}, batch {bs}, 24 px LR / 96 px HR, default "
          f"generator, MSE + {WEIGHT} x VGG54 (random weights); targets (issue 24, H200): phase "
          "1 <= 8 ms at batch 16, bf16 no slower than fp32, data wait < 2 % with the store",
          flush=True)
    if no_compile:
        print(f"compiled variants skipped: {no_compile}", flush=True)
    perceptual = VGGPerceptualLoss(weights="random").to(device)
    g = torch.Generator().manual_seed(1)
    memory_format = torch.channels_last  # conf/base's: the feed's conversion is then a no-op
    batch = tuple(torch.rand(bs, 3, side, side, generator=g).to(device, memory_format=memory_format)
                  for side in (24, 96))
    warmup = args.warmup if args.warmup is not None else 20
    for phase, steps in zip(cuda_phases(device, perceptual), (args.steps, args.adv_steps),
                            strict=True):
        cuda_phase_report(phase, batch, device, warmup, steps, no_compile)

    workers = args.workers if args.workers is not None else [
        conf_base("parameters_train_gan.yml")["train_gan"]["num_workers"]]
    steps = args.data_steps or 200
    if not workers:  # --workers with no counts: no data-wait runs
        return
    with tempfile.TemporaryDirectory() as tmp:
        dataset = PatchDataset(photo_store(Path(tmp) / "store"), patch_size=96)
        # The fastest step asks the most of the loader: reduce-overhead bf16 where it exists.
        fastest = {"compile": "reduce-overhead"} if no_compile is None else {}
        step_kind = "reduce-overhead bf16" if fastest else "eager bf16"
        print(f"\ndata wait: {len(dataset)} store tiles of {len(PHOTOS)} photographs, "
              f"{steps} steps ({step_kind}) after one window of 20", flush=True)
        for w in workers:
            torch.manual_seed(0)
            generator = Generator().to(device)
            batches = make_loader(dataset, bs, w, seed=0, device=device)
            share, step_s = data_wait_share(generator, perceptual, batches, steps, 20,
                                            amp_bf16=True, settings=fastest)
            torch.compiler.reset()
            del batches  # stops its workers
            print_data_wait("training store", w, share, step_s)


def pick(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device here (run with --device cpu)")
    return torch.device(requested)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                    help="cpu (default): the CPU comparison above; cuda: the CUDA variants; "
                         "auto: cuda where torch sees one")
    ap.add_argument("--repeats", type=int, default=6, help="cpu: timed rounds (default 6)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed first rounds (cpu, default 2) or iterations (cuda, default 20)")
    ap.add_argument("--steps", type=int, default=100,
                    help="cuda: timed phase-1 steps per variant (default 100)")
    ap.add_argument("--adv-steps", type=int, default=20,
                    help="cuda: timed phase-2 generator iterations per variant (default 20)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=None,
        help="DataLoader workers for the data-wait runs (default: cpu 0, cuda conf/base's "
             "train_gan.num_workers)",
    )
    ap.add_argument("--data-steps", type=int, default=None,
                    help="steps per data-wait run (default: cpu 3, cuda 200)")
    ap.add_argument("--tiles", type=int, default=8, help="cpu: PNG tiles for the data-wait runs")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = ap.parse_args()
    device = pick(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("srgan_pipeline").setLevel(logging.ERROR)  # random-VGG warnings
    if device.type == "cuda":
        cuda_main(args, device)
        return
    args.warmup = 2 if args.warmup is None else args.warmup
    args.workers = [0] if args.workers is None else args.workers
    args.data_steps = args.data_steps or 3
    cpu_main(args)


if __name__ == "__main__":
    main()
