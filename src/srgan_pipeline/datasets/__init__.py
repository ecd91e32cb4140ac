"""Custom Kedro datasets, referenced from ``conf/*/catalog.yml`` by their full class path."""

from srgan_pipeline.datasets.image_dataset import RGBImageDataset

__all__ = ["RGBImageDataset"]
