from kedro.pipeline import Node, Pipeline

from srgan_pipeline.pipelines.evaluation.nodes import (
    evaluate_models,
    plot_perception_distortion,
    summarise_evaluation,
)
from srgan_pipeline.serving.nodes import register_generators


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate_models,
                inputs=["eval_pairs", "generator_pretrained", "generator_gan", "params:scale",
                        "params:evaluation"],
                outputs=["evaluation_per_image", "evaluation_sr_samples",
                         "evaluation_comparisons"],
                name="evaluate_models",
            ),
            Node(
                summarise_evaluation,
                inputs="evaluation_per_image",
                outputs=["evaluation_summary", "evaluation_summary_table"],
                name="summarise_evaluation",
            ),
            Node(
                register_generators,
                inputs=["generator_pretrained", "generator_gan", "evaluation_summary",
                        "eval_pairs", "params:scale", "params:serving"],
                outputs="model_registry_report",
                name="register_generators",
            ),
            Node(  # after registration: the registered versions are points of it too
                plot_perception_distortion,
                inputs=["evaluation_summary", "model_registry_report"],
                outputs=["evaluation_perception_distortion",
                         "evaluation_perception_distortion_points"],
                name="plot_perception_distortion",
            ),
        ]
    )
