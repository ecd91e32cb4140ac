import pytest
import torch
from torch import nn

from srgan_pipeline.models.critic import Critic, assert_no_batchnorm


def tiny(**kwargs) -> Critic:
    return Critic(base_channels=8, hidden=32, **kwargs)


@pytest.mark.parametrize("size", [96, 128])
def test_one_score_per_sample(size):
    critic = tiny()
    assert critic(torch.rand(3, 3, size, size) * 2 - 1).shape == (3,)
    assert critic(torch.rand(1, 3, size, size) * 2 - 1).shape == (1,)


def test_non_square_patch_accepted():
    assert tiny()(torch.rand(2, 3, 96, 128)).shape == (2,)


def test_scores_are_unbounded_no_sigmoid():
    critic = tiny()
    assert not any(isinstance(m, nn.Sigmoid) for m in critic.modules())
    last = critic.head[-1]
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(5.0)
        assert torch.allclose(critic(x), torch.full((2,), 5.0))
        last.bias.fill_(-5.0)
        assert torch.allclose(critic(x), torch.full((2,), -5.0))


def test_uses_instance_norm_and_no_batchnorm():
    critic = tiny()
    norms = [m for m in critic.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 7  # every conv but the first
    assert all(m.affine for m in norms)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    assert isinstance(critic.features[1], nn.LeakyReLU)  # first conv: no norm
    assert_no_batchnorm(critic)  # does not raise


def test_scores_are_per_sample_independent_of_the_batch():
    critic = tiny()
    x = torch.rand(4, 3, 96, 96)
    torch.testing.assert_close(critic(x)[:1], critic(x[:1]), rtol=1e-4, atol=1e-5)


def test_batchnorm_refused():
    with pytest.raises(ValueError, match="BatchNorm"):
        tiny(norm="batch")
    critic = tiny()
    critic.features[3] = nn.BatchNorm2d(8)  # swap an InstanceNorm for a BatchNorm
    with pytest.raises(ValueError, match=r"BatchNorm.*features\.3"):
        assert_no_batchnorm(critic)


def test_minimum_size_follows_pool_size():
    assert Critic(base_channels=8).min_input_size == 81  # ceil(81 / 16) = 6 = pool size
    assert tiny(pool_size=2).min_input_size == 17
    assert tiny(pool_size=2)(torch.rand(1, 3, 17, 17)).shape == (1,)


@pytest.mark.parametrize(
    "shape", [(1, 3, 80, 96), (1, 3, 96, 64), (1, 1, 96, 96), (1, 4, 96, 96), (3, 96, 96)]
)
def test_bad_input_raises_naming_expected_shape(shape):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\) with H, W >= 81"):
        tiny()(torch.rand(*shape))
