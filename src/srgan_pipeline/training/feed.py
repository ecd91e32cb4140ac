"""Batches into the training step: device, memory format, count, and time spent waiting."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from srgan_pipeline.training import clock

Batch = tuple[torch.Tensor, torch.Tensor]  # (LR, HR) images in [0, 1]


class BatchFeed:
    """Takes (LR, HR) batches from an endless iterator onto the training device.

    ``taken`` counts the batches of the phase (resumed runs start from the checkpoint's count,
    so the loader restarts at that sample); ``wait`` is the time spent blocked on the data since
    the last :meth:`reset_wait`: the share of a step that a faster data path would win back.
    """

    def __init__(self, batches: Iterator[Batch], device: torch.device, channels_last: bool,
                 taken: int = 0):
        self.batches, self.device, self.taken, self.wait = batches, device, taken, 0.0
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def next(self) -> Batch:
        start = clock.now()
        try:
            low_res, high_res = next(self.batches)
        except StopIteration:
            raise RuntimeError(
                "the batch iterator ran out; pass an endless one, e.g. make_loader(...)"
            ) from None
        self.wait += clock.now() - start
        self.taken += 1
        return (
            low_res.to(self.device, non_blocking=True, memory_format=self.memory_format),
            high_res.to(self.device, non_blocking=True, memory_format=self.memory_format),
        )

    def reset_wait(self) -> float:
        """The waiting time since the last reset; starts a new window."""
        wait, self.wait = self.wait, 0.0
        return wait
