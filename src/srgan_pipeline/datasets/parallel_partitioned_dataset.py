"""kedro-datasets' ``PartitionedDataset``, saving its lazy partitions in several processes.

The parent class calls each partition's loader and saves it one after another in the Kedro
process; for data_prep (decode, mod-crop, downsample, PNG-encode thousands of 2K images) that
leaves every core but one idle. A node returns a ``ParallelPartitions`` (a dict that also
carries the worker count and a label for the progress bar); each partition is then computed
and written by a worker process (``srgan_pipeline.parallel.ordered_map``), so no image crosses
a pipe and the files are the same as from one process. Anything else is saved as before.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from kedro_datasets.partitions import PartitionedDataset

from srgan_pipeline.parallel import ordered_map


class ParallelPartitions(dict):
    """Partitions ``{id: loader}`` to save in ``workers`` processes (loaders must pickle)."""

    def __init__(self, partitions: dict[str, Any], workers: int = 1, label: str = "partitions",
                 progress: bool = False):
        super().__init__(partitions)
        self.workers, self.label, self.progress = workers, label, progress


class ParallelPartitionedDataset(PartitionedDataset):
    """``PartitionedDataset`` whose ``save`` runs a ``ParallelPartitions``' loaders in workers."""

    def save(self, data: dict[str, Any]) -> None:
        if not isinstance(data, ParallelPartitions) or not self._save_lazily:
            super().save(data)
            return
        if self._overwrite and self._filesystem.exists(self._normalized_path):
            self._filesystem.rm(self._normalized_path, recursive=True)
        tasks = []
        for partition_id, partition_data in sorted(data.items()):
            kwargs = deepcopy(self._dataset_config)
            kwargs[self._filepath_arg] = self._join_protocol(self._partition_to_path(partition_id))
            tasks.append((self._dataset_type(**kwargs), partition_data))
        for _ in ordered_map(_save_partition, tasks, data.workers, data.label, data.progress,
                             total=len(tasks)):
            pass
        self._invalidate_caches()


def _save_partition(dataset: Any, partition_data: Any) -> None:
    dataset.save(partition_data() if callable(partition_data) else partition_data)
