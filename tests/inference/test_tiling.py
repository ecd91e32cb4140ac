"""inference.tiling: the receptive radius, the tile cores, and tiles that agree with one pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import grey_levels, lr_waves

from srgan_pipeline.inference import InferencePlan, receptive_radius, tile_spans, upscale
from srgan_pipeline.inference.tiling import (
    features_tile,
    stage_radii,
    upscale_tiles,
    upscale_tiles_in_stages,
)
from srgan_pipeline.metrics import quantize
from srgan_pipeline.models import Generator, hr_to_unit

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(scale=4, channels=8, num_blocks=2).eval()


def _untiled(generator: Generator, lr: np.ndarray) -> np.ndarray:
    """The reference: one plain forward of the whole image, NCHW, converted once."""
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().contiguous() / 255
    with torch.no_grad():
        y = generator(x)
    return quantize(hr_to_unit(y)[0].permute(1, 2, 0).numpy())


@pytest.mark.parametrize("num_blocks", [2, 16])
def test_receptive_radius_bounds_how_far_an_lr_pixel_reaches(num_blocks):
    """Changing one LR pixel changes output pixels up to ``radius`` LR pixels away (an upper
    bound, tight to the pixel), and none further: what tiling's overlap relies on."""
    torch.manual_seed(0)
    generator = Generator(channels=8, num_blocks=num_blocks).eval()
    radius = receptive_radius(generator)
    size, centre = 2 * radius + 9, radius + 4
    lr = torch.rand(1, 3, size, size)
    changed = lr.clone()
    changed[0, :, centre, centre] += 0.5
    with torch.no_grad():
        moved = (generator(changed) - generator(lr)).abs().amax(dim=(0, 1)) > 0
    rows, cols = torch.nonzero(moved, as_tuple=True)
    reach = max((rows // 4 - centre).abs().max().item(), (cols // 4 - centre).abs().max().item())
    assert radius - 1 <= reach <= radius


def test_tile_spans():
    assert tile_spans(53, 24) == [(0, 18), (18, 35), (35, 53)]
    assert tile_spans(5, 24) == [(0, 5)]
    assert tile_spans(257, 256) == [(0, 128), (128, 257)]  # balanced, no 1 px tile


def test_tiled_equals_untiled_within_one_grey_level(generator):
    lr = lr_waves(53, 70)
    reference = _untiled(generator, lr)
    tiled = upscale(generator, lr, tile=24)  # 3 x 3 tiles, default overlap (12)
    assert tiled.shape == (4 * 53, 4 * 70, 3) and tiled.dtype == np.uint8
    assert grey_levels(tiled, reference).max() <= 1
    # The check has teeth: without context the seams are wrong by many grey levels.
    assert grey_levels(upscale(generator, lr, tile=24, overlap=0), reference).max() > 5


def test_tiles_run_any_callable_model():
    """Tiling needs no generator: any NCHW tensor -> tensor model (here nearest neighbour x2,
    whose receptive radius is 0) gives the same image however it is cut."""
    lr = lr_waves(9, 13, seed=5)

    def nearest(x):
        return x.repeat_interleave(2, -1).repeat_interleave(2, -2) * 2 - 1

    tiled = upscale_tiles(nearest, lr, tile=4, overlap=0, scale=2, device=torch.device("cpu"),
                          dtype=torch.float32, memory_format=torch.contiguous_format)
    assert np.array_equal(tiled, lr.repeat(2, 0).repeat(2, 1))


def test_the_two_stages_reach_as_far_as_the_whole_generator():
    """The features stage holds the head and the blocks (4 + 2 per block + 1 LR px), the HR
    stage the rest; together the whole radius (16 blocks: 37 + 3 = 40)."""
    for blocks, skip in ((16, False), (2, True)):
        generator = Generator(channels=8, num_blocks=blocks, input_skip=skip)
        features, reconstruct = stage_radii(generator)
        assert features == 4 + 2 * blocks + 1
        assert features + reconstruct == receptive_radius(generator)
    assert stage_radii(torch.nn.Conv2d(3, 3, 1)) is None  # no stages: run whole


@pytest.mark.parametrize("input_skip", [False, True])
def test_staged_tiles_equal_untiled_and_each_stage_needs_its_whole_reach(input_skip):
    """Features tiles of 24 px, HR tiles of 10 inside them (several of each, cut unevenly),
    against one plain forward; with either stage's context one pixel short of its reach the
    cuts show (the check has teeth)."""
    torch.manual_seed(0)
    generator = Generator(channels=8, num_blocks=2, input_skip=input_skip).eval()
    lr = lr_waves(53, 41, seed=4)
    reference = _untiled(generator, lr)
    upscaler = InferencePlan(torch.device("cpu"), "fp32", 10).prepare(generator)
    assert upscaler.stage_radii == stage_radii(generator)

    def staged(radii):
        return upscale_tiles_in_stages(upscaler.model, lr, tile=10, feature_tile=24, radii=radii,
                                       scale=4, device=torch.device("cpu"), dtype=torch.float32,
                                       memory_format=torch.channels_last)

    features, reconstruct = stage_radii(generator)
    assert grey_levels(staged((features, reconstruct)), reference).max() <= 1
    assert grey_levels(staged((0, reconstruct)), reference).max() > 5
    assert grey_levels(staged((features + reconstruct, 0)), reference).max() > 1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_upscaler_runs_a_generator_in_its_stages_and_other_models_whole(monkeypatch,
                                                                            precision):
    """What Upscaler.upscale runs: the two stages for a generator (the features once per
    features tile of its precision), the whole model where an overlap is asked for."""
    torch.manual_seed(0)
    upscaler = InferencePlan(torch.device("cpu"), precision, 8).prepare(
        Generator(channels=8, num_blocks=2).eval())
    calls = {"features": 0, "whole": 0}
    features, forward = upscaler.model.features, upscaler.model.forward

    def counted(name, fn):
        def wrapped(*args):
            calls[name] += 1
            return fn(*args)
        return wrapped

    monkeypatch.setattr(upscaler.model, "features", counted("features", features))
    monkeypatch.setattr(upscaler.model, "forward", counted("whole", forward))
    side = features_tile(8, precision)  # fp32: 8, bf16: 12
    feature_tiles = len(tile_spans(30, side)) * len(tile_spans(20, side))
    upscaler.upscale(lr_waves(30, 20))
    assert calls == {"features": feature_tiles, "whole": 0}
    upscaler.upscale(lr_waves(30, 20), overlap=3)  # approximate: tiles of 8 px, whole model
    assert calls == {"features": feature_tiles + 4 * 3, "whole": 4 * 3}  # forward: features


PEAK_RSS_CHILD = """
import json, sys
import numpy as np, torch
from srgan_pipeline.inference import receptive_radius, upscale
from srgan_pipeline.models import Generator

def status(field):  # bytes; VmHWM is this process's peak (getrusage's includes the parent's)
    line, = (l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024

torch.set_num_threads(1)
side, tile = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
generator = Generator(scale=4, channels=8, num_blocks=2).eval()
rng = np.random.default_rng(0)
lr = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak so far (imports) reset to the current size
peak = lambda: status("VmHWM")
before = status("VmRSS")
warm = min(side, tile + 2 * receptive_radius(generator))  # one whole tile, with its context
upscale(generator, lr[:warm, :warm], tile=tile)
one_tile = peak()
upscale(generator, lr, tile=tile)
print(json.dumps({"before": before, "one_tile": one_tile, "whole": peak()}))
"""


def _peak_rss(side: int, *tiles: int) -> list[dict[str, int]]:
    """Per tile size, the peak resident bytes of a fresh process (run side by side): before
    inference, after one tile, after the whole image."""
    import json
    import subprocess
    import sys

    children = [subprocess.Popen([sys.executable, "-c", PEAK_RSS_CHILD, str(side), str(tile)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for tile in tiles]
    answers = [child.communicate(timeout=600) for child in children]
    for child, (_, stderr) in zip(children, answers, strict=True):
        assert child.returncode == 0, stderr[-3000:]
    return [json.loads(stdout.splitlines()[-1]) for stdout, _ in answers]


def test_tiled_inference_memory_is_one_tile_plus_the_output():
    """A 256 x 256 LR image in 32 px tiles (64 tiles), in a fresh process: its peak RSS stays
    within the peak of a lone tile measured first (so the bound is this machine's own, not a
    tuned number), plus twice that tile's working set (tiles are freed one by one, but a freed
    block of one tile shape may not serve the next shape), plus the uint8 input and output.
    The same image untiled needs all of its HR feature maps at once and breaks the bound."""
    side = 256
    tiled, untiled = _peak_rss(side, 32, 10 * side)
    one_tile = tiled["one_tile"] - tiled["before"]
    images = 3 * side * side * (1 + 16)  # uint8 LR in and x4 HR out
    bound = tiled["one_tile"] + 2 * one_tile + images
    assert tiled["whole"] <= bound, (tiled, bound)
    assert untiled["whole"] - untiled["before"] > bound - tiled["before"], (untiled, bound)


def test_image_smaller_than_a_tile(generator):
    lr = lr_waves(5, 7, seed=1)
    out = upscale(generator, lr, tile=24)
    assert out.shape == (20, 28, 3)
    assert grey_levels(out, _untiled(generator, lr)).max() <= 1


@pytest.mark.parametrize("size", [(37, 29), (1, 1), (33, 10)])
def test_odd_sizes_not_multiple_of_the_tile(generator, size):
    lr = lr_waves(*size, seed=2)
    out = upscale(generator, lr, tile=10)
    assert out.shape == (4 * size[0], 4 * size[1], 3)
    assert grey_levels(out, _untiled(generator, lr)).max() <= 1


def test_channels_last_and_default_format_agree(generator):
    lr = lr_waves(30, 41, seed=3)
    nhwc = upscale(generator, lr, tile=16, channels_last=True)
    nchw = upscale(generator, lr, tile=16, channels_last=False)
    assert grey_levels(nhwc, nchw).max() <= 1


def test_leaves_the_callers_generator_alone(generator):
    generator.train()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    out = upscale(generator, lr_waves(12, 12), tile=8)
    assert generator.training  # not switched to eval ...
    after = generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # ... nor folded / rewritten
    assert generator.head[0].weight.is_contiguous()  # ... nor converted to channels_last
    generator.eval()
    assert grey_levels(out, _untiled(generator, lr_waves(12, 12))).max() <= 1  # eval statistics


def test_rejects_bad_input(generator):
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        upscale(generator, lr_waves(12, 12) / 255.0)
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        upscale(generator, lr_waves(12, 12)[..., 0])
    with pytest.raises(ValueError, match="overlap must be >= 0, got -1"):
        upscale(generator, lr_waves(12, 12), overlap=-1)
    with pytest.raises(ValueError, match="cannot upscale an empty image"):
        upscale(generator, lr_waves(0, 12))
