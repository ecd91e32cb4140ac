"""inference.fusion: the inference copy computes the generator's function with fewer ops."""

from __future__ import annotations

import pytest
import torch

from srgan_pipeline.inference import inference_model
from srgan_pipeline.models import Generator

pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_bf16_copy_has_bf16_weights_and_the_original_is_untouched():
    torch.manual_seed(0)
    generator = Generator(scale=4, channels=16, num_blocks=2, residual_init_scale=0.1).eval()
    prepared = inference_model(generator, precision="bf16")
    assert next(prepared.parameters()).dtype == torch.bfloat16
    assert next(generator.parameters()).dtype == torch.float32
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in generator.modules())
