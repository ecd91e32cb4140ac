"""The MLflow pyfunc in process: logged from a checkpoint, loaded back, same pixels as upscale."""

from __future__ import annotations

import importlib.metadata
import io

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from PIL import Image

from srgan_pipeline.checkpoints import (
    build_generator,
    describe_generator,
    generator_from_checkpoint,
)
from srgan_pipeline.inference import upscale_image
from srgan_pipeline.serving.model import (
    SIGNATURE,
    log_generator_model,
    slim_checkpoint,
    weights_digest,
)
from srgan_pipeline.serving.registry import load_model_checkpoint


def tiny_checkpoint(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    generator = build_generator({"channels": 8, "num_blocks": 1})
    for module in generator.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return {"generator_config": describe_generator(generator),
            "generator": generator.state_dict(), "phase": "pretrain", "step": 4}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A tiny generator logged twice in one run of a scratch sqlite store: (uri, digest, again)."""
    store = tmp_path_factory.mktemp("store")
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("serving", artifact_location=str(store / "mlruns"))
        with mlflow.start_run(experiment_id=experiment):
            uri, digest = log_generator_model(tiny_checkpoint(), model="srresnet", max_pixels=5000)
            again = log_generator_model(tiny_checkpoint(), model="srresnet")
            yield uri, digest, again, mlflow.pyfunc.load_model(uri)
    finally:
        mlflow.set_tracking_uri(None)


def _png(size=(40, 30), mode="RGB", seed=1) -> bytes:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_model_carries_signature_example_and_pinned_requirements(logged):
    uri, _, _, model = logged
    assert model.metadata.signature == SIGNATURE
    assert model.metadata.get_input_schema().input_types()[0].name == "binary"
    local = mlflow.artifacts.download_artifacts(uri)
    requirements = open(f"{local}/requirements.txt").read()
    assert f"torch=={importlib.metadata.version('torch')}" in requirements
    assert "serving_input_example.json" in __import__("os").listdir(local)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_predict_gives_the_pipelines_pixels_as_png(logged, mode):
    _, _, _, model = logged
    data = _png(mode=mode)
    out = model.predict(pd.DataFrame({"image": [data, _png(seed=2)]}))
    assert list(out.columns) == ["image"] and len(out) == 2
    result = Image.open(io.BytesIO(out["image"][0]))
    expected = upscale_image(generator_from_checkpoint(tiny_checkpoint()),
                             Image.open(io.BytesIO(data)))
    assert result.size == (160, 120) and result.mode == expected.mode
    assert np.array_equal(np.asarray(result), np.asarray(expected))


def test_the_same_weights_are_logged_once(logged):
    uri, digest, again, _ = logged
    assert again == (uri, digest)
    assert digest == weights_digest(slim_checkpoint(tiny_checkpoint()))
    assert digest != weights_digest(slim_checkpoint(tiny_checkpoint(seed=1)))


def test_the_weights_read_back_without_running_model_code(logged):
    uri, _, _, _ = logged
    state = load_model_checkpoint(uri)
    assert torch.equal(state["generator"]["tail.weight"],
                       tiny_checkpoint()["generator"]["tail.weight"])


@pytest.mark.parametrize("rows, words", [
    ([b""], "row 0: the request holds no image"),
    ([b"%PDF-1.4 not an image"], "row 0: the 21 bytes sent are not an image"),
    ([_png()[:200]], "row 0: the PNG image .* is damaged or truncated"),
    ([_png((100, 60))], r"row 0: the image is 100x60 = 6,000 pixels, over .* limit of 5,000"),
    ([_png(seed=s) for s in range(5)],
     r"6,000 pixels in all, over this server's limit of 5,000"),
], ids=["empty", "not-an-image", "truncated", "over-the-limit", "too-many-pixels-in-all"])
def test_bad_requests_raise_invalid_parameter(logged, rows, words):
    _, _, _, model = logged
    with pytest.raises(MlflowException, match=words) as raised:
        model.predict(pd.DataFrame({"image": rows}))
    assert raised.value.get_http_status_code() == 400


def test_requests_beyond_the_bound_are_refused_at_once_and_errors_carry_no_trace(logged,
                                                                                monkeypatch):
    """The scoring server runs each request in a thread and cannot stop one after its timeout:
    with one request held in its forward pass and one waiting for it, a third is refused with
    503 at once; the held ones are then served. An unexpected failure is a 500 whose message
    says what failed, without the server's stack trace."""
    import threading
    import time

    _, _, _, model = logged
    python_model = model.unwrap_python_model()
    held, release, calls = threading.Event(), threading.Event(), []
    upscale = python_model.upscale

    def first_held(image):
        calls.append(1)
        if len(calls) == 1:
            held.set()
            release.wait(60)  # a deadlock breaker, not a measure
        return upscale(image)

    monkeypatch.setattr(python_model, "upscale", first_held)
    frame = pd.DataFrame({"image": [_png((10, 6))]})
    answers = []
    workers = [threading.Thread(target=lambda: answers.append(model.predict(frame)))
               for _ in range(2)]
    workers[0].start()
    try:
        assert held.wait(60)
        workers[1].start()
        deadline = time.monotonic() + 60  # the second taking its slot: a wait, not a measure
        while python_model.requests._value > 0:  # both slots taken: the refusal is certain
            assert time.monotonic() < deadline, "the second request never took a slot"
            time.sleep(0.01)
        with pytest.raises(MlflowException, match="busy: 2 requests") as refused:
            model.predict(frame)
        assert refused.value.get_http_status_code() == 503
    finally:
        release.set()
        for worker in workers:
            worker.join(60)
    assert [Image.open(io.BytesIO(a["image"][0])).size for a in answers] == [(40, 24)] * 2

    monkeypatch.setattr(python_model, "upscale", lambda image: 1 / 0)
    with pytest.raises(MlflowException, match=r"upscaling failed \(ZeroDivisionError") as failed:
        model.predict(frame)
    assert failed.value.get_http_status_code() == 500
    assert "stack_trace" not in failed.value.json_kwargs
