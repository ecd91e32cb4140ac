"""Shared fixtures. Tests that need ../shared/datasets skip when it is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = PROJECT_ROOT.parent / "shared" / "datasets"


def shared_dataset(*parts: str) -> Path:
    """Path under ../shared/datasets, or skip the test with the reason."""
    path = SHARED_DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: this check needs the benchmark data beside the project")
    return path


def write_image(path: Path, size: tuple[int, int] = (128, 96), mode: str = "RGB", seed: int = 0):
    """A random image of ``size`` (width, height) saved at ``path``; returns its RGB array."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).convert(mode).save(path)
    return array


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three good images of different sizes, one nested, one too small, one corrupt."""
    folder = tmp_path / "images"
    write_image(folder / "a.png", (130, 101), seed=1)
    write_image(folder / "nested" / "b.jpg", (200, 120), seed=2)
    write_image(folder / "c.png", (96, 100), mode="L", seed=3)
    write_image(folder / "tiny.png", (40, 40), seed=4)
    good = (folder / "a.png").read_bytes()
    (folder / "broken.png").write_bytes(good[: len(good) // 2])
    return folder
