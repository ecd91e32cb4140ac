"""The training store (``srgan_pipeline.training_store``) as a Kedro dataset.

Not versioned: a store of DIV2K + Flickr2K takes tens of GB (benchmarks/results/,
the data_prep and store note), and keeping one
per data_prep run would fill a disk; it is derived data, rewritten atomically by each run (a
temporary folder renamed into place), and the versioned ``data_prep_report`` records what went
into it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from kedro.io.core import AbstractDataset, DatasetError

from srgan_pipeline.datasets.image_dataset import ImagePreview, image_preview
from srgan_pipeline.training_store import StoreContent, StoreError, TrainingStore, write_store


class TrainingStoreDataset(AbstractDataset[StoreContent, TrainingStore]):
    """Saves a ``StoreContent`` (data_prep's images and tiling); loads a validated
    ``TrainingStore`` whose arrays are memory-mapped.

    Example catalog entry::

        train_store:
          type: srgan_pipeline.datasets.TrainingStoreDataset
          filepath: data/03_primary/train_store
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> TrainingStore:
        try:
            return TrainingStore(self._filepath)
        except StoreError as error:
            raise DatasetError(str(error)) from error

    def save(self, data: StoreContent) -> None:
        if not isinstance(data, StoreContent):
            raise DatasetError(f"TrainingStoreDataset saves a StoreContent, got {type(data)}")
        write_store(self._filepath, data)

    def _exists(self) -> bool:
        return (self._filepath / "index.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def preview(self, max_size: int = 512) -> ImagePreview:
        """kedro-viz: the first training tile, HR above its LR (shown at the HR size)."""
        store = self.load()
        if not len(store):
            raise DatasetError(f"the training store at {self._filepath} has no tiles")
        hr, lr = store.tile_pair(0)
        lr_big = lr.repeat(store.scale, axis=0).repeat(store.scale, axis=1)
        return image_preview(np.concatenate([hr, lr_big], axis=0), max_size)
