"""A set of images saved together as one version, e.g. a run's comparison figures.

``PartitionedDataset`` refuses versioning, but evaluation pictures must stay per run, so that an
older run's figures can be loaded beside a newer one's (``--load-versions`` or
``catalog.load``). Each save writes ``<filepath>/<version>/<name>/<key>.png``.

kedro-viz previews the loaded version (the latest by default) as one small contact sheet.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import fsspec
import numpy as np
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)
from PIL import Image

from srgan_pipeline.datasets.image_dataset import (
    PREVIEW_MAX_SIZE,
    ImagePreview,
    RGBImageDataset,
    image_preview,
)

_SHEET_GAP = 4  # px of white between the images of a contact sheet


class VersionedImageFolderDataset(
    AbstractVersionedDataset[dict[str, Any], dict[str, Callable[[], np.ndarray]]]
):
    """Saves ``{key: image array or function returning one}``; loads ``{key: loader}``.

    Keys may contain ``/`` (``urban100/img_004``). Images are PNG (``RGBImageDataset``).
    """

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol)
        self._save_args = save_args or {}
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def _image(self, folder: str, key: str) -> RGBImageDataset:
        filepath = f"{folder}/{key}.png"
        if self._protocol != "file":
            filepath = f"{self._protocol}://{filepath}"
        return RGBImageDataset(filepath=filepath, save_args=self._save_args)

    def save(self, data: dict[str, Any]) -> None:
        folder = get_filepath_str(self._get_save_path(), self._protocol)
        for key, image in sorted(data.items()):
            self._image(folder, key).save(image() if callable(image) else image)
        self._fs.invalidate_cache(folder)

    def load(self) -> dict[str, Callable[[], np.ndarray]]:
        folder = get_filepath_str(self._get_load_path(), self._protocol)
        keys = sorted(
            # relpath: glob returns absolute paths even when filepath is relative
            PurePosixPath(posixpath.relpath(path, folder)).with_suffix("").as_posix()
            for path in self._fs.glob(f"{folder}/**/*.png")
        )
        return {key: self._image(folder, key).load for key in keys}

    def preview(self, max_size: int = PREVIEW_MAX_SIZE, max_images: int = 4) -> ImagePreview:
        """The first ``max_images`` images (by key) stacked top to bottom, for kedro-viz.

        Each image is shrunk to fit ``max_size`` px before the next is read, so a preview holds
        one full-size image in memory at a time; the sheet is then shrunk to fit ``max_size``.
        """
        if max_size < 1 or max_images < 1:
            raise ValueError(f"max_size and max_images must be at least 1, got {max_size} and "
                             f"{max_images}")
        loaders = list(self.load().values())[:max_images]
        if not loaders:
            raise DatasetError(f"{self} holds no images to preview")
        thumbnails = []
        for load in loaders:
            thumbnail = Image.fromarray(load())
            thumbnail.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
            thumbnails.append(thumbnail)
        width = max(thumbnail.width for thumbnail in thumbnails)
        height = sum(thumbnail.height for thumbnail in thumbnails)
        sheet = Image.new("RGB", (width, height + _SHEET_GAP * (len(thumbnails) - 1)), "white")
        top = 0
        for thumbnail in thumbnails:
            sheet.paste(thumbnail, (0, top))
            top += thumbnail.height + _SHEET_GAP
        return image_preview(sheet, max_size)

    def _exists(self) -> bool:
        try:
            return self._fs.exists(get_filepath_str(self._get_load_path(), self._protocol))
        except Exception:  # no version saved yet
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}
