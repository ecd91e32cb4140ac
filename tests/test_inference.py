"""Tests for srgan_pipeline.inference: tiled upscaling and Pillow images of any mode."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_pipeline.imaging import imresize, to_rgb_array
from srgan_pipeline.inference import (
    inference_model,
    receptive_radius,
    tile_spans,
    upscale,
    upscale_image,
)
from srgan_pipeline.inference.fusion import as_inference_model
from srgan_pipeline.metrics import quantize
from srgan_pipeline.models import Generator, hr_to_unit


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: a second thread only adds OpenMP barriers, which cost
    milliseconds each when other processes share the cores (here 17 s -> under 1 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(scale=4, channels=8, num_blocks=2).eval()


def _lr(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour waves plus noise: structure for the convs to carry across tile seams."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    waves = np.stack([128 + 90 * np.sin(xx / (4 + c) + c) * np.cos(yy / 5) for c in range(3)], -1)
    return np.clip(waves + rng.normal(0, 20, waves.shape), 0, 255).astype(np.uint8)


def _untiled(generator: Generator, lr: np.ndarray) -> np.ndarray:
    """The reference: one plain forward of the whole image, NCHW, converted once."""
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().contiguous() / 255
    with torch.no_grad():
        y = generator(x)
    return quantize(hr_to_unit(y)[0].permute(1, 2, 0).numpy())


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# --------------------------------------------------------------------------------------------
# upscale
# --------------------------------------------------------------------------------------------


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
    lr = _lr(53, 70)
    reference = _untiled(generator, lr)
    tiled = upscale(generator, lr, tile=24)  # 3 x 3 tiles, default overlap (12)
    assert tiled.shape == (4 * 53, 4 * 70, 3) and tiled.dtype == np.uint8
    assert _max_diff(tiled, reference) <= 1
    # The check has teeth: without context the seams are wrong by many grey levels.
    assert _max_diff(upscale(generator, lr, tile=24, overlap=0), reference) > 5


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
    lr = _lr(5, 7, seed=1)
    out = upscale(generator, lr, tile=24)
    assert out.shape == (20, 28, 3)
    assert _max_diff(out, _untiled(generator, lr)) <= 1


@pytest.mark.parametrize("size", [(37, 29), (1, 1), (33, 10)])
def test_odd_sizes_not_multiple_of_the_tile(generator, size):
    lr = _lr(*size, seed=2)
    out = upscale(generator, lr, tile=10)
    assert out.shape == (4 * size[0], 4 * size[1], 3)
    assert _max_diff(out, _untiled(generator, lr)) <= 1


def test_channels_last_and_default_format_agree(generator):
    lr = _lr(30, 41, seed=3)
    nhwc = upscale(generator, lr, tile=16, channels_last=True)
    nchw = upscale(generator, lr, tile=16, channels_last=False)
    assert _max_diff(nhwc, nchw) <= 1


def test_leaves_the_callers_generator_alone(generator):
    generator.train()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    out = upscale(generator, _lr(12, 12), tile=8)
    assert generator.training  # not switched to eval ...
    after = generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # ... nor folded / rewritten
    assert generator.head[0].weight.is_contiguous()  # ... nor converted to channels_last
    generator.eval()
    assert _max_diff(out, _untiled(generator, _lr(12, 12))) <= 1  # eval-mode statistics used


def test_a_prepared_inference_model_is_reused(generator):
    lr = _lr(20, 26, seed=10)
    prepared = inference_model(generator)
    assert np.array_equal(upscale(prepared, lr, tile=16), upscale(generator, lr, tile=16))


def test_only_a_copy_prepared_as_asked_is_used_as_is(generator):
    prepared, cpu = inference_model(generator), torch.device("cpu")
    assert as_inference_model(prepared, device=cpu, channels_last=True, precision=None) is prepared
    assert as_inference_model(prepared, device=cpu, channels_last=True,
                              precision="fp32") is prepared
    for other in ({"channels_last": False, "precision": None},
                  {"channels_last": True, "precision": "bf16"}):
        assert as_inference_model(prepared, device=cpu, **other) is not prepared
    fresh = as_inference_model(generator, device=cpu, channels_last=True, precision=None)
    assert fresh is not generator and not fresh.training


def test_bf16_inference_stays_within_a_few_grey_levels_of_fp32():
    torch.manual_seed(0)
    generator = Generator(scale=4, channels=16, num_blocks=2, residual_init_scale=0.1).eval()
    lr = _lr(40, 36, seed=4)
    fp32 = upscale(generator, lr, tile=16)
    prepared = inference_model(generator, precision="bf16")
    assert next(prepared.parameters()).dtype == torch.bfloat16
    bf16 = upscale(prepared, lr, tile=16)  # the prepared copy's precision is used as is
    difference = np.abs(bf16.astype(np.int16) - fp32.astype(np.int16))
    assert 0 < difference.max() <= 4 and difference.mean() < 0.5
    assert np.array_equal(upscale(generator, lr, tile=16, precision="bf16"), bf16)


def test_rejects_bad_input(generator):
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        upscale(generator, _lr(12, 12) / 255.0)
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        upscale(generator, _lr(12, 12)[..., 0])


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_model_computes_the_same_function(scale, channels_last):
    # Non-trivial BatchNorm statistics and PReLU slopes, so folding and the moved tail conv
    # are really exercised (at default statistics BatchNorm is almost the identity).
    torch.manual_seed(1)
    generator = Generator(scale=scale, channels=8, num_blocks=2).eval()
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.3, 3.0)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
        elif isinstance(module, torch.nn.PReLU):
            torch.nn.init.uniform_(module.weight, -0.5, 0.5)
    model = inference_model(generator, channels_last=channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert isinstance(model.tail[0], torch.nn.Conv2d) and model.tail[0].kernel_size == (5, 5)
    x = torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        expected = generator(x)
        got = model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    assert got.shape == expected.shape == (2, 3, 13 * scale, 17 * scale)
    assert (got - expected).abs().max().item() < 1e-5


# --------------------------------------------------------------------------------------------
# upscale_image
# --------------------------------------------------------------------------------------------


def test_rgb_image(generator):
    lr = _lr(15, 20, seed=4)
    out = upscale_image(generator, Image.fromarray(lr), 4, tile=8)
    assert out.mode == "RGB" and out.size == (80, 60)
    assert np.array_equal(np.asarray(out), upscale(generator, lr, tile=8))


def test_rgba_keeps_a_bicubic_alpha_channel(generator):
    lr = _lr(15, 20, seed=5)
    alpha = np.random.default_rng(6).integers(0, 256, (15, 20), dtype=np.uint8)
    image = Image.fromarray(np.dstack([lr, alpha]), "RGBA")
    out = upscale_image(generator, image, 4)
    assert out.mode == "RGBA" and out.size == (80, 60)
    out = np.asarray(out)
    assert np.array_equal(out[..., 3], imresize(alpha, 4))
    # Colour is the straight (not white-composited) RGB through the generator.
    assert np.array_equal(out[..., :3], upscale(generator, lr))


def test_grey_in_grey_out(generator):
    grey = _lr(15, 20, seed=7)[..., 0]
    out = upscale_image(generator, Image.fromarray(grey, "L"), 4)
    assert out.mode == "L" and out.size == (80, 60)
    rgb = Image.fromarray(upscale(generator, np.repeat(grey[..., None], 3, axis=2)))
    assert np.array_equal(np.asarray(out), np.asarray(rgb.convert("L")))


def test_sixteen_bit_grey_is_reduced_like_to_rgb_array(generator):
    grey16 = (_lr(15, 20, seed=8)[..., 0].astype(np.uint16) * 257 + 100).astype(np.uint16)
    image = Image.fromarray(grey16)  # mode I;16
    assert image.mode.startswith("I;16")
    out = upscale_image(generator, image, 4)
    assert out.mode == "L" and out.size == (80, 60)
    expected = Image.fromarray(upscale(generator, to_rgb_array(image))).convert("L")
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_grey_with_alpha_and_palette_transparency(generator):
    la = Image.fromarray(np.dstack([_lr(9, 11)[..., 0], np.full((9, 11), 200, np.uint8)]), "LA")
    out = upscale_image(generator, la, 4)
    assert out.mode == "LA" and out.size == (44, 36)
    assert (np.asarray(out)[..., 1] == 200).all()

    palette = Image.fromarray(_lr(9, 11)).convert("P")
    palette.info["transparency"] = 0
    out = upscale_image(generator, palette, 4)
    assert out.mode == "RGBA" and out.size == (44, 36)


def test_exif_rotated_input_gives_rotated_output(generator):
    lr = _lr(10, 16, seed=9)  # stored 16 wide x 10 high, displayed rotated by 90 degrees
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(lr).save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    image = Image.open(io.BytesIO(buffer.getvalue()))
    assert image.size == (16, 10)
    out = upscale_image(generator, image, 4)
    assert out.size == (40, 64)
    upright = Image.fromarray(to_rgb_array(Image.open(io.BytesIO(buffer.getvalue()))))
    assert upright.size == (10, 16)
    assert np.array_equal(np.asarray(out), np.asarray(upscale_image(generator, upright, 4)))


def test_scale_must_match_the_generator(generator):
    with pytest.raises(ValueError, match="x4"):
        upscale_image(generator, Image.fromarray(_lr(8, 8)), 2)
