"""The training store: same tiles and crops as the PNG tiles, same bytes for any number of
workers, and a damaged store refused with the file named."""

from __future__ import annotations

import itertools
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from kedro.io.core import DatasetError

from srgan_pipeline.datasets import RGBImageDataset, TrainingStoreDataset
from srgan_pipeline.imaging import imresize
from srgan_pipeline.patches import PatchDataset, TileLoaders, make_loader
from srgan_pipeline.tiles import tile_grid
from srgan_pipeline.training_store import StoreContent, StoreError, TrainingStore, write_store

SCALE, SIZE, STRIDE = 4, 64, 32
# (height, width): a wide one, a tall one, and one with an axis shorter than a tile
SHAPES = {"src/img1": (96, 136), "src/img10": (136, 72), "other/b": (48, 100)}


def photo(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Smooth content (a blurred random field), so bicubic downsampling is not trivial noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (shape[0] // 8 + 1, shape[1] // 8 + 1, 3)).astype(np.uint8)
    return small.repeat(8, 0).repeat(8, 1)[: shape[0], : shape[1]] // 2 + rng.integers(
        0, 128, (*shape, 3), dtype=np.uint8)


def content(workers: int = 1) -> StoreContent:
    images = {key: (partial(photo, shape, seed), shape)
              for seed, (key, shape) in enumerate(SHAPES.items())}
    return StoreContent(images, SCALE, SIZE, STRIDE, workers=workers)


def png_tiles(folder: Path) -> tuple[dict, dict]:
    """What data_prep wrote before the store: HR and LR tiles as PNG files, keyed as then."""
    hr_tiles, lr_tiles = {}, {}
    for seed, (key, shape) in enumerate(SHAPES.items()):
        hr = photo(shape, seed)
        lr = imresize(hr, 1 / SCALE)
        for number, tile in enumerate(tile_grid(*shape, SIZE, STRIDE), start=1):
            tile_key = f"{key}_s{number:03d}"
            for tiles, array, window, part in ((hr_tiles, hr, tile.hr(), "hr"),
                                               (lr_tiles, lr, tile.lr(SCALE), "lr")):
                dataset = RGBImageDataset(filepath=str(folder / part / f"{tile_key}.png"),
                                          save_args={"compress_level": 1})
                dataset.save(array[window])
                tiles[tile_key] = dataset.load
    return hr_tiles, lr_tiles


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TrainingStore:
    folder = tmp_path_factory.mktemp("store") / "train_store"
    write_store(folder, content())
    return TrainingStore(folder)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> tuple[dict, dict]:
    return png_tiles(tmp_path_factory.mktemp("png_tiles"))


def test_the_store_holds_the_png_tiles_in_their_order(store, tiles):
    hr_tiles, lr_tiles = tiles
    assert [store.tile_key(i) for i in range(len(store))] == sorted(hr_tiles)
    for index, key in enumerate(sorted(hr_tiles)):
        hr, lr = store.tile_pair(index)
        np.testing.assert_array_equal(hr, hr_tiles[key]())
        np.testing.assert_array_equal(lr, lr_tiles[key]())


def test_crops_from_the_store_are_the_png_tiles_crops(store, tiles):
    from_png = PatchDataset(TileLoaders(*tiles, scale=SCALE), patch_size=32)
    from_store = PatchDataset(store, patch_size=32)
    assert len(from_png) == len(from_store)
    for index, seed in itertools.product(range(len(from_png)), (0, 7, 2**40)):
        for a, b in zip(from_png[index, seed], from_store[index, seed], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_loader_streams_the_same_batches_from_the_store_and_from_png(store, tiles,
                                                                         num_workers):
    cpu = torch.device("cpu")
    from_png = make_loader(PatchDataset(TileLoaders(*tiles, scale=SCALE), patch_size=32), 4, 0,
                           3, cpu)
    from_store = make_loader(PatchDataset(store, patch_size=32), 4, num_workers, 3, cpu,
                             start_batch=0)
    for _, (lr_a, hr_a), (lr_b, hr_b) in zip(range(5), from_png, from_store, strict=False):
        assert torch.equal(lr_a, lr_b) and torch.equal(hr_a, hr_b)


def test_a_resumed_stream_continues_where_the_store_stream_was(store):
    cpu, dataset = torch.device("cpu"), PatchDataset(store, patch_size=32)
    whole = list(itertools.islice(make_loader(dataset, 2, 0, 5, cpu), 6))
    resumed = list(itertools.islice(make_loader(dataset, 2, 0, 5, cpu, start_batch=4), 2))
    for (lr_a, hr_a), (lr_b, hr_b) in zip(whole[4:], resumed, strict=True):
        assert torch.equal(lr_a, lr_b) and torch.equal(hr_a, hr_b)


def test_each_pixel_is_stored_once(store):
    hr_bytes = sum(h * w * 3 for h, w in SHAPES.values())
    assert store.hr_image(0).base is not None  # a view of the mapped file, not a copy
    assert (store.folder / "hr.npy").stat().st_size - hr_bytes < 256  # only the .npy header
    assert (store.folder / "lr.npy").stat().st_size - hr_bytes // 16 < 256


def test_pickling_sends_the_folder_not_the_arrays(store):
    import pickle

    store.tile_pair(0)  # maps the arrays in this process
    payload = pickle.dumps(store)
    assert len(payload) < 1000
    np.testing.assert_array_equal(pickle.loads(payload).tile_pair(3)[0], store.tile_pair(3)[0])


def test_any_number_of_workers_writes_the_same_bytes(tmp_path):
    write_store(tmp_path / "one", content(workers=1))
    write_store(tmp_path / "two", content(workers=2))
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == ["hr.npy", "index.json", "lr.npy", "tiles.npy"]
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_rewriting_replaces_the_store_and_leaves_no_temporary_folders(tmp_path):
    write_store(tmp_path / "s", content())
    smaller = StoreContent(dict(list(content().images.items())[:1]), SCALE, SIZE, STRIDE)
    (tmp_path / ".s.tmp-killed").mkdir()  # what an interrupted write or swap leaves
    (tmp_path / "s.old-killed").mkdir()
    write_store(tmp_path / "s", smaller)
    assert len(TrainingStore(tmp_path / "s").images) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_an_image_that_changed_since_normalisation_stops_the_write(tmp_path):
    wrong = StoreContent({"src/a": (partial(photo, (96, 136), 0), (96, 140))}, SCALE, SIZE, STRIDE)
    with pytest.raises(ValueError, match=r"src/a: expected a 140x96 .* re-run data_prep"):
        write_store(tmp_path / "s", wrong)
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left


def _damaged(tmp_path: Path, damage) -> Path:
    folder = tmp_path / "train_store"
    write_store(folder, content())
    damage(folder)
    return folder


def _truncate(name):
    def damage(folder):
        path = folder / name
        path.write_bytes(path.read_bytes()[:-100])
    return damage


def _edit_index(edit):
    def damage(folder):
        index = json.loads((folder / "index.json").read_text())
        edit(index)
        (folder / "index.json").write_text(json.dumps(index))
    return damage


def _replace_npy(name, array):
    return lambda folder: np.save(folder / name, array)


@pytest.mark.parametrize(("damage", "file", "says"), [
    (_truncate("hr.npy"), "hr.npy", "truncated"),
    (_truncate("lr.npy"), "lr.npy", "truncated"),
    (_truncate("tiles.npy"), "tiles.npy", "truncated"),
    (lambda f: (f / "index.json").unlink(), "index.json", "missing"),
    (lambda f: (f / "index.json").write_text("{not json"), "index.json", "not a training store"),
    (_edit_index(lambda i: i["images"][0].update(height=100)), "index.json", "starts at"),
    (_edit_index(lambda i: i["images"][-1].update(height=52)), "hr.npy", "index.json describes"),
    (_edit_index(lambda i: i["images"][0].update(width=137)), "index.json", "multiple of the"),
    (_edit_index(lambda i: i.update(scale=2)), "index.json", "in lr.npy"),
    (_replace_npy("lr.npy", np.zeros(1, np.uint8)), "lr.npy", "index.json describes"),
    (lambda f: np.save(f / "hr.npy", np.load(f / "hr.npy").astype(np.uint16)), "hr.npy",
     "uint16"),
    (_replace_npy("tiles.npy", np.full((3, 6), 1000, np.int64)), "tiles.npy", "3 tiles"),
    (lambda f: np.save(f / "tiles.npy", np.load(f / "tiles.npy") + [0, 0, 2, 0, 0, 0]),
     "tiles.npy", "not aligned"),
    (lambda f: np.save(f / "tiles.npy", np.load(f / "tiles.npy") + [0, 0, 400, 0, 0, 0]),
     "tiles.npy", "outside its image"),
])
def test_a_damaged_store_is_refused_naming_the_file(tmp_path, damage, file, says):
    folder = _damaged(tmp_path, damage)
    with pytest.raises(StoreError, match=says) as error:
        TrainingStore(folder)
    assert str(folder / file) in str(error.value)
    assert "re-run data_prep" in str(error.value)
    with pytest.raises(DatasetError, match="re-run data_prep"):  # the same through the catalog
        TrainingStoreDataset(filepath=str(folder)).load()


def test_the_dataset_saves_loads_and_previews(tmp_path):
    dataset = TrainingStoreDataset(filepath=str(tmp_path / "train_store"))
    assert not dataset.exists()
    dataset.save(content())
    assert dataset.exists()
    store = dataset.load()
    assert len(store) == sum(len(tile_grid(*shape, SIZE, STRIDE)) for shape in SHAPES.values())
    assert store.tiles_per_source() == {"other": 3, "src": len(store) - 3}
    assert len(dataset.preview()) > 100  # a base64 PNG
    with pytest.raises(DatasetError, match="saves a StoreContent"):
        dataset.save({"not": "content"})


def test_other_pixels_of_the_same_names_and_sizes_are_another_fingerprint(tmp_path):
    """The run identity's data (resume.py): re-prepared from other images, a store must not
    pass for the one a checkpoint trained on; rewritten from the same images, it does."""
    write_store(tmp_path / "a", content())
    write_store(tmp_path / "again", content())
    other = {key: (partial(photo, shape, seed + 10), shape)
             for seed, (key, shape) in enumerate(SHAPES.items())}
    write_store(tmp_path / "b", StoreContent(other, SCALE, SIZE, STRIDE))
    a, again, b = (TrainingStore(tmp_path / name) for name in ("a", "again", "b"))
    assert a.index["images"][0].keys() == b.index["images"][0].keys()
    assert a.fingerprint() == again.fingerprint() != b.fingerprint()


@pytest.mark.parametrize("name", ["hr.npy", "lr.npy"])
def test_bytes_changed_after_data_prep_fail_the_content_check_naming_file_and_image(tmp_path,
                                                                                   name):
    folder = tmp_path / "train_store"
    write_store(folder, content())
    TrainingStore(folder).verify_content()  # as written: no complaint
    fingerprint = TrainingStore(folder).fingerprint()
    with open(folder / name, "r+b") as file:  # flip one byte inside the last image
        file.seek(-5, 2)
        byte = file.read(1)
        file.seek(-5, 2)
        file.write(bytes([byte[0] ^ 0xFF]))
    store = TrainingStore(folder)  # sizes and index unchanged: opening alone cannot tell
    assert store.fingerprint() == fingerprint
    with pytest.raises(StoreError) as error:
        store.verify_content()
    message = str(error.value)
    assert str(folder / name) in message and "image other/b" in message
    assert "re-run data_prep" in message


# The store written on a disk too small for it, in a process of its own: before the space was
# reserved, the write through the memory map ended that process with SIGBUS and no message.
FULL_DISK_WRITE = """
import sys
import numpy as np
from srgan_pipeline.datasets import TrainingStoreDataset
from srgan_pipeline.training_store import StoreContent

side = int(sys.argv[2])
def image():
    return np.full((side, side, 3), 7, np.uint8)

TrainingStoreDataset(filepath=sys.argv[1]).save(StoreContent({"a/b": (image, (side, side))},
                                                             4, 64, 32))
"""


def test_a_full_disk_while_the_store_is_written_is_a_clear_error_and_keeps_the_old_store(
        tmp_path):
    import subprocess
    import sys

    from conftest import tmpfs

    with tmpfs(tmp_path / "disk", "256k") as disk:
        store = disk / "train_store"
        def write(side: int) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-c", FULL_DISK_WRITE, str(store), str(side)],
                                  capture_output=True, text=True, timeout=120)

        assert write(64).returncode == 0  # 15 kB: fits
        full = write(512)  # 0.8 MB: does not
        assert full.returncode == 1, full.stderr[-2000:]  # an error, not a signal (SIGBUS: -7)
        assert f"no space left on the disk of {disk} for the training store" in full.stderr
        assert "re-run data_prep" in full.stderr
        assert TrainingStore(store).hr_image(0).shape == (64, 64, 3)  # the old store
        assert [p.name for p in disk.iterdir()] == ["train_store"]  # no temporary left
