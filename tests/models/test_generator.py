import pytest
import torch

from srgan_pipeline.checkpoints import build_generator
from srgan_pipeline.models.generator import Generator, hr_to_unit, unit_to_hr


def tiny(**kwargs) -> Generator:
    return Generator(channels=8, num_blocks=2, **kwargs)


@pytest.mark.parametrize("h, w", [(8, 8), (7, 5), (12, 9)])
def test_output_shape_is_four_times_input(h, w):
    out = tiny()(torch.rand(2, 3, h, w))
    assert out.shape == (2, 3, 4 * h, 4 * w)


def test_output_stays_in_minus_one_one_even_when_saturated():
    torch.manual_seed(0)
    gen = tiny()
    with torch.no_grad():
        gen.tail.weight.mul_(1000.0)  # push the pre-tanh activations far outside [-1, 1]
    out = gen(torch.rand(2, 3, 6, 6))
    assert out.abs().max() > 0.99  # saturated, so the check below is not vacuous
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_scale_two_uses_one_upsampling_stage():
    gen = tiny(scale=2)
    assert len(gen.upsample) == 1
    assert gen(torch.rand(1, 3, 5, 7)).shape == (1, 3, 10, 14)


@pytest.mark.parametrize("scale", [1, 3, 8])
def test_unsupported_scale_raises(scale):
    with pytest.raises(ValueError, match="scale 2 or 4"):
        tiny(scale=scale)


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 1, 8, 8), (1, 4, 8, 8), (1, 1, 3, 8, 8)])
def test_bad_input_raises_naming_expected_shape(shape):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        tiny()(torch.rand(*shape))


def test_default_parameter_count_matches_architecture():
    c, blocks, k9, k3 = 64, 16, 9 * 9, 3 * 3
    head = 3 * c * k9 + c + c  # conv9x9 3->C with bias, channel-wise PReLU
    block = 2 * (c * c * k3) + 2 * (2 * c) + c  # two bias-free convs, two BNs, one PReLU
    body_tail = c * c * k3 + 2 * c  # bias-free conv3x3 + BN
    upsample = (c * 4 * c * k3 + 4 * c) + c  # conv C->4C with bias, PReLU on C channels
    tail = c * 3 * k9 + 3
    expected = head + blocks * block + body_tail + 2 * upsample + tail

    n_params = sum(p.numel() for p in Generator().parameters())
    assert n_params == expected == 1_548_547
    assert 1.5e6 <= n_params <= 1.6e6  # the paper's SRResNet has ~1.5M parameters


def test_residual_init_scale_shrinks_weights_and_residual_branch():
    torch.manual_seed(0)
    default = Generator(channels=32, num_blocks=2)
    torch.manual_seed(0)
    scaled = Generator(channels=32, num_blocks=2, residual_init_scale=0.1)

    fan_in = 32 * 3 * 3
    kaiming_std = (2.0 / fan_in) ** 0.5
    for block in scaled.blocks:
        for conv in (block.conv1, block.conv2):
            assert conv.weight.std().item() == pytest.approx(0.1 * kaiming_std, rel=0.1)
    # PyTorch's default init (kaiming_uniform, a=sqrt(5)) has std 1/sqrt(3 * fan_in).
    default_std = default.blocks[0].conv1.weight.std().item()
    assert default_std == pytest.approx((1 / (3 * fan_in)) ** 0.5, rel=0.1)
    assert scaled.blocks[0].conv1.weight.std().item() < 0.5 * default_std

    # What matters for training: each residual branch starts ~10x smaller.
    x = torch.randn(4, 32, 8, 8)
    ratio = scaled.blocks[0].residual(x).std() / default.blocks[0].residual(x).std()
    assert ratio.item() == pytest.approx(0.1, rel=0.05)


def test_range_helpers_are_inverse_and_map_endpoints():
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    torch.testing.assert_close(unit_to_hr(hr_to_unit(x)), x)
    hr, unit = torch.tensor([-1.0, 0.0, 1.0]), torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(hr_to_unit(hr), unit)
    torch.testing.assert_close(unit_to_hr(unit), hr)


def test_input_skip_adds_a_bicubic_upsampling_of_the_input():
    generator = build_generator({"scale": 4, "channels": 8, "num_blocks": 1, "input_skip": True},
                                seed=0).eval()
    torch.nn.init.zeros_(generator.tail.weight)
    torch.nn.init.zeros_(generator.tail.bias)
    lr = torch.rand(1, 3, 8, 10)
    expected = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic") * 2 - 1
    torch.testing.assert_close(generator(lr), expected)
