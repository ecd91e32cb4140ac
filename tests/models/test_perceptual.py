import logging
from urllib.error import URLError

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from srgan_pipeline.models.perceptual import VGG19_LAYERS, VGGPerceptualLoss

LAYER = "relu2_2"  # shallow, so the tests stay fast


def random_loss(layer: str = LAYER, seed: int = 0) -> VGGPerceptualLoss:
    return VGGPerceptualLoss(layer=layer, weights="random", seed=seed)


@pytest.fixture(scope="module")
def tv_features() -> nn.Sequential:
    """torchvision's own vgg19 `features` (random init), built without the classifier."""
    torch.manual_seed(1)
    return torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"]).eval()


def test_identical_images_give_zero_and_different_images_positive():
    loss = random_loss()
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert loss(a, a.clone()).item() == 0.0
    assert loss(a, b).item() > 0.0


def test_gradients_reach_the_input_but_not_vgg():
    loss = random_loss()
    sr = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss(sr, torch.rand(2, 3, 32, 32)).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    params = list(loss.parameters())
    assert params and all(not p.requires_grad and p.grad is None for p in params)


def test_stored_in_bf16_it_gives_autocasts_losses_and_gradients_bit_for_bit():
    """The copy in the training dtype only saves autocast's per-call casts of frozen weights."""
    loss = VGGPerceptualLoss(layer="relu2_2", weights="random")
    twin = loss.in_dtype(torch.bfloat16)
    assert loss.in_dtype(torch.float32) is loss and twin is not loss
    assert loss.features[0].weight.dtype == torch.float32  # the original keeps its weights
    assert twin.features[0].weight.dtype == torch.bfloat16
    gen = torch.Generator().manual_seed(0)
    sr, hr = torch.rand(2, 3, 24, 24, generator=gen), torch.rand(2, 3, 24, 24, generator=gen)
    results = []
    for module in (loss, twin):
        x = sr.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = module(x, hr)
        value.backward()
        results.append((value, x.grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_stays_in_eval_mode_when_parent_trains():
    parent = nn.ModuleDict({"loss": random_loss(), "other": nn.Dropout()})
    parent.train()
    assert parent["other"].training
    assert not any(m.training for m in parent["loss"].modules())
    assert parent["loss"].train() is parent["loss"]


def test_unknown_layer_lists_valid_names():
    with pytest.raises(ValueError, match="relu1_1, relu1_2, .*relu5_4") as err:
        VGGPerceptualLoss(layer="conv5_4", weights="random")
    assert "conv5_4" in str(err.value)


def test_layers_are_truncated_and_match_torchvision_layout():
    with torch.device("meta"):
        tv = torchvision.models.vgg19().features
    full = random_loss("relu5_4").features
    assert [(k, v.shape) for k, v in full.state_dict().items()] == [
        (k, v.shape) for k, v in tv.state_dict().items()
    ]
    for name, index in VGG19_LAYERS.items():
        assert isinstance(tv[index], nn.ReLU), name
    assert len(random_loss("relu2_2").features) == VGG19_LAYERS["relu2_2"] + 1 == 9


def test_loss_is_feature_mse_rescaled_by_12_75(tv_features, tmp_path):
    path = tmp_path / "vgg19_features.pth"
    torch.save(tv_features.state_dict(), path)
    loss = VGGPerceptualLoss(layer=LAYER, weights=path)
    a, b = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ref = tv_features[: VGG19_LAYERS[LAYER] + 1]
    with torch.no_grad():
        fa, fb = ref((a - mean) / std), ref((b - mean) / std)
        expected = F.mse_loss(fa, fb) / 12.75**2
        torch.testing.assert_close(loss(a, b), expected, rtol=1e-4, atol=0)
        torch.testing.assert_close(loss.feature_map(a), fa / 12.75)


@pytest.mark.parametrize("full_model", [False, True])
def test_local_file_round_trip(tv_features, tmp_path, full_model):
    state = tv_features.state_dict()
    if full_model:  # the layout of vgg19().state_dict(): "features.N.*" plus a classifier
        state = {f"features.{k}": v for k, v in state.items()}
        state["classifier.0.weight"] = torch.zeros(1)
    path = tmp_path / "vgg.pth"
    torch.save(state, path)

    loss = VGGPerceptualLoss(layer=LAYER, weights=str(path))
    assert loss.weights_source == f"file:{path}"
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        expected = tv_features[: VGG19_LAYERS[LAYER] + 1](x)
        torch.testing.assert_close(loss.features(x), expected)


def test_missing_file_raises_naming_it(tmp_path):
    missing = tmp_path / "nope" / "vgg19.pth"
    with pytest.raises(FileNotFoundError, match="nope"):
        VGGPerceptualLoss(weights=str(missing))


def test_unrecognised_weights_string_raises():
    with pytest.raises(ValueError, match="'imagenet', 'random'"):
        VGGPerceptualLoss(weights="imagenett")


def fail_download(*args, **kwargs):
    raise URLError("network disabled in tests")


def test_imagenet_offline_without_cache_explains_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fail_download)
    with pytest.raises(RuntimeError) as err:
        VGGPerceptualLoss(layer=LAYER, weights="imagenet")
    msg = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in msg
    assert str(tmp_path / "checkpoints") in msg
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in msg
    assert "weights='random'" in msg
    assert isinstance(err.value.__cause__, URLError)


def test_imagenet_loads_torchvisions_weights(monkeypatch):
    """The imagenet branch takes torchvision's IMAGENET1K_V1 state dict (cache or download)."""
    import torchvision.models._api as tv_api
    from torchvision.models import VGG19_Weights, vgg19

    with torch.random.fork_rng():
        reference = vgg19(weights=None).state_dict()
    asked = []

    def cached_state_dict(url, *args, **kwargs):
        asked.append(url)
        return reference

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", cached_state_dict)
    loss = VGGPerceptualLoss(layer=LAYER, weights="imagenet")
    assert asked == [VGG19_Weights.IMAGENET1K_V1.url]
    assert loss.weights_source == "imagenet"
    torch.testing.assert_close(loss.features[0].weight, reference["features.0.weight"])


def test_random_weights_warn_and_are_seeded(caplog):
    with caplog.at_level(logging.WARNING, logger="srgan_pipeline.models.perceptual"):
        loss = random_loss(seed=3)
    assert loss.weights_source == "random"
    assert any(
        r.levelno == logging.WARNING and "NOT the published VGG loss" in r.getMessage()
        for r in caplog.records
    )
    torch.testing.assert_close(loss.features[0].weight, random_loss(seed=3).features[0].weight)
    assert not torch.equal(loss.features[0].weight, random_loss(seed=4).features[0].weight)
