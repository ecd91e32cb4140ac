"""evaluation: bicubic, SRResNet and SRGAN scored on every evaluation set, as tables publish."""

from srgan_pipeline.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
