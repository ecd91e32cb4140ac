"""evaluation nodes: score every selected model on every evaluation set, then report."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from srgan_pipeline import tracking
from srgan_pipeline.checkpoints import (
    CheckpointLoader,
    generator_checkpoint,
    generator_from_checkpoint,
)
from srgan_pipeline.evaluation import (
    PerceptualScores,
    SuperResolve,
    comparison_figure,
    group_pairs,
    model_functions,
    perception_distortion_figure,
    perception_distortion_points,
    score_images,
    scored_metrics,
    summary_markdown,
    summary_table,
)
from srgan_pipeline.inference import InferencePlan, Upscaler, plan_inference
from srgan_pipeline.lpips_metric import LPIPSMetric
from srgan_pipeline.niqe import load_pristine_model
from srgan_pipeline.params import EvaluationParams, FiguresParams, validate_params
from srgan_pipeline.serving.nodes import compared_versions

logger = logging.getLogger(__name__)


def evaluate_models(
    eval_pairs: dict[str, Callable[[], np.ndarray]],
    generator_pretrained: CheckpointLoader,
    generator_gan: CheckpointLoader,
    scale: int,
    evaluation: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-image metrics, SR outputs of the chosen images, and their comparison figures.

    Checkpoints are read only for the models selected in ``evaluation.models``, so scoring
    bicubic alone works before anything has been trained.
    """
    settings = validate_params("evaluation", evaluation, scale=scale)
    plan = plan_inference(settings.device, settings.precision, settings.tile, settings.runtime,
                          block="evaluation")  # before any checkpoint is read
    perceptual = _perceptual_scores(settings)  # offline without weights: stops here, too
    upscalers = _prepared_generators(settings.models, generator_pretrained, generator_gan,
                                     scale, plan)
    # what ran (OpenVINO may run another precision than asked: the same for every generator)
    precision = next((upscaler.precision for upscaler in upscalers.values()), plan.precision)
    # what LPIPS / NIQE were computed with: evaluation.lpips_weights (alex/random: NOT LPIPS)
    sources = {f"evaluation.{key}": value for key, value in perceptual.sources.items()}
    tracking.set_tags({"evaluation.precision": precision,
                       "evaluation.precision_reason": plan.precision_reason,
                       "evaluation.tile": plan.tile,
                       "evaluation.runtime": plan.runtime, **sources})
    logger.info("Evaluating %s on %s in %s with %s (LR tiles of %d px)",
                ", ".join(settings.models), plan.device, precision, plan.runtime, plan.tile)
    rows, samples, figures = _score_sets(eval_pairs, settings, scale, perceptual,
                                         *model_functions(settings.models, upscalers, scale))
    for key, figure in figures.items():
        tracking.log_image(figure, f"comparisons/{key}.png")
    return pd.DataFrame(rows), samples, figures


def _prepared_generators(models: tuple[str, ...], generator_pretrained: CheckpointLoader,
                         generator_gan: CheckpointLoader, scale: int, plan: InferencePlan
                         ) -> dict[str, Upscaler]:
    """Each selected generator read from its checkpoint and prepared once (bicubic has none)."""
    generators = {
        model: generator_from_checkpoint(
            generator_checkpoint(model, generator_pretrained, generator_gan)())
        for model in models if model != "bicubic"
    }
    _refuse_other_scales(generators, scale)  # before anything is prepared, scored or written
    return {model: plan.prepare(generator) for model, generator in generators.items()}


def _perceptual_scores(settings: EvaluationParams) -> PerceptualScores:
    """LPIPS and NIQE as set, their weights and model loaded (or refused) before any work."""
    lpips = settings.lpips and LPIPSMetric(settings.lpips.net, settings.lpips.weights)
    model = settings.niqe and load_pristine_model(settings.niqe.params)
    return PerceptualScores(lpips or None, model or None)


