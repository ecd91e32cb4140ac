from kedro.pipeline import Node, Pipeline

from srgan_pipeline.pipelines.train_gan.nodes import pretrain_generator, train_adversarial_gan
from srgan_pipeline.serving.nodes import log_generator_models


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                pretrain_generator,
                inputs=["train_store", "params:scale", "params:train_gan"],
                outputs="generator_pretrained",
                name="pretrain_generator",
            ),
            Node(
                train_adversarial_gan,
                inputs=["generator_pretrained", "train_store", "params:scale", "params:train_gan"],
                outputs=["generator_gan", "critic"],
                name="train_adversarial",
            ),
            Node(
                log_generator_models,
                inputs=["generator_pretrained", "generator_gan", "train_store", "params:serving"],
                outputs=None,
                name="log_generator_models",
            ),
        ]
    )
