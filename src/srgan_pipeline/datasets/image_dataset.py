"""Images as RGB ``uint8`` arrays, written atomically.

kedro-datasets' ``pillow.ImageDataset`` moves ``PIL.Image`` objects and writes straight into the
target file. The pipelines here compute on ``numpy`` arrays, and a crash mid-write must not leave a
truncated PNG that a later run would read as data, so this subclass keeps the library's versioning
and filesystem plumbing and changes only the in-memory type and how a local file is written.

``preview()`` follows kedro-viz's preview protocol: kedro-viz calls a dataset's ``preview`` method
(with the catalog's ``metadata: {kedro-viz: {preview_args: {...}}}`` as keyword arguments, if
any) and picks the renderer from the name of its return annotation; ``ImagePreview`` is a base64
PNG without a ``data:`` prefix, which the UI shows as ``data:image/png;base64,<preview>``.
"""

from __future__ import annotations

import base64
import errno
import io
import os
import secrets
from pathlib import Path
from typing import NewType

import numpy as np
from kedro.io.core import get_filepath_str
from kedro_datasets.pillow import ImageDataset
from PIL import Image

from srgan_pipeline.imaging import to_rgb_array
from srgan_pipeline.output_names import NAME_MAX

try:  # the type kedro-datasets' own previews return; kedro-viz matches its name only
    from kedro_datasets._typing import ImagePreview
except ImportError:  # pragma: no cover - older or newer kedro-datasets
    ImagePreview = NewType("ImagePreview", str)

PREVIEW_MAX_SIZE = 512  # px, longest side of a preview: keeps the viz API responses small


def image_preview(image: Image.Image | np.ndarray, max_size: int = PREVIEW_MAX_SIZE
                  ) -> ImagePreview:
    """A thumbnail of ``image`` (at most ``max_size`` px a side) as a base64 PNG string."""
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image))
    thumbnail = Image.fromarray(to_rgb_array(image))
    thumbnail.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="PNG", optimize=True)
    return ImagePreview(base64.b64encode(buffer.getvalue()).decode("ascii"))


class RGBImageDataset(ImageDataset):
    """Loads an image as an ``H x W x 3`` ``uint8`` array; saves an array (or PIL image).

    Any mode Pillow reads (grayscale, palette, RGBA, 16-bit) is converted to RGB on load, so
    downstream code never branches on image modes. ``save_args`` go to ``PIL.Image.save``; the
    catalog sets ``compress_level: 1`` for intermediate stages, where PNG encoding time dominates.
    """

    def load(self) -> np.ndarray:
        return to_rgb_array(super().load())

    def save(self, data: np.ndarray | Image.Image) -> None:
        is_array = isinstance(data, np.ndarray)
        image = Image.fromarray(np.ascontiguousarray(data)) if is_array else data
        save_path = self._get_save_path()
        image_format = self._get_format(save_path)
        if self._protocol != "file":
            # Object stores publish an object only once its upload completes: already atomic.
            with self._fs.open(get_filepath_str(save_path, self._protocol), "wb") as fs_file:
                image.save(fs_file, format=image_format, **self._save_args)
        else:
            buffer = io.BytesIO()
            image.save(buffer, format=image_format, **self._save_args)
            write_bytes_atomic(Path(get_filepath_str(save_path, self._protocol)), buffer.getvalue())
        self._invalidate_cache()

    def preview(self, max_size: int = PREVIEW_MAX_SIZE) -> ImagePreview:
        """The saved image, shrunk to at most ``max_size`` px a side, for kedro-viz."""
        return image_preview(super().load(), max_size)


def _temporary_name(name: str) -> str:
    """``.<name>.<8 hex>.tmp``, the name cut short so the whole stays within 255 bytes.

    The temporary name adds 14 bytes, so a legal 242-255 byte output name (Linux allows 255)
    would otherwise fail with "File name too long". The name is cut at a character boundary.
    """
    suffix = f".{secrets.token_hex(4)}.tmp"
    room = NAME_MAX - 1 - len(suffix)  # 1: the leading dot
    return f".{os.fsencode(name)[:room].decode(errors='ignore')}{suffix}"


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it into place.

    ``os.replace`` is atomic on POSIX and Windows, so readers see the old file or the new one,
    never a partial write. The file gets the permissions a plain ``open(path, "wb")`` would
    give (0o666 less the umask): ``tempfile.mkstemp`` would make every output owner-only
    (0o600), and reading the umask means setting it, which races with other threads.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):  # a unique name, as mkstemp picks one, but created with mode 0o666
        tmp = path.with_name(_temporary_name(path.name))
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temporary file name beside {path}")
    try:
        with os.fdopen(fd, "wb") as tmp_file:
            tmp_file.write(payload)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)  # a partial file would keep the space the next try needs
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(error.errno, f"no space left on the disk of {path.parent} for "
                          f"{path.name} ({len(payload) / 1e6:.1f} MB): the previous "
                          f"{path.name}, if any, is unchanged; free space there and run again"
                          ) from error
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
