"""Overlapping training tiles, cut in HR and at the same place in the x``scale`` LR image.

Why tiles at all: training samples small random crops (96 px HR), and a 480 px tile holds about
1/12 of the pixels of the 2040x1356 image it came from, so reading one costs that much less and
data loading keeps up with the model.
480/240 is BasicSR's choice for DIV2K: half-overlapping tiles lose no crop position at a seam.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """A square HR window; ``lr`` gives the matching window in the LR image."""

    top: int
    left: int
    size_y: int
    size_x: int

    def hr(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.size_y), slice(self.left, self.left + self.size_x)

    def lr(self, scale: int) -> tuple[slice, slice]:
        return (
            slice(self.top // scale, (self.top + self.size_y) // scale),
            slice(self.left // scale, (self.left + self.size_x) // scale),
        )


def tile_origins(length: int, size: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride``, plus one flush with the far edge.

    The extra last window keeps the border in the data set (BasicSR does the same); an axis
    shorter than ``size`` yields a single window covering all of it.
    """
    if length <= size:
        return [0]
    origins = list(range(0, length - size + 1, stride))
    if origins[-1] != length - size:
        origins.append(length - size)
    return origins


def tile_grid(height: int, width: int, size: int, stride: int) -> list[Tile]:
    """All tiles of an image, row by row; sizes clip to the image on axes shorter than ``size``."""
    return [
        Tile(top, left, min(size, height), min(size, width))
        for top in tile_origins(height, size, stride)
        for left in tile_origins(width, size, stride)
    ]
