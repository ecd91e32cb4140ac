"""data_prep nodes: acquire sources, normalise HR images, cut tiles, make evaluation pairs.

Partitioned outputs are returned as dictionaries of callables, which kedro-datasets'
``PartitionedDataset`` calls one at a time while saving, so memory holds one image, not a data set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from srgan_pipeline.imaging import UnreadableImageError, imresize, load_rgb, mod_crop
from srgan_pipeline.params import validate_params
from srgan_pipeline.sources import acquire, check_distinct_names, list_images, parse_sources
from srgan_pipeline.tiles import tile_grid

logger = logging.getLogger(__name__)

Loader = Callable[[], np.ndarray]


def acquire_sources(
    train_sources: dict[str, Any] | None,
    eval_sets: dict[str, Any] | None,
    raw_dir: str,
    show_progress: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fetch every enabled source and list its images.

    Both groups are validated before anything is downloaded, so a missing setting on the last
    source is reported before a multi-GB download of the first one starts.
    """
    raw_dir = validate_params("data_prep.raw_dir", raw_dir)
    show_progress = validate_params("data_prep.show_progress", show_progress)
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
            folder = acquire(spec, Path(raw_dir), progress=show_progress)
            images = list_images(folder, spec.param)
            logger.info("Source %s (%s): %d images in %s", spec.name, spec.kind, len(images),
                        folder)
            manifests[group][spec.name] = {"kind": spec.kind, "folder": str(folder),
                                           "images": images}
    return manifests["train"], manifests["eval"]


def prepare_hr_image(path: Path, scale: int, max_pixels: int | None = None) -> np.ndarray:
    """Decode any image as RGB ``uint8`` and crop it to a multiple of ``scale``.

    An image over ``max_pixels`` is refused from its header, before decoding.
    """
    return mod_crop(load_rgb(path, max_pixels, "data_prep.max_pixels"), scale)


def normalise_images(
    manifest: dict[str, Any], scale: int, min_size: int, max_pixels: int
) -> tuple[dict[str, Loader], dict[str, Any]]:
    """HR images keyed ``<source>/<name>``, plus a report of what was kept and skipped.

    Every image is decoded once here to decide whether it is usable (truncated files only fail
    on a full decode), then again lazily when saved: twice the decoding, but one bad file is a
    reported skip instead of a crash halfway through writing a data set. Two files whose names
    differ only in suffix or letter case (``x.png``, ``X.jpg``) would be one output file on
    a case-insensitive disk (macOS, Windows): the first is kept, the other a reported skip.
    """
    min_size = validate_params("data_prep.min_size", min_size, scale=scale)
    max_pixels = validate_params("data_prep.max_pixels", max_pixels)
    partitions: dict[str, Loader] = {}
    taken: dict[str, str] = {}  # case-folded key -> key
    report: dict[str, Any] = {}
    for source, entry in manifest.items():
        folder = Path(entry["folder"])
        kept: dict[str, list[int]] = {}
        skipped: list[dict[str, str]] = []
        for relative in entry["images"]:
            key = f"{source}/{relative.rsplit('.', 1)[0]}"
            reason = None
            if key.casefold() in taken:
                reason = (f"another file of {source} has the same name ({taken[key.casefold()]}, "
                          "ignoring suffix and letter case); kept the first")
            else:
                try:
                    height, width = prepare_hr_image(folder / relative, scale,
                                                     max_pixels).shape[:2]
                except (UnreadableImageError, FileNotFoundError) as error:
                    reason = str(error)
                else:
                    if min(height, width) < min_size:
                        reason = (f"{width}x{height} after mod-crop is smaller than "
                                  f"data_prep.min_size={min_size}")
            if reason:
                logger.warning("Skipped %s: %s", folder / relative, reason)
                skipped.append({"file": str(folder / relative), "reason": reason})
                continue
            partitions[key] = partial(prepare_hr_image, folder / relative, scale, max_pixels)
            taken[key.casefold()] = key
            kept[key] = [height, width]
        report[source] = {"folder": str(folder), "found": len(entry["images"]),
                          "kept": len(kept), "skipped": skipped, "sizes": kept}
        logger.info("Source %s: kept %d of %d images, skipped %d", source, len(kept),
                    len(entry["images"]), len(skipped))
    return partitions, report


def cut_train_tiles(
    train_hr_images: dict[str, Loader], train_prep_report: dict[str, Any], scale: int,
    tiles: dict[str, int],
) -> tuple[dict[str, Loader], dict[str, Loader]]:
    """Overlapping HR tiles and the LR tiles at the same place, keyed ``<image>_s<NNN>``.

    LR tiles are cut from the LR of the whole image rather than by downsampling each HR tile,
    so tile borders see the same neighbourhood as the full-image LR (no mirrored padding inside).
    """
    tiling = validate_params("data_prep.tiles", tiles, scale=scale)
    size, stride = tiling.size, tiling.stride
    # Partitions are saved in sorted key order, so all tiles of one image are cut while that
    # image is cached: each image is decoded once per output instead of once per tile.
    load_hr = lru_cache(maxsize=1)(lambda key: train_hr_images[key]())
    load_lr = lru_cache(maxsize=1)(lambda key: imresize(load_hr(key), 1 / scale))

    hr_tiles: dict[str, Loader] = {}
    lr_tiles: dict[str, Loader] = {}
    for source in train_prep_report.values():
        for key, (height, width) in source["sizes"].items():
            if key not in train_hr_images:
                raise KeyError(f"{key} is in the data_prep report but not in train_hr_images; "
                               "re-run the normalise_train_images node")
            for index, tile in enumerate(tile_grid(height, width, size, stride), start=1):
                tile_key = f"{key}_s{index:03d}"
                hr_tiles[tile_key] = partial(_crop, load_hr, key, tile.hr())
                lr_tiles[tile_key] = partial(_crop, load_lr, key, tile.lr(scale))
    logger.info("Cut %d training tiles (%dpx, stride %d) from %d images", len(hr_tiles), size,
                stride, sum(len(s["sizes"]) for s in train_prep_report.values()))
    return hr_tiles, lr_tiles


def _crop(load: Callable[[str], np.ndarray], key: str, window: tuple[slice, slice]) -> np.ndarray:
    return load(key)[window]


def make_eval_pairs(eval_hr_images: dict[str, Loader], scale: int) -> dict[str, Loader]:
    """``<set>/HR/<name>`` and ``<set>/LR_x<scale>/<name>``, the layout SR benchmarks ship in."""
    pairs: dict[str, Loader] = {}
    for key, load in eval_hr_images.items():
        eval_set, name = key.split("/", 1)
        pairs[f"{eval_set}/HR/{name}"] = load
        pairs[f"{eval_set}/LR_x{scale}/{name}"] = partial(_downsample, load, scale)
    return pairs


def _downsample(load: Loader, scale: int) -> np.ndarray:
    return imresize(load(), 1 / scale)


def summarise_data_prep(
    train_prep_report: dict[str, Any],
    eval_prep_report: dict[str, Any],
    train_hr_tiles: dict[str, Loader],
    eval_pairs: dict[str, Loader],
) -> dict[str, Any]:
    """One report of the whole run: per source, images kept and skipped (with reasons), tiles."""
    tiles_per_source: dict[str, int] = {}
    for key in train_hr_tiles:
        tiles_per_source[key.split("/", 1)[0]] = tiles_per_source.get(key.split("/", 1)[0], 0) + 1
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
