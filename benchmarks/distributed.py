"""Data-parallel training speed: samples/s of a phase-1 (pretraining) step, 1 vs N processes.

Each process trains the default generator (16 blocks, 64 channels, x4) with `pretrain` on a
few fixed random batches (24 px LR / 96 px HR, batch 16 per process), so the figures are the
training step and its all-reduce, not the loader. A step's time is the time between two takes
of a batch (as benchmarks/train_step.py); the first --warmup steps are not counted; samples/s =
per-process batch x processes / median step time of rank 0 (the all-reduce makes every rank
wait for the slowest, so rank 0's step is the world's).

  --part cpu   1 process with all of this machine's threads vs 2 processes over gloo with
               half each (threads per rank = cores / processes, as the training nodes set
               them); MSE only (no VGG). On a 2-core machine both use the same two cores, so
               the ratio is the cost of data parallelism there (all-reduce, smaller
               intra-op parallelism), not a speed-up: more processes pay on more cores/GPUs.
  --part gpu   needs CUDA. (a) one GPU, nproc_per_node 1: this checkout's loop vs the loop
               of --baseline-rev (default: just before data-parallel training), each in its
               own process, alternating rounds; prints new / old step time (issue 13 asks
               <= 1.02); skipped where the tree is not a git checkout (no history).
               (b) samples/s for 1, 2, 4, ... processes up to every GPU, through
               training.distributed.launch (nccl); with the paper's step (MSE + 0.01 VGG54,
               random VGG weights: the same compute as ImageNet's).

    python benchmarks/distributed.py --part cpu              # ~1.5 min on 2 CPU cores
    python benchmarks/distributed.py --part gpu    # on a CUDA machine ((a) needs a git checkout)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "e9e10c6"  # main just before data-parallel training (issue 13) was added


class Stamps:
    """Endless iterator over a few batches that records when each one is taken."""

    def __init__(self, batches):
        self.batches, self.times, self.n = batches, [], 0

    def __iter__(self):
        return self

    def __next__(self):
        self.times.append(time.perf_counter())
        self.n += 1
        return self.batches[self.n % len(self.batches)]


def step_times(device: str, steps: int, warmup: int, batch: int, perceptual_weight: float,
               world=None) -> list[float]:
    """Seconds per step of `pretrain` (the code importable as srgan_pipeline here)."""
    from srgan_pipeline.models import Generator, VGGPerceptualLoss
    from srgan_pipeline.training import phase_config, pretrain

    torch.manual_seed(0)
    rank = world.rank if world is not None else 0
    generator = Generator(scale=4).to(device)
    vgg = VGGPerceptualLoss(layer="relu5_4", weights="random") if perceptual_weight else None
    cfg = phase_config("pretrain", iterations=warmup + steps, batch_size=batch,
                       perceptual_weight=perceptual_weight, log_every=10**6,
                       checkpoint_every=10**6, ema_decay=None, max_minutes=None,
                       amp_bf16=False)  # float32 in every version (main's default became auto)
    rng = torch.Generator().manual_seed(rank)
    stamps = Stamps([(torch.rand(batch, 3, 24, 24, generator=rng),
                      torch.rand(batch, 3, 96, 96, generator=rng)) for _ in range(4)])
    extra = {"world": world} if world is not None else {}
    pretrain(generator, stamps, vgg, cfg, **extra)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    times = stamps.times + [time.perf_counter()]
    return [b - a for a, b in zip(times, times[1:], strict=False)][warmup:]


def _rank_times(world, steps, warmup, batch, perceptual_weight):
    return step_times(str(world.device), steps, warmup, batch, perceptual_weight, world)


def distributed_times(nproc: int, device: torch.device, steps, warmup, batch,
                      perceptual_weight) -> list[float]:
    from srgan_pipeline.params import validate_params
    from srgan_pipeline.training.distributed import launch

    spread = validate_params("train_gan.distributed", {
        "nproc_per_node": nproc, "nnodes": 1, "node_rank": 0, "master_addr": "127.0.0.1",
        "master_port": None, "sync_batchnorm": False})
    return launch(spread, device, _rank_times, steps, warmup, batch, perceptual_weight)[0]


def report(label: str, times: list[float], batch: int, nproc: int) -> float:
    median = statistics.median(times)
    rate = batch * nproc / median
    print(f"{label:<44} step {median * 1000:8.1f} ms  {rate:8.1f} samples/s  "
          f"({len(times)} steps)", flush=True)
    return rate


def part_cpu(args) -> None:
    threads = torch.get_num_threads()
    print(f"CPU, {os.cpu_count()} cores, torch threads {threads}; batch {args.batch} per "
          f"process, 96 px, default generator, MSE only", flush=True)
    one = report("1 process", step_times("cpu", args.steps, args.warmup, args.batch, 0.0),
                 args.batch, 1)
    two = report(f"2 processes (gloo, {max(1, threads // 2)} thread(s) each)",
                 distributed_times(2, torch.device("cpu"), args.steps, args.warmup,
                                   args.batch, 0.0), args.batch, 2)
    print(f"2 processes / 1 process: {two / one:.2f}x samples/s")


def _baseline_src(rev: str, into: Path) -> Path:
    """src/ and conf/ of ``rev`` (phase_config reads conf/base beside src)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src", "conf"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _child_times(src: Path, args, device: str = "cuda") -> list[float]:
    """One round in a fresh process importing srgan_pipeline from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, __file__, "--child", device, "--steps",
                           str(args.steps), "--warmup", str(args.warmup), "--batch",
                           str(args.batch)],
                          env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_gpu_baseline(args) -> None:
    """(a): this checkout's loop vs --baseline-rev's, one GPU, alternating rounds."""
    with tempfile.TemporaryDirectory() as tmp:
        old_src, new_src = _baseline_src(args.baseline_rev, Path(tmp)), ROOT / "src"
        old, new = [], []
        for _ in range(args.rounds):  # alternating: drifts of the machine hit both alike
            old += _child_times(old_src, args)
            new += _child_times(new_src, args)
    old_rate = report(f"1 GPU, {args.baseline_rev} (before)", old, args.batch, 1)
    new_rate = report("1 GPU, this checkout, nproc_per_node 1", new, args.batch, 1)
    print(f"step time new / old: {old_rate / new_rate:.3f} (issue 13: <= 1.02)", flush=True)


def part_gpu(args) -> None:
    if not torch.cuda.is_available():
        sys.exit("--part gpu needs CUDA")
    gpus = torch.cuda.device_count()
    print(f"{torch.cuda.get_device_name(0)} x {gpus}, torch {torch.__version__}; batch "
          f"{args.batch} per process, 96 px, MSE + 0.01 VGG54", flush=True)
    if (ROOT / ".git").exists():
        part_gpu_baseline(args)
    else:  # e.g. a copy of the tree on a lent GPU machine: no history to take the old loop from
        print(f"(a) skipped: {ROOT} is not a git checkout, so --baseline-rev "
              f"{args.baseline_rev}'s loop cannot be extracted", flush=True)
    base = None
    for nproc in sorted({1, *(2**k for k in range(1, 10) if 2**k < gpus), gpus}):
        rate = report(f"{nproc} process(es), nccl", distributed_times(
            nproc, torch.device("cuda"), args.steps, args.warmup, args.batch, 0.01),
            args.batch, nproc)
        base = base or rate
        print(f"  scaling vs 1 process: {rate / base:.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="gpu: alternating old/new rounds")
    parser.add_argument("--baseline-rev", default=BEFORE,
                        help="the git revision whose loop is the 'old' one (default: before "
                             "data-parallel training)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the device of one timed round
    args = parser.parse_args()
    if args.child:
        print(json.dumps(step_times(args.child, args.steps, args.warmup, args.batch, 0.01)))
        return
    gpu = args.part == "gpu"
    args.steps = args.steps or (50 if gpu else 4)
    args.warmup = args.warmup or (10 if gpu else 2)
    (part_gpu if gpu else part_cpu)(args)


if __name__ == "__main__":
    main()
