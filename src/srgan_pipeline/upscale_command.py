"""``srgan-pipeline upscale INPUT OUTPUT``: the upscale pipeline's node without a Kedro session.

The same node (``pipelines.upscale.nodes.upscale_folder``), settings (conf/, merged as ``kedro
run`` merges them, plus the options given) and datasets (the catalog's checkpoints, its
``upscaled_images`` writer pointed at OUTPUT, its ``upscale_report``) as ``kedro run
--pipelines=upscale``: the same pixels and the same bad-input report. What it leaves out is
the session (hooks, the MLflow run), which costs seconds before the first image. Heavy imports
(torch, kedro's catalog) wait until the arguments are parsed, so ``--help`` and a bad option
answer at once. Exit status: 0 when every input was upscaled, 1 when any was skipped or failed,
2 for bad arguments or settings (nothing upscaled).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

PROG = "srgan-pipeline upscale"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Upscale an image, or every image of a folder, with a trained "
        "generator of this project (run it in the project's folder).")
    parser.add_argument("input", type=Path, help="an image file, or a folder (subfolders kept)")
    parser.add_argument("output", type=Path,
                        help="the output PNG for a file; the output folder for a folder")
    parser.add_argument("--model", help="srgan (default), srresnet, or an MLflow model URI "
                        "(models:/srgan_pipeline_generator@champion)")
    parser.add_argument("--precision", help="auto (default), fp32 or bf16")
    parser.add_argument("--runtime", help="torch (default) or openvino")
    parser.add_argument("--tile", type=int, help="LR tile side (default: upscale.tile)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps")
    parser.add_argument("--env", default=None, help="the conf/ environment merged into base "
                        "(default: local, as kedro run)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.input.exists():
        print(f"{PROG}: error: INPUT {args.input} does not exist: give an image file or a "
              f"folder of images", file=sys.stderr)
        return 2
    # the node's progress and skips, as kedro run shows them (its INFO lines)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("kedro").setLevel(logging.WARNING)  # its "Loading data from ..." lines
    # Kedro's own use of an OmegaConf API deprecated upstream: nothing a user can act on
    warnings.filterwarnings("ignore", "register_new_resolver", UserWarning)
    try:
        settings, catalog = _project(args)
        report = _upscale(args, settings, catalog)
    except (ValueError, OSError) as error:  # settings, folders, checkpoints: nothing written
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(f"{len(report['upscaled'])} upscaled, {len(report['skipped'])} skipped, into "
          f"{args.output} ({report['model']}, {report['precision']}, {report['runtime']})")
    return 1 if report["skipped"] else 0


def _project(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """conf/'s ``upscale`` block with the options given, and the catalog's entries."""
    from kedro.config import OmegaConfigLoader

    from srgan_pipeline.conf_loading import CONFIG_LOADER_ARGS

    conf = Path.cwd() / "conf"
    if not (conf / "base").is_dir():
        raise ValueError(f"no conf/base in {Path.cwd()}: run {PROG} in the project's folder")
    loader = OmegaConfigLoader(str(conf), env=args.env, **CONFIG_LOADER_ARGS)
    settings = dict(loader["parameters"]["upscale"])
    given = {"model": args.model, "precision": args.precision, "runtime": args.runtime,
             "device": args.device}
    settings |= {key: value for key, value in given.items() if value is not None}
    if args.tile is not None:
        settings["tile"] = {"fp32": args.tile, "bf16": args.tile}
    from srgan_pipeline.params import validate_params  # no torch: bad options answer at once

    validate_params("upscale", {**settings, "input_dir": str(args.input)})
    return settings, loader["catalog"]


def _upscale(args: argparse.Namespace, settings: dict[str, Any], catalog: dict[str, Any]
             ) -> dict[str, Any]:
    from kedro.io import DataCatalog

    from srgan_pipeline.pipelines.upscale.nodes import upscale_folder

    names = ("generator_pretrained", "generator_gan", "upscale_report")
    datasets = DataCatalog.from_config({name: catalog[name] for name in names})
    is_file = args.input.is_file()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.input
        if is_file:  # the node reads a folder: one holding (a link to) this file alone
            folder = Path(tmp) / "input"
            folder.mkdir()
            (folder / args.input.name).symlink_to(args.input.resolve())
        outputs, report = upscale_folder(datasets.load("generator_pretrained"),
                                         datasets.load("generator_gan"),
                                         {**settings, "input_dir": str(folder)})
        report["input_dir"] = str(args.input)
        _save(outputs, catalog["upscaled_images"], args.output, is_file)
    datasets.save("upscale_report", report)
    return report


def _save(outputs: dict[str, Any], entry: dict[str, Any], output: Path, is_file: bool) -> None:
    """The catalog's ``upscaled_images`` writer at ``output``, one image at a time (each is
    upscaled as it is saved), with a progress bar for a folder."""
    from kedro.io import DataCatalog
    from tqdm import tqdm

    if is_file:
        entry = {"type": entry["dataset"]["type"], "filepath": str(output)}
        (key, image), = outputs.items()
        DataCatalog.from_config({"out": entry}).save("out", image())
        return
    bar = tqdm(total=len(outputs), unit="image", desc="upscale", disable=None)

    def counted(upscale):
        def run():
            image = upscale()
            bar.update()
            return image
        return run

    with bar:
        writer = DataCatalog.from_config({"out": {**entry, "path": str(output)}})
        writer.save("out", {key: counted(upscale) for key, upscale in outputs.items()})
