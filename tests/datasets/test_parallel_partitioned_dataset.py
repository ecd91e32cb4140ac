"""ParallelPartitionedDataset writes what PartitionedDataset writes, from worker processes."""

from functools import partial

import numpy as np
from kedro_datasets.partitions import PartitionedDataset

from srgan_pipeline.datasets import ParallelPartitionedDataset, ParallelPartitions

PNG = {"type": "srgan_pipeline.datasets.RGBImageDataset", "save_args": {"compress_level": 1}}


def random_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def test_the_same_files_as_the_serial_dataset(tmp_path):
    partitions = {f"set/{name}": partial(random_image, seed)
                  for seed, name in enumerate(["b", "a", "sub/c"])}
    PartitionedDataset(path=str(tmp_path / "serial"), dataset=PNG,
                       filename_suffix=".png").save(partitions)
    parallel = ParallelPartitionedDataset(path=str(tmp_path / "parallel"), dataset=PNG,
                                          filename_suffix=".png", overwrite=True)
    parallel.save(ParallelPartitions(partitions, workers=2, label="test"))
    serial_files = sorted(p.relative_to(tmp_path / "serial")
                          for p in (tmp_path / "serial").rglob("*.png"))
    assert serial_files == sorted(p.relative_to(tmp_path / "parallel")
                                  for p in (tmp_path / "parallel").rglob("*.png"))
    for name in serial_files:
        serial, parallel_file = tmp_path / "serial" / name, tmp_path / "parallel" / name
        assert serial.read_bytes() == parallel_file.read_bytes()
    loaded = parallel.load()
    np.testing.assert_array_equal(loaded["set/sub/c"](), random_image(2))
    parallel.save(ParallelPartitions({"set/a": partial(random_image, 5)}, workers=2))
    assert list(parallel.load()) == ["set/a"]  # overwrite: the old partitions are gone


def test_a_plain_dict_is_saved_as_before(tmp_path):
    dataset = ParallelPartitionedDataset(path=str(tmp_path), dataset=PNG, filename_suffix=".png")
    dataset.save({"x": random_image(0)})
    np.testing.assert_array_equal(dataset.load()["x"](), random_image(0))
