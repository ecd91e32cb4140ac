"""Scoring super-resolution models on evaluation pairs, and the pictures and tables of it.

Plain numpy/PyTorch: the evaluation pipeline's nodes only wire catalog data into these.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from srgan_pipeline.imaging import rgb_to_y
from srgan_pipeline.inference import Upscaler
from srgan_pipeline.lpips_metric import LPIPSMetric
from srgan_pipeline.metrics import bicubic_upscale, score
from srgan_pipeline.names import METRICS, PERCEPTUAL_METRICS
from srgan_pipeline.niqe import BLOCK as NIQE_BLOCK
from srgan_pipeline.niqe import PristineModel, niqe

logger = logging.getLogger(__name__)

# lr -> sr, uint8 HxWx3 arrays: bicubic, or a prepared generator's Upscaler.upscale
SuperResolve = Callable[[np.ndarray], np.ndarray]


def group_pairs(eval_pairs: dict[str, Callable[[], np.ndarray]], scale: int
                ) -> dict[str, dict[str, tuple[Callable, Callable]]]:
    """``{set: {image: (load_lr, load_hr)}}`` from ``<set>/HR/<name>`` + ``<set>/LR_x4/<name>``."""
    sets: dict[str, dict[str, tuple[Callable, Callable]]] = {}
    for key, load_hr in eval_pairs.items():
        eval_set, kind, name = key.split("/", 2)
        if kind != "HR":
            continue
        lr_key = f"{eval_set}/LR_x{scale}/{name}"
        if lr_key not in eval_pairs:
            raise KeyError(f"eval_pairs has {key} but no {lr_key}: re-run data_prep")
        sets.setdefault(eval_set, {})[name] = (eval_pairs[lr_key], load_hr)
    return {s: dict(sorted(images.items())) for s, images in sorted(sets.items())}


def model_functions(models: Iterable[str], upscalers: dict[str, Upscaler], scale: int
                    ) -> tuple[dict[str, SuperResolve], dict[str, str]]:
    """One ``lr -> sr`` function per selected model, and the precision each runs in: bicubic
    is MATLAB's imresize, in float64; a generator, its prepared :class:`Upscaler` (prepared
    once, not once per image), in the precision that Upscaler really runs."""
    functions = {model: (lambda lr: bicubic_upscale(lr, scale)) if model == "bicubic"
                 else upscalers[model].upscale for model in models}
    precisions = {model: "fp64" if model == "bicubic" else upscalers[model].precision
                  for model in models}
    return functions, precisions


class PerceptualScores:
    """LPIPS (RGB) and NIQE (Y channel) of an SR output, each when given, on the border crop of
    PSNR/SSIM; ``sources`` records what each was computed with (e.g. a random LPIPS backbone),
    as per-image columns (``lpips_weights``, ``niqe_model``) so every table can say so."""

    def __init__(self, lpips: LPIPSMetric | None = None, niqe_model: PristineModel | None = None):
        self.lpips, self.niqe_model = lpips, niqe_model
        self.sources = ({"lpips_weights": f"{lpips.net}/{lpips.weights_source}"} if lpips
                        else {}) | ({"niqe_model": niqe_model.source} if niqe_model else {})

    def __call__(self, sr: np.ndarray, hr: np.ndarray, crop: int) -> dict[str, Any]:
        if crop:
            sr, hr = sr[crop:-crop, crop:-crop], hr[crop:-crop, crop:-crop]
        scores: dict[str, Any] = {}
        if self.lpips:
            scores["lpips"] = self.lpips(sr, hr)
        if self.niqe_model:  # on whole grey levels, as MATLAB's rgb2ycbcr of a uint8 image
            scores["niqe"] = (niqe(np.floor(rgb_to_y(sr) + 0.5), self.niqe_model)
                              if min(sr.shape[:2]) >= NIQE_BLOCK else _no_niqe(sr.shape))
        return scores | self.sources


def _no_niqe(shape: tuple[int, ...]) -> float:
    # NIQE is defined on 96 x 96 blocks: a smaller image has none (NaN: the set's mean is over
    # the others), said rather than scored on something else
    logger.warning("NIQE needs %d x %d px after the border crop; an image of %d x %d has none "
                   "(its set's mean NIQE is over the other images)", NIQE_BLOCK, NIQE_BLOCK,
                   *shape[:2])
    return math.nan


def score_images(
    images: dict[str, tuple[Callable, Callable]], functions: dict[str, SuperResolve], crop: int,
    keep: Iterable[str] = (), perceptual: PerceptualScores | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, np.ndarray]]]:
    """Per-image metrics of every model (``perceptual``'s too, when given), and the outputs of
    the images named in ``keep``."""
    rows, kept = [], {}
    keep = set(keep)
    for name, (load_lr, load_hr) in images.items():
        lr, hr = load_lr(), load_hr()
        outputs = {}
        for model, super_resolve in functions.items():
            sr = super_resolve(lr)
            rows.append({"image": name, "model": model, "height": hr.shape[0],
                         "width": hr.shape[1], **score(sr, hr, crop),
                         **(perceptual(sr, hr, crop) if perceptual else {})})
            outputs[model] = sr
        if name in keep:
            kept[name] = {"LR": lr, **outputs, "HR": hr}
    return rows, kept


def scored_metrics(table: pd.DataFrame) -> list[str]:
    """The metrics a per-image or summary table holds: PSNR/SSIM, then LPIPS/NIQE if scored."""
    return [*METRICS, *(m for m in PERCEPTUAL_METRICS if m in table)]


def summary_table(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric per set and model (and the precision it ran in, when recorded),
    with the gain over bicubic where scored, and what LPIPS/NIQE were computed with."""
    keys = ["set", "model", *(["precision"] if "precision" in per_image else [])]
    groups = per_image.groupby(keys, sort=False)
    summary = groups[scored_metrics(per_image)].mean().reset_index()
    summary["images"] = groups.size().values
    for source in ("lpips_weights", "niqe_model"):
        if source in per_image:
            summary[source] = groups[source].first().values
    bicubic = summary[summary.model == "bicubic"].set_index("set")["psnr_y"]
    summary["psnr_y_vs_bicubic"] = summary.apply(
        lambda row: row.psnr_y - bicubic[row.set] if row.set in bicubic else np.nan, axis=1)
    return summary


def summary_markdown(summary: pd.DataFrame) -> str:
    """The table printed and saved: PSNR/SSIM (higher is better), then LPIPS and NIQE (lower
    is better, as their headers say; a random LPIPS backbone is named in the header)."""
    with_precision = "precision" in summary
    perceptual = [m for m in PERCEPTUAL_METRICS if m in summary]
    lines = ["| set | model | " + ("precision | " if with_precision else "")
             + "images | PSNR-Y (dB) | SSIM-Y | PSNR-RGB (dB) | vs bicubic (dB) |"
             + "".join(f" {_perceptual_header(summary, m)} |" for m in perceptual),
             "| --- | --- | " + ("--- | " if with_precision else "")
             + "---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(perceptual)]
    for row in summary.itertuples():
        gain = "" if np.isnan(row.psnr_y_vs_bicubic) else f"{row.psnr_y_vs_bicubic:+.2f}"
        precision = f"{row.precision} | " if with_precision else ""
        lines.append(f"| {row.set} | {row.model} | {precision}{row.images} | {row.psnr_y:.2f} | "
                     f"{row.ssim_y:.4f} | {row.psnr_rgb:.2f} | {gain} |"
                     + "".join(f" {getattr(row, m):.4f} |" for m in perceptual))
    return "\n".join(lines) + "\n"


def _perceptual_header(summary: pd.DataFrame, metric: str) -> str:
    if metric == "niqe":
        return "NIQE (lower is better)"
    net, _, weights = summary["lpips_weights"].iloc[0].partition("/")
    if weights == "random":
        return f"LPIPS-{net}, RANDOM backbone: not LPIPS (lower is better)"
    return f"LPIPS-{net} (lower is better)"


def detail_window(hr: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of the ``size`` x ``size`` window with the most luma detail (gradient energy).

    An automatic, repeatable choice: flat sky shows no difference between models.
    """
    y = rgb_to_y(hr)
    energy = np.abs(np.diff(y, axis=0))[:, :-1] + np.abs(np.diff(y, axis=1))[:-1, :]
    size = min(size, *energy.shape)
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size]
            + integral[:-size, :-size])
    top, left = np.unravel_index(np.argmax(sums[::4, ::4]), sums[::4, ::4].shape)
    return int(top) * 4, int(left) * 4


def comparison_figure(panels: dict[str, np.ndarray], scale: int, crop: int, zoom: int = 2
                      ) -> np.ndarray:
    """LR | bicubic | SRResNet | SRGAN | HR side by side: the same HR-sized crop, zoomed.

    The LR panel is enlarged with nearest neighbour so its pixels show as they are.
    """
    hr = panels["HR"]
    top, left = detail_window(hr, crop)
    top, left = top // scale * scale, left // scale * scale
    size = min(crop, hr.shape[0] - top, hr.shape[1] - left) // scale * scale
    tiles = []
    for label, image in panels.items():
        if label == "LR":
            window = image[top // scale:(top + size) // scale, left // scale:(left + size) // scale]
            window = window.repeat(scale, 0).repeat(scale, 1)
        else:
            window = image[top:top + size, left:left + size]
        tile = Image.fromarray(window).resize((size * zoom, size * zoom), Image.NEAREST)
        canvas = Image.new("RGB", (tile.width, tile.height + 14), "white")
        canvas.paste(tile, (0, 14))
        ImageDraw.Draw(canvas).text((2, 1), {"srresnet": "SRResNet", "srgan": "SRGAN",
                                             "bicubic": "bicubic"}.get(label, label), fill="black")
        tiles.append(np.asarray(canvas))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)


def perception_distortion_points(summary: dict[str, Any],
                                 registry: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the perception-distortion figure draws, per set: each model of the evaluation
    summary (JSON) and each registered version the champion rule compares, a point of Y-PSNR
    and LPIPS, labelled (``srgan v4``, ``@champion`` on the alias's holder), plus how many
    compared versions were left out and why.

    ``registry`` (``serving.nodes.compared_versions``; None: the evaluation alone):
    ``model_name``, ``alias``, ``score_rule``, ``sets`` (the rule's), ``evaluated`` (this
    evaluation's model -> registered version), ``versions`` (each ``version``, ``model``,
    ``aliases``, ``score_rule``, ``scores`` ``{set: {metric: mean}}``, ``lpips_weights``) and,
    when none may be shown, ``not_shown_because``. A version is drawn only where its LPIPS was
    computed with the same weights as this evaluation's: a random backbone's number (NOT LPIPS)
    never sits beside a real LPIPS, nor alex beside vgg.
    """
    registry = registry or {}
    evaluated, alias = registry.get("evaluated", {}), registry.get("alias")
    versions = {v["version"]: v for v in registry.get("versions", [])}
    compared = [v for v in versions.values() if v["score_rule"] == registry.get("score_rule")
                and v["version"] not in evaluated.values()]
    if registry.get("not_shown_because"):
        compared = []
    sets = {}
    for eval_set, models in summary.items():
        weights = _lpips_weights(models)
        points = [_point(model, row, evaluated.get(model), versions, alias, "evaluation")
                  for model, row in models.items()] if weights else []
        left_out: dict[str, int] = {}
        for version in compared if weights and eval_set in registry.get("sets", ()) else []:
            reason = _left_out_because(version, eval_set, weights)
            if reason:
                left_out[reason] = left_out.get(reason, 0) + 1
            else:
                points.append(_point(version["model"], version["scores"][eval_set],
                                     version["version"], versions, alias, "registry"))
        sets[eval_set] = {"lpips_weights": weights, "points": points, "left_out": left_out}
    rule = registry.get("score_rule")
    return {"sets": sets, "registry": {
        key: registry.get(key) for key in ("model_name", "alias", "score_rule", "sets",
                                           "not_shown_because")} | {
        "champion": next((v for v, d in versions.items() if alias in d["aliases"]), None),
        "versions": len(versions),
        "other_rules": sum(v["score_rule"] != rule for v in versions.values())}}


def _lpips_weights(models: dict[str, dict[str, Any]]) -> str | None:
    """What every model's LPIPS of a set was computed with (``alex/imagenet``), None without."""
    if not models or not all("lpips" in row for row in models.values()):
        return None
    return next(iter(models.values())).get("lpips_weights", "alex/imagenet")


def _left_out_because(version: dict[str, Any], eval_set: str, weights: str) -> str | None:
    scores = version["scores"].get(eval_set, {})
    if "psnr_y" not in scores:
        return "no per-set scores (registered before they were tagged)"
    if "lpips" not in scores:
        return "scored without LPIPS"
    if version.get("lpips_weights") != weights:
        return f"LPIPS-{version.get('lpips_weights')}, not comparable"
    return None


def _point(model: str, scores: dict[str, Any], version: int | None, versions: dict[int, dict],
           alias: str | None, source: str) -> dict[str, Any]:
    champion = version is not None and alias in versions.get(version, {}).get("aliases", [])
    label = " ".join([model] + ([f"v{version}"] if version is not None else [])
                     + ([f"@{alias}"] if champion else []))
    return {"label": label, "model": model, "version": version, "source": source,
            "champion": champion, "psnr_y": float(scores["psnr_y"]),
            "lpips": float(scores["lpips"])}


def perception_distortion_figure(points: dict[str, Any]) -> np.ndarray:
    """Blau and Michaeli's perception-distortion plane, one panel per set: each point of
    :func:`perception_distortion_points` at its Y-PSNR (distortion, higher is better: right)
    and LPIPS (perception, lower is better: down); this evaluation's models filled, registered
    versions hollow, the champion starred; under each panel, the compared versions not drawn
    and why. An RGB array (a set scored without LPIPS says so)."""
    # no pyplot: no display and no global state
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sets = points["sets"]
    figure = Figure(figsize=(4.4 * len(sets), 3.8), dpi=100, layout="constrained")
    for axes, (eval_set, panel) in zip(figure.subplots(1, len(sets), squeeze=False)[0],
                                       sets.items(), strict=True):
        if not panel["lpips_weights"]:
            axes.set_title(eval_set)
            axes.text(0.5, 0.5, "LPIPS not scored\n(evaluation.lpips: null)", ha="center")
            axes.axis("off")
            continue
        _draw_points(axes, panel["points"])
        net, _, weights = panel["lpips_weights"].partition("/")
        random = "\nRANDOM LPIPS backbone: not LPIPS" if weights == "random" else ""
        axes.set_title(eval_set + random, fontsize=10)
        axes.set(xlabel="PSNR-Y (dB), higher is better", ylabel=f"LPIPS-{net}, lower is better")
        axes.margins(x=0.3, y=0.2)
        axes.grid(alpha=0.3)
        caption = _caption(panel, points["registry"], eval_set)
        if caption:
            axes.annotate(caption, (0, 0), xycoords="axes fraction", xytext=(0, -30),
                          textcoords="offset points", va="top", fontsize=7, wrap=True)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _draw_points(axes, points: list[dict[str, Any]]) -> None:
    registered = [p for p in points if p["source"] == "registry"]
    for point in points:
        hollow = point["source"] == "registry"
        axes.scatter(point["psnr_y"], point["lpips"], s=36, marker="D" if hollow else "o",
                     facecolors="none" if hollow else None,
                     edgecolors="grey" if hollow else None)
        if point["champion"]:
            axes.scatter(point["psnr_y"], point["lpips"], s=160, marker="*", color="gold",
                         edgecolors="black", linewidths=0.5, zorder=3)
        axes.annotate(point["label"], (point["psnr_y"], point["lpips"]), fontsize=8,
                      textcoords="offset points", xytext=(5, 4),
                      color="dimgrey" if hollow else "black")
    if registered:
        axes.legend(handles=_legend_handles(any(p["champion"] for p in points)), fontsize=7,
                    loc="best")


def _legend_handles(champion: bool) -> list:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", label="this evaluation"),
               Line2D([], [], marker="D", linestyle="", markerfacecolor="none",
                      markeredgecolor="grey", label="registered version")]
    if champion:
        handles.append(Line2D([], [], marker="*", linestyle="", markersize=11, color="gold",
                              markeredgecolor="black", label="champion"))
    return handles


def _caption(panel: dict[str, Any], registry: dict[str, Any], eval_set: str) -> str:
    """Which registered versions the panel shows, and how many it leaves out and why."""
    if not registry.get("model_name") or registry.get("not_shown_because"):
        because = registry.get("not_shown_because") or "no registry"
        return f"registered versions not shown: {because}"
    if eval_set not in (registry.get("sets") or ()):
        return f"registered versions compared on {', '.join(registry['sets'] or [])} only"
    shown = sum(p["source"] == "registry" for p in panel["points"])
    lines = [f"{registry['model_name']}, {registry['score_rule']}: {shown} earlier "
             f"version(s) shown"]
    lines += [f"{count} left out: {reason}" for reason, count in panel["left_out"].items()]
    return "\n".join(lines)
