"""PyTorch training checkpoints as a versioned Kedro dataset.

kedro-datasets has no dataset for ``torch.save`` dictionaries; its pickle dataset would unpickle
arbitrary objects. This one stores plain state dicts (tensors, numbers, strings, lists, dicts)
and loads them with ``torch.load(weights_only=True)``, which refuses anything else.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import torch
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from srgan_pipeline.datasets.image_dataset import write_bytes_atomic


class TorchCheckpointDataset(AbstractVersionedDataset[dict, Callable[[], dict]]):
    """A ``dict`` of state dicts saved with ``torch.save``; loaded onto the CPU.

    ``load()`` returns a zero-argument function that reads the checkpoint when called, as
    ``PartitionedDataset`` does for its partitions. A node that may not need a checkpoint
    (evaluation scoring only bicubic, on a clone that has trained nothing yet) takes it as an
    input and never calls it; one that does gets a clear error naming the missing dataset.
    In a notebook: ``state = catalog.load("generator_pretrained")()``.

    Example catalog entry::

        generator_pretrained:
          type: srgan_pipeline.datasets.TorchCheckpointDataset
          filepath: data/06_models/generator_pretrained.pt
          versioned: true
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **(fs_args or {}))
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def load(self) -> Callable[[], dict]:
        return self._read

    def _read(self) -> dict:
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError as error:  # no version saved yet
            raise DatasetError(
                f"No checkpoint at {self._filepath}: train one first "
                f"(kedro run --pipeline=train_gan) or pin a version with --load-versions"
            ) from error
        if not self._fs.exists(load_path):
            raise DatasetError(f"No checkpoint at {load_path}: train one first "
                               f"(kedro run --pipeline=train_gan)")
        with self._fs.open(load_path, "rb") as file:
            payload = io.BytesIO(file.read())
        try:
            return torch.load(payload, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for foreign or damaged files
            raise DatasetError(
                f"{load_path} is not a checkpoint this project wrote (or it is damaged): {error}"
            ) from error

    def save(self, data: dict) -> None:
        buffer = io.BytesIO()
        torch.save(data, buffer)
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        if self._protocol == "file":
            write_bytes_atomic(Path(save_path), buffer.getvalue())
        else:
            with self._fs.open(save_path, "wb") as file:
                file.write(buffer.getvalue())
        self._fs.invalidate_cache(save_path)

    def _exists(self) -> bool:
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(load_path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}
