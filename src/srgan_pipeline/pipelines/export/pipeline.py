from kedro.pipeline import Node, Pipeline

from srgan_pipeline.pipelines.export.nodes import export_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                export_model,
                inputs=["generator_pretrained", "generator_gan", "params:export", "params:scale",
                        "params:serving"],
                outputs="export_report",
                name="export_model",
            ),
        ]
    )
