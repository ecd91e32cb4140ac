"""Phase-1 options at equal step counts, on any device: where a GPU makes seeds cheap.

`benchmarks/convergence.py` answers the real question (what a CPU reaches in N minutes)
through Kedro, at ~20 minutes a run. Options that leave the cost of a step unchanged (the
residual init scale, the pixel loss, the lr schedule, EMA) compare the same at equal steps,
and on a GPU such a run takes about a minute, so each option gets several seeds. Every run
also keeps an EMA of the weights (it does not change training), so each row reports the raw
and the averaged weights.

Needs only torch, numpy, Pillow and scikit-image (no Kedro), so a bare GPU machine runs it
from the source tree:

    PYTHONPATH=src python benchmarks/convergence_steps.py \\
        --train ../shared/datasets/SunHays80/HR --eval-hr ../shared/datasets/Urban100/HR \\
        --eval-lr ../shared/datasets/Urban100/LR_bicubic_X4 --images 20 --steps 2900 \\
        --seeds 0 1 --variants recipe init_default l1 constant_lr
    python benchmarks/convergence_steps.py --report   # the results file as a Markdown table

Training pairs are whole images with their MATLAB-bicubic x4 LR (random crops, as the
pipeline's tiles give); scores are Y-PSNR with a 4-pixel crop, as the evaluation pipeline.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from results_csv import append_row

from srgan_pipeline.checkpoints import build_generator
from srgan_pipeline.devices import pick_device
from srgan_pipeline.imaging import imresize, load_rgb, mod_crop
from srgan_pipeline.inference import upscale
from srgan_pipeline.metrics import bicubic_upscale, psnr_y
from srgan_pipeline.patches import PatchDataset, TileLoaders, make_loader
from srgan_pipeline.training import phase_config, pretrain

# The 15-minute CPU recipe (bf16, batch 32 of 64 px, init x0.1, cosine) and one change each.
RECIPE = {"amp_bf16": True, "batch_size": 32, "patch_size": 64, "lr": 2e-4,
          "lr_schedule": "cosine", "warmup_steps": 50, "pixel_loss": "mse"}
VARIANTS = {
    "recipe": ({"residual_init_scale": 0.1}, {}),
    "init_default": ({"residual_init_scale": None}, {}),
    "l1": ({"residual_init_scale": 0.1}, {"pixel_loss": "l1"}),
    "constant_lr": ({"residual_init_scale": 0.1}, {"lr_schedule": "constant", "warmup_steps": 0}),
    "lr5e-4": ({"residual_init_scale": 0.1}, {"lr": 5e-4}),
    # conf/quickstart's phase 1: the input skip, constant lr 2e-4, no warm-up
    "quickstart": ({"residual_init_scale": 0.1, "input_skip": True},
                   {"lr_schedule": "constant", "warmup_steps": 0}),
}
FIELDS = ["variant", "seed", "steps", "device", "psnr_y", "psnr_y_ema", "bicubic_psnr_y",
          "gain_db", "gain_ema_db", "train_s", "finished_at"]


def images(folder: Path, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        raise SystemExit(f"no .png/.jpg images in {folder}")
    return [(p.stem, load_rgb(p)) for p in paths[:limit]]


def score(generator, pairs) -> float:
    return float(np.mean([psnr_y(upscale(generator, lr), hr) for hr, lr in pairs]))


def report(results: Path) -> None:
    """Each (variant, steps, device): mean over seeds, raw and EMA weights, per-seed gains."""
    import pandas as pd  # only here: training needs no pandas

    rows = pd.read_csv(results)
    print("| variant | steps | device | seeds | Y-PSNR raw | vs bicubic | per seed "
          "| Y-PSNR EMA | vs bicubic |")
    print("| --- | ---: | --- | --- | ---: | ---: | --- | ---: | ---: |")
    for (variant, steps, device), g in rows.groupby(["variant", "steps", "device"], sort=False):
        print(f"| {variant} | {steps} | {device} | {', '.join(map(str, g['seed']))} "
              f"| {g['psnr_y'].mean():.2f} | {g['gain_db'].mean():+.2f} "
              f"| {', '.join(f'{x:+.2f}' for x in g['gain_db'])} "
              f"| {g['psnr_y_ema'].mean():.2f} | {g['gain_ema_db'].mean():+.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", action="store_true", help="print the results and exit")
    parser.add_argument("--train", type=Path, help="folder of HR photographs")
    parser.add_argument("--eval-hr", type=Path)
    parser.add_argument("--eval-lr", type=Path, help="x4 LR of --eval-hr")
    parser.add_argument("--images", type=int, default=20, help="evaluation images (sorted)")
    parser.add_argument("--steps", type=int, default=2900)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--eval-every", type=int, default=None,
                        help="also score the raw weights every N steps (a row each): with a "
                             "constant lr, the rows of one run are those of shorter runs")
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--results", type=Path,
                        default=Path(__file__).parent / "results" / "convergence_steps.csv")
    args = parser.parse_args()
    if args.report:
        return report(args.results)
    if not (args.train and args.eval_hr and args.eval_lr):
        parser.error("--train, --eval-hr and --eval-lr are required (or --report)")

    device = pick_device(args.device)
    hr_tiles, lr_tiles = {}, {}
    for name, hr in images(args.train):
        hr = mod_crop(hr, 4)
        lr = imresize(hr, 0.25)
        hr_tiles[name], lr_tiles[name] = (lambda a=hr: a), (lambda a=lr: a)
    pairs = [(mod_crop(hr, 4), lr) for (_, hr), (_, lr)
             in zip(images(args.eval_hr, args.images), images(args.eval_lr, args.images),
                    strict=True)]
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else device.type
    bicubic = float(np.mean([psnr_y(bicubic_upscale(lr, 4), hr) for hr, lr in pairs]))
    print(f"{len(hr_tiles)} training images, {len(pairs)} evaluation images, "
          f"bicubic {bicubic:.2f} dB, device {device}", flush=True)

    for seed in args.seeds:  # seed-major: a run cut short still has each variant once
        for variant in args.variants:
            generator_options, overrides = VARIANTS[variant]
            cfg = phase_config("pretrain", **{**RECIPE, **overrides}, iterations=args.steps,
                               perceptual_weight=0.0, seed=seed, ema_decay=args.ema_decay,
                               log_every=max(args.steps // 10, 1),
                               checkpoint_every=args.steps)
            dataset = PatchDataset(TileLoaders(hr_tiles, lr_tiles, 4, cache=True), cfg.patch_size)
            batches = make_loader(dataset, cfg.batch_size, args.num_workers, seed, device)
            generator = build_generator({"scale": 4, **generator_options}, seed=seed)
            started = time.perf_counter()
            every = args.eval_every or args.steps
            cfg = cfg.model_copy(update={"checkpoint_every": every})
            scorer = copy.deepcopy(generator)

            def score_at(state, variant=variant, seed=seed, started=started, scorer=scorer):
                scorer.load_state_dict(state["generator"])
                raw = score(scorer.to(device), pairs)
                print(f"{variant:14s} seed {seed}  step {state['step']}  raw {raw:.2f} "
                      f"({raw - bicubic:+.2f})", flush=True)
                append_row(args.results, FIELDS, {
                    "variant": variant, "seed": seed, "steps": state["step"],
                    "device": device_name, "psnr_y": round(raw, 3), "psnr_y_ema": "",
                    "bicubic_psnr_y": round(bicubic, 3), "gain_db": round(raw - bicubic, 3),
                    "gain_ema_db": "", "train_s": round(time.perf_counter() - started, 1),
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})

            state = pretrain(generator.to(device), batches, None, cfg,
                             on_checkpoint=score_at if args.eval_every else None)
            train_s = time.perf_counter() - started
            raw = score(generator, pairs)
            generator.load_state_dict(state["generator_ema"])
            ema = score(generator, pairs)
            row = {"variant": variant, "seed": seed, "steps": state["step"],
                   "device": device_name,
                   "psnr_y": round(raw, 3), "psnr_y_ema": round(ema, 3),
                   "bicubic_psnr_y": round(bicubic, 3), "gain_db": round(raw - bicubic, 3),
                   "gain_ema_db": round(ema - bicubic, 3), "train_s": round(train_s, 1),
                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            append_row(args.results, FIELDS, row)
            print(f"{variant:14s} seed {seed}  {row['steps']} steps  "
                  f"raw {raw:.2f} ({raw - bicubic:+.2f})  EMA {ema:.2f} "
                  f"({ema - bicubic:+.2f})  {train_s:.0f} s", flush=True)


if __name__ == "__main__":
    main()
