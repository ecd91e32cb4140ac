"""Custom Kedro datasets, referenced from ``conf/*/catalog.yml`` by their full class path.

Imported lazily (PEP 562): data_prep's worker processes unpickle image datasets, and importing
the checkpoint dataset would import torch, which takes longer than the rest of a worker's start.
"""

from importlib import import_module

_MODULES = {
    "ParallelPartitionedDataset": "parallel_partitioned_dataset",
    "ParallelPartitions": "parallel_partitioned_dataset",
    "RGBImageDataset": "image_dataset",
    "TorchCheckpointDataset": "checkpoint_dataset",
    "TrainingStoreDataset": "training_store_dataset",
    "VersionedImageFolderDataset": "image_folder_dataset",
}
__all__ = sorted(_MODULES)


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
