"""data_prep nodes: acquire sources, normalise HR images, write the training store, make
evaluation pairs.

Outputs are returned lazily (dictionaries of callables, a ``StoreContent``) and computed while
the datasets save them, one image per task in ``data_prep.workers`` processes
(``srgan_pipeline.parallel``): memory holds a few images, not a data set, and the files are the
same for any number of workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from srgan_pipeline.archives import DEFAULT_LIMITS, ArchiveLimits
from srgan_pipeline.datasets.parallel_partitioned_dataset import ParallelPartitions
from srgan_pipeline.imaging import UnreadableImageError, imresize, load_rgb, mod_crop
from srgan_pipeline.parallel import ordered_map, resolve_workers
from srgan_pipeline.params import validate_params
from srgan_pipeline.sources import (
    NOT_AN_IMAGE,
    acquire,
    check_distinct_names,
    parse_sources,
    scan_folder,
)
from srgan_pipeline.tiles import tile_grid
from srgan_pipeline.training_store import StoreContent, TrainingStore

logger = logging.getLogger(__name__)

Loader = Callable[[], np.ndarray]


def acquire_sources(
    train_sources: dict[str, Any] | None,
    eval_sets: dict[str, Any] | None,
    raw_dir: str,
    show_progress: bool,
    archive_limits: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fetch every enabled source and list its images.

    Both groups are validated before anything is downloaded, so a missing setting on the last
    source is reported before a multi-GB download of the first one starts. An archive over
    ``archive_limits`` (default: ``archives.DEFAULT_LIMITS``) is refused before extraction.
    """
    raw_dir = validate_params("data_prep.raw_dir", raw_dir)
    show_progress = validate_params("data_prep.show_progress", show_progress)
    limits = DEFAULT_LIMITS if archive_limits is None else ArchiveLimits(
        **validate_params("data_prep.archive_limits", archive_limits).model_dump())
    groups = {
        "train": parse_sources(train_sources, "data_prep.train_sources"),
        "eval": parse_sources(eval_sets, "data_prep.eval_sets"),
    }
    if not groups["train"] and not groups["eval"]:
        raise ValueError(
            "data_prep has nothing to do: data_prep.train_sources and data_prep.eval_sets are "
            "both empty or disabled"
        )
    check_distinct_names(groups)
    manifests: dict[str, dict[str, Any]] = {"train": {}, "eval": {}}
    for group, specs in groups.items():
        for spec in specs:
            folder = acquire(spec, Path(raw_dir), progress=show_progress, limits=limits)
            images, others = scan_folder(folder, spec.param)
            logger.info("Source %s (%s): %d images in %s", spec.name, spec.kind, len(images),
                        folder)
            manifests[group][spec.name] = {"kind": spec.kind, "folder": str(folder),
                                           "images": images, "others": others}
    return manifests["train"], manifests["eval"]


def prepare_hr_image(path: Path, scale: int, max_pixels: int | None = None) -> np.ndarray:
    """Decode any image as RGB ``uint8`` and crop it to a multiple of ``scale``.

    An image over ``max_pixels`` is refused from its header, before decoding.
    """
    return mod_crop(load_rgb(path, max_pixels, "data_prep.max_pixels"), scale)


def normalise_images(
    manifest: dict[str, Any], scale: int, min_size: int, max_pixels: int,
    workers: int | None = 1, show_progress: bool = False,
) -> tuple[ParallelPartitions, dict[str, Any]]:
    """HR images keyed ``<source>/<name>``, plus a report of what was kept and skipped.

    Every image is decoded once here (in ``data_prep.workers`` processes) to decide whether it
    is usable (truncated files only fail on a full decode), then again lazily when saved: twice
    the decoding, but one bad file is a reported skip instead of a crash halfway through
    writing a data set. Two files whose names differ only in suffix or letter case
    (``x.png``, ``X.jpg``) would be one output file on a case-insensitive disk (macOS,
    Windows): the first is kept, the other a reported skip.
    """
    min_size = validate_params("data_prep.min_size", min_size, scale=scale)
    max_pixels = validate_params("data_prep.max_pixels", max_pixels)
    workers = resolve_workers(workers, "data_prep.workers")
    files = [(source, Path(entry["folder"]), relative)
             for source, entry in manifest.items() for relative in entry["images"]]
    checks = ordered_map(_check_image, [(folder / relative, scale, min_size, max_pixels)
                                        for _, folder, relative in files],
                         workers, "check images", show_progress, total=len(files))
    partitions: dict[str, Loader] = {}
    taken: dict[str, str] = {}  # case-folded key -> key
    folders = {f"{source}/{parent}".casefold() for source, _, relative in files
               for parent in PurePosixPath(relative).parents if parent.name}
    report = {source: {"folder": entry["folder"],
                       "found": len(entry["images"]) + len(entry["others"]), "kept": 0,
                       "skipped": [], "sizes": {}} for source, entry in manifest.items()}
    for source, entry in manifest.items():
        for relative in entry["others"]:
            _skip(report[source], Path(entry["folder"]) / relative, NOT_AN_IMAGE)
    for (source, folder, relative), outcome in zip(files, checks, strict=True):
        key = f"{source}/{relative.rsplit('.', 1)[0]}"
        reason = outcome if isinstance(outcome, str) else _name_clash(key, taken, folders)
        if reason:
            _skip(report[source], folder / relative, reason)
            continue
        partitions[key] = partial(prepare_hr_image, folder / relative, scale, max_pixels)
        taken[key.casefold()] = key
        report[source]["sizes"][key] = list(outcome)
    for source, entry in report.items():
        entry["kept"] = len(entry["sizes"])
        logger.info("Source %s: kept %d of %d images, skipped %d", source, entry["kept"],
                    entry["found"], len(entry["skipped"]))
    return ParallelPartitions(partitions, workers, "write HR images", show_progress), report


