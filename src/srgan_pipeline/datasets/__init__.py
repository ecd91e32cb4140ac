"""Custom Kedro datasets, referenced from ``conf/*/catalog.yml`` by their full class path."""

from srgan_pipeline.datasets.checkpoint_dataset import TorchCheckpointDataset
from srgan_pipeline.datasets.image_dataset import RGBImageDataset
from srgan_pipeline.datasets.image_folder_dataset import VersionedImageFolderDataset

__all__ = ["RGBImageDataset", "TorchCheckpointDataset", "VersionedImageFolderDataset"]
