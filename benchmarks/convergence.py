"""How good is phase 1 after a fixed wall-clock budget? An ablation at equal time.

For each variant (a set of `--params` overrides of conf/convergence) and seed:
  1. `kedro run --env=convergence --pipelines=train_gan --to-nodes=pretrain_generator` with
     `train_gan.pretrain.max_minutes` = the budget (SunHays80 tiles, default 16-block generator);
  2. `kedro run --env=convergence --pipelines=evaluation` (bicubic and srresnet on Urban100);
and appends one row per run to a CSV (default benchmarks/results/convergence.csv), so a killed
session loses at most the run in progress. data_prep runs once per work folder.

    python benchmarks/convergence.py --minutes 3 --images 20 --variants default init0.1
    python benchmarks/convergence.py --minutes 15 --images 100 --seeds 0 1 --variants init0.1
    python benchmarks/convergence.py --report     # the CSV as Markdown tables, seeds averaged

Runs happen in a scratch copy of the project (--workdir), not in the project's data/.
Needs ../shared/datasets (SunHays80 and Urban100). Not a test: it takes minutes per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
from results_csv import append_row

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared" / "datasets"
P = "train_gan.pretrain"
G = "train_gan.generator"
VARIANTS = {
    "default": [],  # the yardstick: PyTorch init, Adam 2e-4 constant, MSE, batch 16
    "init0.1": [f"{G}.residual_init_scale=0.1"],
    "init0.1_cosine": [f"{G}.residual_init_scale=0.1", f"{P}.lr_schedule=cosine",
                       f"{P}.warmup_steps=50"],
    "init0.1_lr5e-4_cosine": [f"{G}.residual_init_scale=0.1", f"{P}.lr=0.0005",
                              f"{P}.lr_schedule=cosine", f"{P}.warmup_steps=50"],
    "init0.1_l1": [f"{G}.residual_init_scale=0.1", f"{P}.pixel_loss=l1"],
    "init0.1_ema": [f"{G}.residual_init_scale=0.1", f"{P}.ema_decay=0.99"],  # ~100-step window
    "init0.1_b8_p128": [f"{G}.residual_init_scale=0.1", f"{P}.batch_size=8",
                        f"{P}.patch_size=128"],
    "input_skip": [f"{G}.input_skip=true"],
    "input_skip_init0.1_cosine": [f"{G}.input_skip=true", f"{G}.residual_init_scale=0.1",
                                  f"{P}.lr_schedule=cosine", f"{P}.warmup_steps=50"],
    # bf16 autocast: 3.4x faster steps on a CPU with AMX, so more steps in the same time.
    "bf16": [f"{P}.amp_bf16=true"],
    "bf16_init0.1": [f"{P}.amp_bf16=true", f"{G}.residual_init_scale=0.1"],
    "bf16_init0.1_lr5e-4": [f"{P}.amp_bf16=true", f"{G}.residual_init_scale=0.1", f"{P}.lr=0.0005"],
    "bf16_init0.1_cosine": [f"{P}.amp_bf16=true", f"{G}.residual_init_scale=0.1",
                            f"{P}.lr_schedule=cosine", f"{P}.warmup_steps=50"],
    "bf16_init0.1_l1": [f"{P}.amp_bf16=true", f"{G}.residual_init_scale=0.1", f"{P}.pixel_loss=l1"],
    "bf16_init0.1_ema": [f"{P}.amp_bf16=true", f"{G}.residual_init_scale=0.1",
                         f"{P}.ema_decay=0.99"],
    "bf16_init0.1_b32_p64": [f"{P}.amp_bf16=true", f"{G}.residual_init_scale=0.1",
                             f"{P}.batch_size=32", f"{P}.patch_size=64"],
    "bf16_init0.1_b8_p128": [f"{P}.amp_bf16=true", f"{G}.residual_init_scale=0.1",
                             f"{P}.batch_size=8", f"{P}.patch_size=128"],
    "bf16_input_skip": [f"{P}.amp_bf16=true", f"{G}.input_skip=true"],
    "bf16_init0.1_b32_p64_cosine": [f"{P}.amp_bf16=true", f"{G}.residual_init_scale=0.1",
                                    f"{P}.batch_size=32", f"{P}.patch_size=64",
                                    f"{P}.lr_schedule=cosine", f"{P}.warmup_steps=50"],
    # EMA with BatchNorm statistics recomputed for the averaged weights (the init0.1_ema rows
    # above predate that and averaged the statistics too); 0.999: a ~1000-step window.
    "bf16_init0.1_b32_p64_cosine_ema": [f"{P}.amp_bf16=true", f"{G}.residual_init_scale=0.1",
                                        f"{P}.batch_size=32", f"{P}.patch_size=64",
                                        f"{P}.lr_schedule=cosine", f"{P}.warmup_steps=50",
                                        f"{P}.ema_decay=0.999"],
    "bf16_init0.1_b32_p64_input_skip": [f"{P}.amp_bf16=true", f"{G}.residual_init_scale=0.1",
                                        f"{P}.batch_size=32", f"{P}.patch_size=64",
                                        f"{G}.input_skip=true"],
}
FIELDS = ["variant", "seed", "minutes", "images", "steps", "stopped_because", "psnr_y", "ssim_y",
          "bicubic_psnr_y", "bicubic_ssim_y", "gain_db", "psnr_y_first20", "bicubic_first20",
          "gain_first20_db", "train_s", "params", "finished_at"]
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
         "KEDRO_DISABLE_TELEMETRY": "1"}


def kedro(workdir: Path, *args: str) -> None:
    command = ["kedro", "run", "--env=convergence", *args]
    done = subprocess.run(command, cwd=workdir, env={**os.environ, **QUIET},
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def scratch_project(workdir: Path) -> None:
    """conf/ and pyproject.toml of this project in workdir; ../shared is linked beside it."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "conf", ignore_errors=True)
    shutil.copytree(PROJECT / "conf", workdir / "conf", ignore=shutil.ignore_patterns("local"))
    (workdir / "conf" / "local").mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT / name, workdir / name)
    (workdir / "src").mkdir(exist_ok=True)  # the package is imported from its installed place
    shared = workdir.parent / "shared"
    if not shared.exists():
        shared.symlink_to(SHARED.parent)


