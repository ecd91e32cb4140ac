"""srgan_pipeline.niqe: NIQE as the authors' niqe.m computes it, refused without its model."""


import numpy as np
import pytest
import scipy.io
from scipy.ndimage import gaussian_filter

from srgan_pipeline.imaging import rgb_to_y
from srgan_pipeline.niqe import NIQE_URL, PristineModel, load_pristine_model, niqe, niqe_path


def luma(size=192):
    from skimage.data import astronaut

    return rgb_to_y(astronaut()[:size, 200:200 + size])


def fabricated(seed=0) -> tuple[np.ndarray, np.ndarray]:
    """36 means and a symmetric positive-definite 36 x 36 covariance: the published file's
    keys and shapes, not its numbers."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(36, 36))
    return rng.uniform(0.1, 3, (1, 36)), a @ a.T / 36 + np.eye(36)


def test_offline_without_the_published_model_stops_naming_the_url_and_the_path(offline_torch_hub):
    with pytest.raises(RuntimeError) as error:
        load_pristine_model("published")
    assert str(offline_torch_hub / "pyiqa" / "niqe_modelparameters.mat") in str(error.value)
    assert NIQE_URL in str(error.value) and "evaluation.niqe: null" in str(error.value)


def test_the_model_at_the_documented_path_is_read_and_scores(offline_torch_hub):
    mu, cov = fabricated()
    niqe_path().parent.mkdir(parents=True)
    scipy.io.savemat(niqe_path(), {"mu_prisparam": mu, "cov_prisparam": cov})
    model = load_pristine_model("published")
    assert model.source == str(niqe_path()) and np.array_equal(model.mu, mu[0])
    score = niqe(luma(), model)
    assert np.isfinite(score) and score > 0
    # BasicSR's file of the same numbers reads the same
    np.savez(offline_torch_hub / "pris.npz", mu_pris_param=mu, cov_pris_param=cov)
    assert niqe(luma(), load_pristine_model(offline_torch_hub / "pris.npz")) == score


def test_a_file_that_is_not_the_model_and_a_small_image_are_refused(offline_torch_hub):
    offline_torch_hub.mkdir(parents=True)
    scipy.io.savemat(offline_torch_hub / "other.mat", {"weights": np.ones(3)})
    with pytest.raises(ValueError, match="not NIQE's modelparameters.mat"):
        load_pristine_model(offline_torch_hub / "other.mat")
    with pytest.raises(ValueError, match="expected 36 means"):
        PristineModel(np.ones(35), np.eye(35), "x")
    with pytest.raises(ValueError, match="at least 96 x 96"):
        niqe(np.zeros((95, 200)), PristineModel(*fabricated(), "x"))


def test_with_the_published_model_blurrier_and_noisier_copies_score_worse():
    if not niqe_path().is_file():
        pytest.skip(f"NIQE's published model is not at {niqe_path()}: this check needs it")
    model, y = load_pristine_model("published", download=False), luma(288)
    assert niqe(gaussian_filter(y, 0.5), model) < niqe(gaussian_filter(y, 2.5), model)
    rng = np.random.default_rng(0)
    assert niqe(y + rng.normal(0, 2, y.shape), model) < niqe(y + rng.normal(0, 20, y.shape),
                                                                model)
