"""CUDA check and timings: the GPU paths that the CPU-only test suite cannot run.

    PYTHONPATH=src python benchmarks/cuda_check.py     # ~1 minute on one H100 / H200
    python benchmarks/cuda_check.py --device cpu --skip-timings    # dry run of the checks

Needs only torch, torchvision, numpy, Pillow, scikit-image and tqdm (no Kedro or MLflow), so
it runs on a bare GPU machine with the source tree. Exits 1 at the first failed check:

  1. pick_device("auto") picks CUDA;
  2. pretrain on CUDA in fp32 and with bf16 autocast (channels_last, VGG term, pinned-memory
     loader): finite losses that fall on a real photograph;
  3. resume: 2 steps + 2 resumed steps give the losses of 4 uninterrupted steps;
  4. train_adversarial (WGAN-GP, bf16) from the CUDA-pretrained state;
  5. the CUDA checkpoint loads on CPU, and upscale on CUDA equals upscale on CPU to within
     one grey level;
  6. precision: ``amp_bf16: auto`` and ``precision: auto`` resolve to bf16 where the GPU
     supports it, and bf16 inference on CUDA stays within a few grey levels of fp32;
then prints the median pretraining step time of the default generator (batch 16, 96 px,
MSE + VGG54) in fp32 and bf16, and the time to upscale a 256x256 LR image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from skimage import data

from srgan_pipeline.checkpoints import build_generator, load_generator_state
from srgan_pipeline.devices import (
    bf16_is_fast,
    pick_device,
    resolve_precision,
    use_bf16_autocast,
)
from srgan_pipeline.imaging import imresize
from srgan_pipeline.inference import upscale
from srgan_pipeline.models import Critic, VGGPerceptualLoss
from srgan_pipeline.patches import PatchDataset, TileLoaders, make_loader
from srgan_pipeline.training import phase_config, pretrain, train_adversarial

SMALL = {"scale": 4, "channels": 32, "num_blocks": 4}


def check(ok: bool, what: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        sys.exit(1)


def batches(device, batch_size=16, patch_size=96, start_batch=0):
    hr = data.astronaut()[:512, :512]  # bundled with scikit-image: no download
    lr = imresize(hr, 0.25)
    dataset = PatchDataset(TileLoaders({"astronaut": lambda: hr}, {"astronaut": lambda: lr},
                                       scale=4, cache=True), patch_size=patch_size)
    return make_loader(dataset, batch_size, 0, 0, device, start_batch=start_batch)


def losses_of(generator, perceptual, cfg, device, start=None, start_batch=0):
    seen = {}
    state = pretrain(generator, batches(device, start_batch=start_batch), perceptual, cfg,
                     start=start, on_log=lambda step, m: seen.update({step: m["pretrain/total"]}))
    return state, seen


def pretrain_cfg(**overrides):
    """conf/base's phase 1 without its weight average (these checks compare raw weights)."""
    return phase_config("pretrain", **{"ema_decay": None, "checkpoint_every": 10**6, **overrides})


