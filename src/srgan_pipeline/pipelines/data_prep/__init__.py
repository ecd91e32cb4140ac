"""data_prep: public SR data sets -> HR/LR training tiles and evaluation pairs."""

from srgan_pipeline.pipelines.data_prep.pipeline import create_pipeline

__all__ = ["create_pipeline"]
