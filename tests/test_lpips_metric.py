"""srgan_pipeline.lpips_metric: LPIPS by the lpips package, with the project's weights policy."""

import logging
import os

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from srgan_pipeline.lpips_metric import LPIPSMetric, backbone_path

pytestmark = pytest.mark.usefixtures("one_thread")


def photo(size=96):
    from skimage.data import astronaut

    return np.ascontiguousarray(astronaut()[100:100 + size, 150:150 + size])


def blurred(image, sigma):
    return np.clip(gaussian_filter(image.astype(float), (sigma, sigma, 0)) + 0.5, 0, 255
                   ).astype(np.uint8)


def test_offline_without_the_backbone_stops_naming_the_url_and_the_path(offline_torch_hub):
    with pytest.raises(RuntimeError) as error:
        LPIPSMetric("alex", "imagenet")
    path = str(offline_torch_hub / "checkpoints" / "alexnet-owt-7be5be79.pth")
    assert backbone_path("alex") == path
    assert path in str(error.value)
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in str(error.value)
    assert "evaluation.lpips.weights=random" in str(error.value)


def test_a_backbone_at_the_documented_path_is_loaded_and_identical_images_score_0(
        offline_torch_hub):
    """A fabricated torchvision state dict (same keys and shapes as the real file) at the path
    the offline error names: the loader, lpips' key mapping and its preprocessing all run.
    (AlexNet only: a fabricated VGG16 is a 528 MB file; its path is checked below.)"""
    import torchvision

    torch.manual_seed(1)
    state = torchvision.models.alexnet(weights=None).state_dict()
    os.makedirs(os.path.dirname(backbone_path("alex")))
    torch.save(state, backbone_path("alex"))
    metric = LPIPSMetric("alex", "imagenet")
    assert metric.weights_source == "imagenet"
    assert torch.equal(metric.model.net.slice5[-2].weight, state["features.10.weight"])
    assert backbone_path("vgg").endswith("checkpoints/vgg16-397923af.pth")
    image = photo(64)
    assert metric(image, image) == 0.0
    assert metric(image, blurred(image, 2)) > 0


def test_random_is_an_explicit_repeatable_opt_in_that_warns(caplog):
    with caplog.at_level(logging.WARNING, "srgan_pipeline.lpips_metric"):
        first, second = LPIPSMetric("alex", "random"), LPIPSMetric("alex", "random")
    assert "RANDOM alex backbone" in caplog.text and "NOT LPIPS" in caplog.text
    assert first.weights_source == "random"
    image = photo(64)
    assert first(image, blurred(image, 2)) == second(image, blurred(image, 2))
    with pytest.raises(ValueError, match="'imagenet' or 'random'"):
        LPIPSMetric("alex", "pretrained")


def test_with_the_real_backbone_blurrier_and_noisier_copies_score_worse():
    path = backbone_path("alex")
    if not os.path.isfile(path):
        pytest.skip(f"the ImageNet AlexNet is not at {path}: this check needs the real weights")
    metric, image = LPIPSMetric("alex", "imagenet"), photo(128)
    assert metric(image, blurred(image, 0.7)) < metric(image, blurred(image, 2.0))
    rng = np.random.default_rng(0)
    noisy = [np.clip(image + rng.normal(0, s, image.shape), 0, 255).astype(np.uint8)
             for s in (4, 24)]
    assert metric(image, noisy[0]) < metric(image, noisy[1])