def _skip(entry: dict[str, Any], path: Path, reason: str) -> None:
    logger.warning("Skipped %s: %s", path, reason)
    entry["skipped"].append({"file": str(path), "reason": reason})


def _name_clash(key: str, taken: dict[str, str], folders: set[str]) -> str | None:
    """Why the output ``<key>.png`` cannot be written, or None.

    Names are compared ignoring letter case (one file on a macOS or Windows disk); an output
    that is also the folder of other outputs (``x.jpg`` beside ``x.png/``) would fail to write.
    """
    if key.casefold() in taken:
        return (f"another file of {key.split('/', 1)[0]} has the same name "
                f"({taken[key.casefold()]}, ignoring suffix and letter case); kept the first")
    if f"{key}.png".casefold() in folders:
        return (f"its output {key}.png would also be the folder of other images of this "
                "source; rename the file or the folder")
    return None


def _check_image(path: Path, scale: int, min_size: int,
                 max_pixels: int | None = None) -> tuple[int, int] | str:
    """(height, width) after mod-crop, or why the file is skipped (runs in a worker)."""
    try:
        height, width = prepare_hr_image(path, scale, max_pixels).shape[:2]
    except (UnreadableImageError, FileNotFoundError) as error:
        return str(error)
    if min(height, width) < min_size:
        return f"{width}x{height} after mod-crop is smaller than data_prep.min_size={min_size}"
    return height, width


def build_train_store(
    train_hr_images: dict[str, Loader], train_prep_report: dict[str, Any], scale: int,
    tiles: dict[str, int], workers: int | None = 1, show_progress: bool = False,
) -> StoreContent:
    """The training store's content: every kept HR image, its LR, and the tile table.

    LR is the MATLAB-bicubic downsampling of the whole image (tiles then cut it at
    ``tile.lr(scale)``, so tile borders see the same neighbourhood as the full-image LR, with
    no mirrored padding inside). The work runs while the dataset saves, in ``workers`` processes.
    """
    tiling = validate_params("data_prep.tiles", tiles, scale=scale)
    size, stride = tiling.size, tiling.stride
    images: dict[str, tuple[Loader, tuple[int, int]]] = {}
    for source in train_prep_report.values():
        for key, (height, width) in sorted(source["sizes"].items()):
            if key not in train_hr_images:
                raise KeyError(f"{key} is in the data_prep report but not in train_hr_images; "
                               "re-run the normalise_train_images node")
            images[key] = (train_hr_images[key], (height, width))
    content = StoreContent(images, scale, size, stride,
                           resolve_workers(workers, "data_prep.workers"), show_progress)
    logger.info("Training store: %d images, %d tiles (%dpx, stride %d)", len(images),
                sum(len(tile_grid(h, w, size, stride)) for _, (h, w) in images.values()),
                size, stride)
    return content


def make_eval_pairs(
    eval_hr_images: dict[str, Loader], scale: int, workers: int | None = 1,
    show_progress: bool = False,
) -> ParallelPartitions:
    """``<set>/HR/<name>`` and ``<set>/LR_x<scale>/<name>``, the layout SR benchmarks ship in."""
    pairs: dict[str, Loader] = {}
    for key, load in eval_hr_images.items():
        eval_set, name = key.split("/", 1)
        pairs[f"{eval_set}/HR/{name}"] = load
        pairs[f"{eval_set}/LR_x{scale}/{name}"] = partial(_downsample, load, scale)
    return ParallelPartitions(pairs, resolve_workers(workers, "data_prep.workers"),
                              "write evaluation pairs", show_progress)


def _downsample(load: Loader, scale: int) -> np.ndarray:
    return imresize(load(), 1 / scale)


def summarise_data_prep(
    train_prep_report: dict[str, Any],
    eval_prep_report: dict[str, Any],
    train_store: TrainingStore,
    eval_pairs: dict[str, Loader],
) -> dict[str, Any]:
    """One report of the whole run: per source, images kept and skipped (with reasons), tiles."""
    tiles_per_source = train_store.tiles_per_source()
    summary: dict[str, Any] = {"train": {}, "eval": {}}
    for group, report in (("train", train_prep_report), ("eval", eval_prep_report)):
        for source, entry in report.items():
            summary[group][source] = {
                "folder": entry["folder"], "found": entry["found"], "kept": entry["kept"],
                "skipped": entry["skipped"],
            }
            if group == "train":
                summary[group][source]["tiles"] = tiles_per_source.get(source, 0)
            else:
                summary[group][source]["pairs"] = sum(
                    1 for key in eval_pairs if key.startswith(f"{source}/HR/")
                )
    skipped = [item for group in summary.values() for entry in group.values()
               for item in entry["skipped"]]
    lines = [f"  {group}/{source}: kept {e['kept']}/{e['found']}, "
             + (f"{e['tiles']} tiles" if group == "train" else f"{e['pairs']} pairs")
             for group in ("train", "eval") for source, e in summary[group].items()]
    logger.info("data_prep summary:\n%s", "\n".join(lines))
    if skipped:
        logger.warning("data_prep skipped %d file(s):\n%s", len(skipped),
                       "\n".join(f"  {s['file']}: {s['reason']}" for s in skipped))
    summary["skipped_total"] = len(skipped)
    return summary
