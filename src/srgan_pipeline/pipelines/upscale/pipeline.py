from kedro.pipeline import Node, Pipeline

from srgan_pipeline.pipelines.upscale.nodes import upscale_folder


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                upscale_folder,
                inputs=["generator_pretrained", "generator_gan", "params:upscale"],
                outputs=["upscaled_images", "upscale_report"],
                name="upscale_folder",
            ),
        ]
    )
