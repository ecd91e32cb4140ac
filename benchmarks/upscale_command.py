"""Start-up of `srgan-pipeline upscale` (no Kedro session) against the inference itself.

In a scratch project holding the default generator (64 channels, 16 blocks, x4; random weights:
time does not depend on them), on one LR image of --size px: the wall and CPU time (user + sys)
of the command a user types (--repeats, median), and of `upscale_image` on the same image in
this process (what the command spends on the model); the difference is the start-up overhead.
Also `kedro run --pipelines=upscale` on the same image, and `python -c "import torch"` (the
part of any start-up no code here can avoid), for comparison. CPU time is the steadier figure
when other processes share the cores.

    python benchmarks/upscale_command.py --size 128
"""

from __future__ import annotations

import argparse
import os
import resource
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


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=ENV, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


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
        torch_import = [timed([sys.executable, "-c", "import torch"], project)
                        for _ in range(args.repeats)]
        upscaler = plan_inference("auto", "auto", 256).prepare(generator)
        pil = Image.fromarray(image)
        runs = []
        for _ in range(args.repeats):
            start, cpu = time.perf_counter(), time.process_time()
            upscaler.upscale_image(pil)
            runs.append((time.perf_counter() - start, time.process_time() - cpu))
    (wall, cpu), (inf_wall, inf_cpu) = medians(cli), medians(runs)
    print(f"{args.size}x{args.size} LR, precision {upscaler.precision}, {torch.get_num_threads()} "
          f"threads; medians of {args.repeats}; seconds wall / CPU")
    print(f"srgan-pipeline upscale  {wall:.2f} / {cpu:.2f}")
    print("kedro run upscale       {:.2f} / {:.2f}".format(*medians(kedro)))
    print("python -c 'import torch' {:.2f} / {:.2f}".format(*medians(torch_import)))
    print(f"inference alone         {inf_wall:.2f} / {inf_cpu:.2f}")
    print(f"start-up overhead       {wall - inf_wall:.2f} / {cpu - inf_cpu:.2f} "
          f"(command minus inference)")


if __name__ == "__main__":
    main()