def latest(folder: Path) -> Path:
    return sorted(p for p in folder.iterdir() if p.is_dir())[-1] / folder.name


def run_variant(workdir: Path, variant: str, seed: int, minutes: float, images: int) -> dict:
    params = [*VARIANTS[variant], f"{P}.max_minutes={minutes}", f"{P}.seed={seed}"]
    started = time.perf_counter()
    kedro(workdir, "--pipelines=train_gan", "--to-nodes=pretrain_generator",
          f"--params={','.join(params)}")
    train_s = time.perf_counter() - started
    kedro(workdir, "--pipelines=evaluation",
          f"--params=evaluation.images_per_set={images},evaluation.models=bicubic srresnet")
    reporting = workdir / "data" / "08_reporting"
    per_image = pd.read_csv(latest(reporting / "evaluation_per_image.csv"))
    per_image = per_image[per_image["set"] == "urban100"].sort_values("image")
    mean = per_image.groupby("model")[["psnr_y", "ssim_y"]].mean()
    first20 = per_image[per_image.image.isin(sorted(per_image.image.unique())[:20])]
    mean20 = first20.groupby("model")["psnr_y"].mean()
    import torch  # only here: the rest of the script needs no torch

    state = torch.load(latest(workdir / "data" / "06_models" / "generator_pretrained.pt"),
                       weights_only=True)
    return {
        "variant": variant, "seed": seed, "minutes": minutes, "images": images,
        "steps": state["step"], "stopped_because": state["stopped_because"],
        "psnr_y": round(mean.loc["srresnet", "psnr_y"], 3),
        "ssim_y": round(mean.loc["srresnet", "ssim_y"], 4),
        "bicubic_psnr_y": round(mean.loc["bicubic", "psnr_y"], 3),
        "bicubic_ssim_y": round(mean.loc["bicubic", "ssim_y"], 4),
        "gain_db": round(mean.loc["srresnet", "psnr_y"] - mean.loc["bicubic", "psnr_y"], 3),
        "psnr_y_first20": round(mean20["srresnet"], 3),
        "bicubic_first20": round(mean20["bicubic"], 3),
        "gain_first20_db": round(mean20["srresnet"] - mean20["bicubic"], 3),
        "train_s": round(train_s, 1), "params": json.dumps(VARIANTS[variant]),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def report(results: Path) -> None:
    """One Markdown table per (budget, images scored): each variant's mean over its seeds."""
    rows = pd.read_csv(results)
    for (minutes, images), runs in rows.groupby(["minutes", "images"], sort=True):
        bicubic = runs["bicubic_psnr_y"].iloc[0]
        print(f"\n{minutes:g} minutes, {images} Urban100 images (bicubic {bicubic:.2f} dB)\n")
        print("| variant | seeds | steps | Y-PSNR (dB) | SSIM | vs bicubic | per seed |")
        print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
        for variant, group in runs.groupby("variant", sort=False):
            gains = ", ".join(f"{g:+.2f}" for g in group["gain_db"])
            print(f"| {variant} | {', '.join(map(str, group['seed']))} "
                  f"| {group['steps'].mean():.0f} | {group['psnr_y'].mean():.2f} "
                  f"| {group['ssim_y'].mean():.3f} | {group['gain_db'].mean():+.2f} | {gains} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="phase 1 wall-clock budget")
    parser.add_argument("--images", type=int, default=100, help="Urban100 images to score")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/srgan_convergence/project"))
    parser.add_argument("--results", type=Path,
                        default=PROJECT / "benchmarks" / "results" / "convergence.csv")
    parser.add_argument("--report", action="store_true",
                        help="print the results file as tables and exit")
    args = parser.parse_args()
    if args.report:
        return report(args.results)
    for needed in ("SunHays80/HR", "Urban100/HR"):
        if not (SHARED / needed).is_dir():
            raise SystemExit(f"{SHARED / needed} is absent: this benchmark needs it")

    scratch_project(args.workdir)
    if not (args.workdir / "data" / "05_model_input" / "eval" / "urban100").exists():
        kedro(args.workdir, "--pipelines=data_prep")
    for variant in args.variants:
        for seed in args.seeds:
            row = run_variant(args.workdir, variant, seed, args.minutes, args.images)
            append_row(args.results, FIELDS, row)
            print(f"{variant:28s} seed {seed}  {row['steps']:5d} steps  "
                  f"{row['psnr_y']:.2f} dB / {row['ssim_y']:.4f}  "
                  f"bicubic {row['bicubic_psnr_y']:.2f}  {row['gain_db']:+.2f} dB  "
                  f"(first 20: {row['gain_first20_db']:+.2f})", flush=True)


if __name__ == "__main__":
    main()