def _score_sets(eval_pairs: dict[str, Callable[[], np.ndarray]], settings: EvaluationParams,
                scale: int, perceptual: PerceptualScores, functions: dict[str, SuperResolve],
                precisions: dict[str, str]
                ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every set's per-image rows (with the precision each model ran in), samples, figures."""
    crop = scale if settings.crop_border is None else settings.crop_border
    rows: list[dict[str, Any]] = []
    samples, figures = {}, {}
    for eval_set, images in group_pairs(eval_pairs, scale).items():
        # the first N by name: quick screening
        images = dict(list(images.items())[:settings.images_per_set])
        chosen = _figure_images(settings.figures, eval_set, list(images))
        set_rows, kept = score_images(images, functions, crop, keep=chosen,
                                      perceptual=perceptual)
        rows += [{"set": eval_set, **row, "precision": precisions[row["model"]]}
                 for row in set_rows]
        for name, panels in kept.items():
            for model in functions:
                samples[f"{eval_set}/{name}_{model}"] = panels[model]
            figures[f"{eval_set}/{name}"] = comparison_figure(panels, scale,
                                                              settings.figures.crop)
        logger.info("Scored %s: %d images x %s", eval_set, len(images), ", ".join(functions))
    if not rows:
        raise ValueError("eval_pairs holds no evaluation set: add one under data_prep.eval_sets "
                         "and run data_prep")
    return rows, samples, figures


def summarise_evaluation(per_image: pd.DataFrame) -> tuple[dict[str, Any], str]:
    """Mean metrics per set and model: JSON, a Markdown table (printed), and MLflow metrics."""
    summary = summary_table(per_image)
    markdown = summary_markdown(summary)
    # The table is the run's answer: printed as is, since log decoration would wrap it.
    print(f"\nEvaluation (PSNR/SSIM/NIQE on the Y channel, LPIPS on RGB, border crop = scale, "
          f"8-bit outputs):\n{markdown}")
    scored = scored_metrics(summary)
    metrics = {f"{row.set}/{row.model}/{metric}": float(getattr(row, metric))
               for row in summary.itertuples() for metric in scored}
    tracking.log_metrics(metrics)
    sources = [s for s in ("lpips_weights", "niqe_model") if s in summary]
    as_json = {s: {row.model: {**{m: float(getattr(row, m)) for m in scored},
                               "images": int(row.images), "precision": row.precision,
                               **{source: getattr(row, source) for source in sources}}
                   for row in summary[summary.set == s].itertuples()}
               for s in summary.set.unique()}
    return as_json, markdown


def plot_perception_distortion(evaluation_summary: dict[str, Any],
                               model_registry_report: dict[str, Any]
                               ) -> tuple[np.ndarray, dict[str, Any]]:
    """Y-PSNR against LPIPS per set: each model of this evaluation and each version registered
    under the same champion rule (read after registration, so this evaluation's own generators
    carry their version numbers); the figure and its points, both also logged to MLflow."""
    points = perception_distortion_points(evaluation_summary,
                                          compared_versions(model_registry_report))
    figure = perception_distortion_figure(points)
    tracking.log_image(figure, "perception_distortion.png")
    tracking.log_dict(points, "perception_distortion.json")
    return figure, points


def _refuse_other_scales(generators: dict[str, Any], scale: int) -> None:
    other = {model: g.scale for model, g in generators.items() if g.scale != scale}
    if other:
        found = ", ".join(f"the {model} checkpoint upscales x{s}" for model, s in other.items())
        raise ValueError(f"scale={scale} (params:scale) but {found}: evaluate with "
                         f"--params=scale={next(iter(other.values()))}, or train generators "
                         f"for x{scale} (and run data_prep with scale={scale})")


def _figure_images(figures: FiguresParams, eval_set: str, names: list[str]) -> list[str]:
    """Images named for this set under ``evaluation.figures.images``, else the first few."""
    named = figures.images.get(eval_set)
    if named is None:
        return names[: figures.default_count]
    missing = sorted(set(named) - set(names))
    if missing:
        raise ValueError(f"evaluation.figures.images.{eval_set}: no image(s) {missing} in "
                         f"{eval_set} (it has e.g. {names[:5]})")
    return list(named)
