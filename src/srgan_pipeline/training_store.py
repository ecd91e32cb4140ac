"""The training store: whole HR images and their LR as raw uint8 arrays, read without decoding.

Layout of the store folder (one per data set, written by data_prep):

    hr.npy      every HR image (mod-cropped RGB), flattened one after the other: a 1-D uint8 .npy
    lr.npy      their MATLAB-bicubic LR (imresize of the whole image), in the same order
    tiles.npy   int64 rows (image, number, top, left, size_y, size_x): the tiles of
                ``tiles.tile_grid``, in the sorted order of their keys ``<image>_s<number>``
    index.json  format, scale, tiling, and per image: key, height, width, hr/lr offsets and the
                sha256 of its HR and LR bytes (computed as data_prep writes them)

Why this shape (BasicSR reads LMDB; a flat .npy is simpler and needs no extra package):
- ``np.load(mmap_mode="r")`` maps the files: a random crop reads only its own rows' bytes, every
  DataLoader worker shares the OS page cache, and nothing is copied per worker (pickling a
  ``TrainingStore`` sends its folder name, not its arrays).
- Storing whole images keeps each pixel once (3 bytes HR + 3/16 LR), where the overlapping PNG
  tiles held most pixels ~4 times; the tile table keeps the exact tiles the PNG path had, so the
  sampled (tile, crop seed) stream and the pixels it yields are the same as from PNG tiles.
- Opening checks every size against the index (``StoreError`` names the file and says to re-run
  data_prep): a truncated or mismatched store is refused, never read as garbage.
- The per-image digests make the index, and so ``fingerprint()`` (the data of a run identity,
  resume.py), a function of the pixels without reading them: each worker hashes the arrays it
  has in memory anyway. ``verify_content()`` reads the whole store to check them (a resume
  does, before it trusts the checkpoint to continue on this data).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from srgan_pipeline.imaging import imresize
from srgan_pipeline.parallel import ordered_map
from srgan_pipeline.tiles import Tile, tile_grid

FORMAT = 2  # 2: per-image content digests in index.json
RERUN = "re-run data_prep (kedro run --pipelines=data_prep) to rewrite it"
TILE_COLUMNS = ("image", "number", "top", "left", "size_y", "size_x")


class StoreError(ValueError):
    """A store on disk that does not match its index (truncated, mixed up or foreign)."""


@dataclass(frozen=True)
class StoreContent:
    """What data_prep hands the dataset to write: images (loaded lazily, in order) and tiling.

    ``images`` maps key -> (zero-argument loader of the HR array, (height, width)); loaders
    must be picklable (top-level functions or bound methods of picklable objects): they run in
    the worker processes.
    """

    images: dict[str, tuple[Callable[[], np.ndarray], tuple[int, int]]]
    scale: int
    tile_size: int
    tile_stride: int
    workers: int = 1
    progress: bool = False


class TrainingStore:
    """A validated store folder; arrays are memory-mapped on first use in each process."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.index = _read_index(self.folder)
        self.scale: int = self.index["scale"]
        self.images: list[dict[str, Any]] = self.index["images"]
        self.tiles = _check_files(self.folder, self.index)
        self._hr: np.ndarray | None = None
        self._lr: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers get the folder, not arrays
        return {"folder": self.folder}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"])

    def __len__(self) -> int:
        return len(self.tiles)

    def tile_key(self, index: int) -> str:
        image, number = self.tiles[index, :2]
        return f"{self.images[image]['key']}_s{number:03d}"

    def tile_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(HR, LR) views of tile ``index``: memory-mapped, nothing is read until sliced."""
        image, _, top, left, size_y, size_x = (int(v) for v in self.tiles[index])
        tile = Tile(top, left, size_y, size_x)
        return self.hr_image(image)[tile.hr()], self.lr_image(image)[tile.lr(self.scale)]

    def hr_image(self, image: int) -> np.ndarray:
        entry = self.images[image]
        h, w = entry["height"], entry["width"]
        return self._arrays()[0][entry["hr_offset"]:entry["hr_offset"] + h * w * 3].reshape(h, w, 3)

    def lr_image(self, image: int) -> np.ndarray:
        entry, s = self.images[image], self.scale
        h, w = entry["height"] // s, entry["width"] // s
        return self._arrays()[1][entry["lr_offset"]:entry["lr_offset"] + h * w * 3].reshape(h, w, 3)

    def tile_loaders(self) -> tuple[dict[str, Callable[[], np.ndarray]], ...]:
        """HR and LR tiles as ``{key: loader}``, the shape of the former PNG tile partitions."""
        hr, lr = {}, {}
        for index in range(len(self)):
            key = self.tile_key(index)
            hr[key] = lambda i=index: np.array(self.tile_pair(i)[0])
            lr[key] = lambda i=index: np.array(self.tile_pair(i)[1])
        return hr, lr

    def fingerprint(self) -> str:
        """Digest of the index (with each image's content digest), the tile table and the array
        files' sizes: what identifies the training data of a run (resume.py), read from the
        index alone; ``verify_content`` checks that the files still hold those pixels."""
        digest = hashlib.sha256((self.folder / "index.json").read_bytes())
        digest.update(self.tiles.tobytes())
        for name in ("hr.npy", "lr.npy"):
            digest.update(f"{name}:{(self.folder / name).stat().st_size}".encode())
        return digest.hexdigest()

    def verify_content(self) -> None:
        """Every image's HR and LR bytes against the digests data_prep recorded as it wrote them
        (reads the whole store, at disk speed): StoreError naming the file and the image."""
        for image, entry in enumerate(self.images):
            for part, array in (("hr", self.hr_image(image)), ("lr", self.lr_image(image))):
                if _sha256(array) != entry[f"{part}_sha256"]:
                    raise StoreError(
                        f"{self.folder / f'{part}.npy'}: the bytes of image {entry['key']} are "
                        "not the ones data_prep wrote (their sha256 differs from index.json's): "
                        f"the file changed since; {RERUN}")

    def tiles_per_source(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for image in self.tiles[:, 0]:
            source = self.images[image]["key"].split("/", 1)[0]
            counts[source] = counts.get(source, 0) + 1
        return counts

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._hr is None:
            self._hr, self._lr = (_map(self.folder / name) for name in ("hr.npy", "lr.npy"))
        return self._hr, self._lr


def write_store(folder: str | os.PathLike, content: StoreContent) -> None:
    """Write ``content`` to ``folder``: into a temporary folder beside it, then renamed into place.

    The files are allocated at their final size, and each image is written at its offset by
    whichever process computed it (no image crosses a pipe), so the bytes are the same for any
    number of workers. Readers see the old store or the new one; after a crash between the two
    renames, no store (a clear error), and the old one is left as ``<folder>.old-*``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*folder.parent.glob(f".{folder.name}.tmp-*"),  # an interrupted write
                  *folder.parent.glob(f"{folder.name}.old-*")]:   # an interrupted swap
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the store is ordinary project data
    try:
        index, tiles = _layout(content)
        hr_total = sum(e["height"] * e["width"] * 3 for e in index["images"])
        for name, total in (("hr.npy", hr_total), ("lr.npy", hr_total // content.scale**2)):
            _allocate(tmp / name, total)
        tasks = [(loader, tuple(size), tmp, entry, content.scale) for entry, (loader, size)
                 in zip(index["images"], content.images.values(), strict=True)]
        digests = ordered_map(_write_image, tasks, content.workers, "training store",
                              content.progress, total=len(tasks))
        for entry, digest in zip(index["images"], digests, strict=True):
            entry.update(digest)
        np.save(tmp / "tiles.npy", tiles)
        (tmp / "index.json").write_text(json.dumps(index, indent=1))
        for path in tmp.iterdir():
            with open(path, "rb+") as file:
                os.fsync(file.fileno())
        _swap_into_place(tmp, folder)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(error.errno, f"no space left on the disk of {folder.parent} for the "
                          f"training store ({_store_bytes(content) / 1e6:.1f} MB): the previous "
                          "store is unchanged; free space there (or move data/03_primary) and "
                          "re-run data_prep") from error
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _store_bytes(content: StoreContent) -> float:
    """The size of the store's image arrays: every HR pixel and its LR share."""
    hr = sum(height * width * 3 for _, (height, width) in content.images.values())
    return hr * (1 + 1 / content.scale**2)


def _layout(content: StoreContent) -> tuple[dict[str, Any], np.ndarray]:
    images, rows, hr_offset = [], [], 0
    for image, (key, (_, (height, width))) in enumerate(content.images.items()):
        if height % content.scale or width % content.scale:
            raise ValueError(f"{key}: {width}x{height} is not a multiple of the scale "
                             f"{content.scale}; mod-crop it first")
        images.append({"key": key, "height": height, "width": width, "hr_offset": hr_offset,
                       "lr_offset": hr_offset // content.scale**2})
        hr_offset += height * width * 3
        grid = tile_grid(height, width, content.tile_size, content.tile_stride)
        rows += [(f"{key}_s{number:03d}", (image, number, t.top, t.left, t.size_y, t.size_x))
                 for number, t in enumerate(grid, start=1)]
    rows.sort(key=lambda row: row[0])  # the PNG tiles' order: sorted keys
    tiles = np.array([row for _, row in rows], dtype=np.int64).reshape(-1, len(TILE_COLUMNS))
    index = {"format": FORMAT, "scale": content.scale,
             "tiles": {"size": content.tile_size, "stride": content.tile_stride,
                       "count": len(tiles), "columns": list(TILE_COLUMNS)},
             "images": images}
    return index, tiles


def _write_image(loader: Callable[[], np.ndarray], size: tuple[int, int], folder: Path,
                 entry: dict[str, Any], scale: int) -> dict[str, str]:
    """Load one HR image, downsample it, write both at their offsets (runs in a worker); the
    sha256 of each, for the index."""
    hr = np.asarray(loader())
    if hr.shape != (*size, 3) or hr.dtype != np.uint8:
        raise ValueError(f"{entry['key']}: expected a {size[1]}x{size[0]} RGB uint8 image, got "
                         f"shape {hr.shape}, dtype {hr.dtype}; it changed since normalisation: "
                         "re-run data_prep")
    lr = imresize(hr, 1 / scale)
    for name, offset, array in (("hr.npy", entry["hr_offset"], hr),
                                ("lr.npy", entry["lr_offset"], lr)):
        if array.size:  # no flush here: msync would write to disk synchronously, per image;
            # the pages are in the shared page cache, and write_store fsyncs each file once
            target = np.load(folder / name, mmap_mode="r+")
            target[offset:offset + array.size] = array.reshape(-1)
            del target
    return {"hr_sha256": _sha256(hr), "lr_sha256": _sha256(lr)}


def _sha256(array: np.ndarray) -> str:
    """Digest of an array's bytes in C order: the order the store holds them in."""
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _allocate(path: Path, total: int) -> None:
    if total == 0:  # numpy cannot map an empty file
        np.save(path, np.zeros(0, np.uint8))
        return
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(total,))
    array.flush()
    del array
    # open_memmap leaves a sparse file: on a full disk a write through the map would then end
    # the process with SIGBUS. Reserving the blocks now turns that into ENOSPC, here.
    with open(path, "rb+") as file:
        os.posix_fallocate(file.fileno(), 0, os.fstat(file.fileno()).st_size)


def _swap_into_place(tmp: Path, folder: Path) -> None:
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{folder.name}.old-", dir=folder.parent))
        os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)


def _read_index(folder: Path) -> dict[str, Any]:
    path = folder / "index.json"
    if not path.is_file():
        raise StoreError(f"No training store at {folder} ({path} is missing): {RERUN}")
    try:
        index = json.loads(path.read_text())
        images, scale = index["images"], index["scale"]
        assert index["format"] == FORMAT, f"format {index['format']}, expected {FORMAT}"
        assert isinstance(scale, int) and scale >= 1, f"scale {scale!r}"
        for entry in images:
            assert {"key", "height", "width", "hr_offset", "lr_offset", "hr_sha256",
                    "lr_sha256"} <= set(entry), entry
    except (ValueError, KeyError, TypeError, AssertionError) as error:
        raise StoreError(f"{path} is not a training store index this project wrote "
                         f"({error}): {RERUN}") from error
    return index


def _check_files(folder: Path, index: dict[str, Any]) -> np.ndarray:
    """Every file's header and size against the index; returns the tile table."""
    scale, offsets = index["scale"], {"hr": 0, "lr": 0}
    for entry in index["images"]:
        h, w = entry["height"], entry["width"]
        if h % scale or w % scale or h < scale or w < scale:
            raise StoreError(f"{folder / 'index.json'}: image {entry['key']} is {w}x{h}, not a "
                             f"positive multiple of the scale {scale}: {RERUN}")
        for part, size in (("hr", h * w * 3), ("lr", h * w * 3 // scale**2)):
            if entry[f"{part}_offset"] != offsets[part]:
                raise StoreError(f"{folder / 'index.json'}: image {entry['key']} starts at "
                                 f"{entry[f'{part}_offset']} in {part}.npy, expected "
                                 f"{offsets[part]}: {RERUN}")
            offsets[part] += size
    for part in ("hr", "lr"):
        shape, dtype = _npy_header(folder / f"{part}.npy")
        if dtype != np.uint8 or shape != (offsets[part],):
            raise StoreError(f"{folder / f'{part}.npy'} holds {dtype} of shape {shape}, but "
                             f"index.json describes {offsets[part]} uint8 values: {RERUN}")
    shape, dtype = _npy_header(folder / "tiles.npy")
    if dtype != np.int64 or len(shape) != 2 or shape[1] != len(TILE_COLUMNS):
        raise StoreError(f"{folder / 'tiles.npy'} is {dtype} {shape}, expected int64 rows of "
                         f"{TILE_COLUMNS}: {RERUN}")
    tiles = np.load(folder / "tiles.npy")
    _check_tiles(folder / "tiles.npy", tiles, index)
    return tiles


def _check_tiles(path: Path, tiles: np.ndarray, index: dict[str, Any]) -> None:
    images, scale = index["images"], index["scale"]
    if len(tiles) != index["tiles"]["count"]:
        raise StoreError(f"{path} has {len(tiles)} tiles, index.json says "
                         f"{index['tiles']['count']}: {RERUN}")
    if not len(tiles):
        return
    image, _, top, left, size_y, size_x = tiles.T
    if image.min() < 0 or image.max() >= len(images):
        raise StoreError(f"{path} names images outside index.json's {len(images)}: {RERUN}")
    heights = np.array([e["height"] for e in images])[image]
    widths = np.array([e["width"] for e in images])[image]
    inside = (top >= 0) & (left >= 0) & (size_y > 0) & (size_x > 0)
    inside &= (top + size_y <= heights) & (left + size_x <= widths)
    aligned = ~((top | left | size_y | size_x) % scale).astype(bool)
    if not (inside & aligned).all():
        bad = int(np.flatnonzero(~(inside & aligned))[0])
        raise StoreError(f"{path}: tile row {bad} {tiles[bad].tolist()} is outside its image or "
                         f"not aligned to the scale {scale}: {RERUN}")


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header, and the file size they imply checked against disk."""
    if not path.is_file():
        raise StoreError(f"{path} is missing: {RERUN}")
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(file)
            data_start = file.tell()
    except (ValueError, OSError, SyntaxError) as error:
        raise StoreError(f"{path} is not a .npy file ({error}): {RERUN}") from error
    expected = data_start + int(np.prod(shape)) * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise StoreError(f"{path} is {actual} bytes, its header describes {expected} "
                         f"(truncated or still being written?): {RERUN}")
    return tuple(shape), dtype


def _map(path: Path) -> np.ndarray:
    shape, _ = _npy_header(path)
    if not shape[0]:  # numpy cannot map an empty file
        return np.zeros(0, np.uint8)
    # A plain ndarray view of the map: slicing an np.memmap runs its __array_finalize__ on every
    # view, a Python-level cost on every sample that a plain view does not pay.
    return np.load(path, mmap_mode="r").view(np.ndarray)

