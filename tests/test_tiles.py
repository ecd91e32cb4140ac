import pytest

from srgan_pipeline.params import ParameterError, validate_params
from srgan_pipeline.tiles import Tile, tile_grid, tile_origins


def test_origins_step_by_stride_and_end_flush_with_the_edge():
    assert tile_origins(1000, 480, 240) == [0, 240, 480, 520]
    assert tile_origins(960, 480, 240) == [0, 240, 480]


def test_short_axis_gives_one_window_covering_it():
    assert tile_origins(300, 480, 240) == [0]
    grid = tile_grid(300, 1000, 480, 240)
    assert len(grid) == 4
    assert all(t.size_y == 300 and t.size_x == 480 for t in grid)


def test_tiles_cover_every_pixel():
    height, width = 517 // 4 * 4, 733 // 4 * 4
    covered = [[False] * width for _ in range(height)]
    for tile in tile_grid(height, width, 192, 96):
        rows, cols = tile.hr()
        for y in range(rows.start, rows.stop):
            covered[y][cols.start : cols.stop] = [True] * (cols.stop - cols.start)
    assert all(all(row) for row in covered)


def test_lr_window_is_the_hr_window_divided_by_scale():
    tile = Tile(top=240, left=480, size_y=480, size_x=480)
    assert tile.lr(4) == (slice(60, 180), slice(120, 240))


@pytest.mark.parametrize(
    ("size", "stride", "message"),
    [(482, 240, r"tiles\.size: must be a positive multiple of the scale \(4\), got 482"),
     (480, 242, r"tiles\.stride: must be a positive multiple"),
     (480, 484, r"tiles: stride \(484\) is larger than size \(480\)"),
     (0, 240, r"tiles\.size: must be >= 1, got 0")],
)
def test_bad_tiling_is_refused_naming_the_parameter(size, stride, message):
    with pytest.raises(ParameterError, match=message) as error:
        validate_params("data_prep.tiles", {"size": size, "stride": stride}, scale=4)
    assert str(error.value).startswith("data_prep.tiles")
