"""export: a trained generator as safetensors, ONNX and NCNN files, each checked when written."""

from srgan_pipeline.pipelines.export.pipeline import create_pipeline

__all__ = ["create_pipeline"]