def step_time(device, amp_bf16, perceptual, batch_size=16, steps=40):
    generator = build_generator({"scale": 4}, seed=0).to(device)
    rates, waits = [], []
    cfg = pretrain_cfg(iterations=steps, perceptual_weight=1.0, amp_bf16=amp_bf16, log_every=5,
                       checkpoint_every=10**6)
    pretrain(generator, batches(device, batch_size=batch_size), perceptual, cfg,
             on_log=lambda step, m: (rates.append(m["time/iters_per_sec"]),
                                     waits.append(m["time/data_wait_share"])))
    # The first window holds cuDNN's autotuning.
    return 1 / statistics.median(rates[1:]), statistics.median(waits[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto (must find CUDA) or cpu")
    parser.add_argument("--skip-timings", action="store_true")
    args = parser.parse_args()
    device = pick_device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    check(device.type == "cuda" or args.device == "cpu", f"pick_device -> {device} ({name})")
    perceptual = VGGPerceptualLoss(layer="relu2_2", weights="random").to(device)

    for amp in (False, True):
        cfg = pretrain_cfg(iterations=30, lr=1e-3, perceptual_weight=0.1, amp_bf16=amp,
                           log_every=5)
        generator = build_generator(SMALL, seed=0).to(device)
        _, seen = losses_of(generator, perceptual, cfg, device)
        values = list(seen.values())
        check(all(np.isfinite(values)) and values[-1] < values[0],
              f"pretrain on {device.type}, bf16={amp}: "
              f"total loss {values[0]:.4f} -> {values[-1]:.4f}")

    cfg4 = pretrain_cfg(iterations=4, perceptual_weight=0.1, amp_bf16=True, log_every=1)
    _, whole = losses_of(build_generator(SMALL, seed=0).to(device), perceptual, cfg4, device)
    first, _ = losses_of(build_generator(SMALL, seed=0).to(device), perceptual,
                         cfg4.model_copy(update={"iterations": 2}), device)
    _, resumed = losses_of(build_generator(SMALL).to(device), perceptual, cfg4, device,
                           start=first, start_batch=first["batches"])
    check(all(abs(whole[s] - resumed[s]) <= 1e-3 * abs(whole[s]) for s in (3, 4)),
          f"resume on {device.type}: steps 3-4 {[round(whole[s], 5) for s in (3, 4)]} "
          f"vs {[round(resumed[s], 5) for s in (3, 4)]}")

    generator = build_generator(SMALL, seed=0).to(device)
    pretrained, _ = losses_of(generator, perceptual, pretrain_cfg(iterations=20, lr=1e-3,
                              perceptual_weight=0.1, amp_bf16=True, log_every=5), device)
    critic = Critic(base_channels=16).to(device)
    adv_cfg = phase_config("adversarial", iterations=3, batch_size=4, n_critic=2, amp_bf16=True,
                           perceptual_weight=0.1, log_every=1, lr_schedule="constant",
                           lr_milestones=[])
    seen = {}
    state = train_adversarial(generator, critic, batches(device, batch_size=4), perceptual,
                              adv_cfg, start=pretrained, on_log=lambda s, m: seen.update(m))
    check(state["step"] == 3 and all(np.isfinite(list(seen.values()))),
          f"train_adversarial on {device.type} (bf16, WGAN-GP): {dict(sorted(seen.items())[:4])}")

    on_cpu = build_generator(state["generator_config"])
    load_generator_state(on_cpu, state)  # the checkpoint holds CPU copies
    lr_image = imresize(data.coffee(), 0.25)
    sr_here = upscale(generator, lr_image, tile=64)
    sr_cpu = upscale(on_cpu, lr_image, tile=64, device="cpu")
    diff = np.abs(sr_here.astype(int) - sr_cpu.astype(int))
    check(diff.max() <= 1, f"upscale {device.type} vs CPU: max difference {diff.max()} "
          f"grey level(s), {(diff > 0).mean():.2%} of values differ")

    auto = use_bf16_autocast("auto", device)
    check(auto == bf16_is_fast(device) and resolve_precision("auto", device) ==
          ("bf16" if auto else "fp32"),
          f"auto precision on {device.type}: amp_bf16 -> {auto}, "
          f"precision -> {resolve_precision('auto', device)}")
    sr_bf16 = upscale(generator, lr_image, tile=64, precision="bf16")
    gap = np.abs(sr_bf16.astype(int) - sr_here.astype(int))
    check(gap.max() <= 8, f"bf16 upscale on {device.type} vs fp32: max difference {gap.max()} "
          f"grey level(s), mean {gap.mean():.3f}")

    if args.skip_timings:
        return
    print("\ntimings on", name)
    vgg54 = VGGPerceptualLoss(layer="relu5_4", weights="random").to(device)
    # Batch 16 from a loader in the training process (num_workers 0) and batch 64 show how
    # much of a step is waiting for crops rather than GPU work.
    for batch_size in (16, 64):
        for amp in (False, True):
            seconds, wait = step_time(device, amp, vgg54, batch_size)
            print(f"  pretrain step, default generator, batch {batch_size}, 96 px, MSE + VGG54, "
                  f"{'bf16' if amp else 'fp32'}: {seconds * 1000:.1f} ms "
                  f"({batch_size / seconds:.0f} patches/s, data wait {wait:.0%})")
    full = build_generator({"scale": 4}, seed=0).to(device)
    image = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    upscale(full, image)
    t = time.perf_counter()
    for _ in range(5):
        upscale(full, image)  # returns a uint8 array on the host: the GPU work is done
    print(f"  upscale 256x256 -> 1024x1024, default generator: "
          f"{(time.perf_counter() - t) / 5 * 1000:.1f} ms")
    upscale(full, image, precision="bf16")
    t = time.perf_counter()
    for _ in range(5):
        upscale(full, image, precision="bf16")
    print(f"  the same in bf16: {(time.perf_counter() - t) / 5 * 1000:.1f} ms")


if __name__ == "__main__":
    main()
