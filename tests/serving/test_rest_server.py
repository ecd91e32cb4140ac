"""`mlflow models serve` on the registered champion, as docs/serving.md documents: good and bad
requests.

One server per module (start-up ~10-20 s), on 127.0.0.1 and a free port, in its own process
group, stopped at teardown.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import (
    documentation,
    free_port,
    offline_env,
    scored_checkpoint,
    start_server,
    stop_process_group,
)
from PIL import Image, PngImagePlugin

from srgan_pipeline.checkpoints import evaluated_weights, generator_from_checkpoint
from srgan_pipeline.inference import upscale_image

MODEL_URI = "models:/srgan_pipeline_generator@champion"


def documented_serve_command() -> tuple[dict[str, str], list[str]]:
    """docs/serving.md's `mlflow models serve` line: the variables it sets and its arguments."""
    text = documentation("serving.md").replace("\\\n", " ")
    line, = [line for line in text.splitlines() if " mlflow models serve " in line]
    words = shlex.split(line)
    start = words.index("mlflow")
    variables = dict(word.split("=", 1) for word in words[:start])
    return variables, words[start + 1:]


def test_the_documented_command_turns_mlflow_telemetry_off():
    """MLflow's CLI and servers otherwise fetch their telemetry configuration from
    config.mlflow-telemetry.io; the server below runs with only these variables."""
    variables, arguments = documented_serve_command()
    assert variables["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert variables["MLFLOW_TRACKING_URI"] == "sqlite:///mlflow.db"
    assert arguments[:4] == ["models", "serve", "-m", MODEL_URI]


@pytest.fixture(scope="module")
def rest_server(served_quickstart, tmp_path_factory):
    workdir, _, _ = served_quickstart
    port = free_port()
    log = tmp_path_factory.mktemp("rest_server") / "server.log"
    variables, arguments = documented_serve_command()
    arguments[arguments.index("--port") + 1] = str(port)
    command = [sys.executable, "-m", "mlflow", *arguments]
    # As a user's shell runs it in the project folder: none of the test's telemetry switches,
    # only the variables the documented command sets, and every non-loopback connection
    # refused and recorded.
    guard, network_log = offline_env(log.parent / "offline")
    proc = start_server(command, workdir, log, f"http://127.0.0.1:{port}/ping", quiet=False,
                        env={**variables, **guard})
    try:
        yield f"http://127.0.0.1:{port}", workdir
    finally:
        stop_process_group(proc)
        assert proc.returncode is not None
    used = network_log.read_text()
    assert used == "", f"the REST server used the network:\n{used}"


def _invoke(url: str, body: bytes, content_type: str = "application/json"):
    request = urllib.request.Request(f"{url}/invocations", data=body,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _split(*images: bytes) -> bytes:
    rows = [[base64.b64encode(image).decode()] for image in images]
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()


def _png(size, seed=0, text: str = "") -> bytes:
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("comment", text, zip=True)  # a 4 KB zTXt chunk inflating to MBs
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _decoded(prediction: dict) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(prediction["image"])))
    image.load()
    return image


def test_a_base64_png_comes_back_as_a_png_four_times_the_size(rest_server):
    url, workdir = rest_server
    lr = workdir / "data" / "05_model_input" / "eval" / "skimage_heldout" / "LR_x4"
    chelsea, rocket = (lr / "chelsea.png").read_bytes(), (lr / "rocket.png").read_bytes()
    status, answer = _invoke(url, _split(chelsea, rocket))
    assert status == 200, answer
    for data, prediction in zip((chelsea, rocket), answer["predictions"], strict=True):
        width, height = Image.open(io.BytesIO(data)).size
        assert _decoded(prediction).size == (4 * width, 4 * height)
    # dataframe_records works too (docs/serving.md's curl example)
    body = json.dumps({"dataframe_records": [{"image": base64.b64encode(chelsea).decode()}]})
    status, answer = _invoke(url, body.encode())
    assert status == 200 and _decoded(answer["predictions"][0]).format == "PNG"


def test_the_served_pixels_are_those_of_the_checkpoint_evaluation_scored(rest_server,
                                                                          served_quickstart):
    """@champion over REST gives, pixel for pixel, `upscale_image` of the train_gan checkpoint
    that evaluation scored for that version (its EMA weights where kept)."""
    url, workdir = rest_server
    _, _, model = served_quickstart
    generator = generator_from_checkpoint(evaluated_weights(scored_checkpoint(workdir, model)))
    lr = workdir / "data" / "05_model_input" / "eval" / "skimage_heldout" / "LR_x4"
    data = (lr / "chelsea.png").read_bytes()
    status, answer = _invoke(url, _split(data))
    assert status == 200, answer
    expected = upscale_image(generator, Image.open(io.BytesIO(data)))
    assert np.array_equal(np.asarray(_decoded(answer["predictions"][0])), np.asarray(expected))


@pytest.mark.parametrize("body, words", [
    (_split(b""), "the request holds no image"),
    (_split(b"GIF89a? no, plain text"), "not an image"),
    (_split(_png((64, 48))[:400]), "damaged or truncated"),
    (_split(_png((520, 520))), "520x520 = 270,400 pixels, over this server's limit of 262,144"),
    (json.dumps({"inputs": {"image": ["aGVsbG8="]}}).encode(), "look like base64 text"),
    (b"{not json", "valid JSON"),
    (_split(_png((8, 8), text="x" * 4_000_000)), "metadata is over Pillow's safety limit"),
], ids=["empty", "not-an-image", "truncated", "over-the-limit", "inputs-form", "not-json",
        "4-MB-text-chunk"])
def test_bad_requests_get_a_clear_400_and_the_server_keeps_serving(rest_server, body, words):
    url, _ = rest_server
    started = time.monotonic()
    status, answer = _invoke(url, body)
    assert status == 400 and words in answer["message"], answer["message"][-500:]
    assert "stack_trace" not in answer and "Traceback" not in answer["message"]
    assert time.monotonic() - started < 30  # refused up front, not after minutes of inference
    status, answer = _invoke(url, _split(_png((12, 10))))
    assert status == 200 and _decoded(answer["predictions"][0]).size == (48, 40)


def test_two_parallel_requests_are_both_served(rest_server):
    from concurrent.futures import ThreadPoolExecutor

    url, _ = rest_server
    sizes = [(12, 10), (9, 7)]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda size: _invoke(url, _split(_png(size))), sizes))
    for (status, answer), (width, height) in zip(answers, sizes, strict=True):
        assert status == 200, answer
        assert _decoded(answer["predictions"][0]).size == (4 * width, 4 * height)
