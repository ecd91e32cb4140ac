"""upscale: a trained generator applied to every image in a folder of the user's."""

from srgan_pipeline.pipelines.upscale.pipeline import create_pipeline

__all__ = ["create_pipeline"]
