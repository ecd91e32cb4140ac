"""Start-up of `srgan-pipeline upscale` (no Kedro session) against the inference itself.

In a scratch project holding the default generator (64 channels, 16 blocks, x4; random weights:
time does not depend on them), on one LR image of --size px: the wall time of the command a
user types (--repeats, median), and of `upscale_image` on the same image in this process (what
the command spends on the model); the difference is the start-up overhead. Also `kedro run
--pipelines=upscale` on the same image for comparison.

    python benchmarks/upscale_command.py --size 128
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srgan_pipeline.checkpoints import describe_generator
from srgan_pipeline.inference import plan_inference
from srgan_pipeline.models import Generator

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
       "KEDRO_DISABLE_TELEMETRY": "1"}


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copytree(ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
        (project / "conf" / "local").mkdir()
        (project / "src").mkdir()
        shutil.copy(ROOT / "pyproject.toml", project)
        torch.manual_seed(0)
        generator = Generator().eval()
        state = {"generator_config": describe_generator(generator),
                 "generator": generator.state_dict(), "phase": "adversarial", "step": 0}
        path = project / "data/06_models/generator_gan.pt/2026-01-01T00.00.00.000Z"
        path.mkdir(parents=True)
        torch.save(state, path / "generator_gan.pt")
        image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), np.uint8)
        (project / "in").mkdir()
        Image.fromarray(image).save(project / "in" / "photo.png")
        command = [shutil.which("srgan-pipeline"), "upscale", "in", "out"]
        cli = [timed(command, project) for _ in range(args.repeats)]
        kedro = [timed([sys.executable, "-m", "kedro", "run", "--pipelines=upscale",
                        "--params=upscale.input_dir=in"], project) for _ in range(args.repeats)]
        upscaler = plan_inference("auto", "auto", 256).prepare(generator)
        pil = Image.fromarray(image)
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            upscaler.upscale_image(pil)
            runs.append(time.perf_counter() - start)
    inference, median = statistics.median(runs), statistics.median(cli)
    print(f"{args.size}x{args.size} LR, precision {upscaler.precision}, {torch.get_num_threads()} "
          f"threads; medians of {args.repeats}")
    print(f"srgan-pipeline upscale  {median:.2f} s (runs {', '.join(f'{t:.2f}' for t in cli)})")
    print(f"kedro run upscale       {statistics.median(kedro):.2f} s")
    print(f"inference alone         {inference:.2f} s")
    print(f"start-up overhead       {median - inference:.2f} s (command minus inference)")


if __name__ == "__main__":
    main()
