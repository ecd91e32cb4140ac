"""The try-it page in a real browser: `python -m srgan_pipeline.serving` over the tiny
quickstart's registry, driven by headless Debian chromium (Playwright, no downloaded browser):
upload an image, wait for the result, check it is x4 and decodes, download it, screenshot it.
Also the page's API with bad input, by plain HTTP. Screenshots land in tmp_path (`pytest -s`
prints their paths).
"""

from __future__ import annotations

import io
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, scored_checkpoint, start_server, stop_process_group
from PIL import Image, PngImagePlugin

from srgan_pipeline.checkpoints import evaluated_weights, generator_from_checkpoint
from srgan_pipeline.imaging import imresize, to_rgb_array
from srgan_pipeline.inference import upscale_image
from srgan_pipeline.serving.app import max_body_bytes

CHROMIUM = Path("/usr/bin/chromium")
CHAMPION = "models:/srgan_pipeline_generator@champion"
MAX_PIXELS = 20_000  # small, so that the over-the-limit case is cheap to send

sync_api = pytest.importorskip("playwright.sync_api", reason='pip install -e ".[test]"')
expect = sync_api.expect
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="chromium not installed: apt-get install -y chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def page_server(served_quickstart, tmp_path_factory):
    """The page as docs/serving.md starts it, on a free port; (base URL, project folder)."""
    workdir, _, _ = served_quickstart
    port = free_port()
    log = tmp_path_factory.mktemp("page_server") / "server.log"
    command = [sys.executable, "-m", "srgan_pipeline.serving", "--port", str(port),
               "--max-pixels", str(MAX_PIXELS)]
    proc = start_server(command, workdir, log, f"http://127.0.0.1:{port}/api/models")
    before = sorted(p for p in workdir.rglob("*") if "mlflow.db" not in p.name)
    try:
        yield f"http://127.0.0.1:{port}", workdir
    finally:
        stop_process_group(proc)
    # the page writes nothing into the project (results go back in the responses)
    assert sorted(p for p in workdir.rglob("*") if "mlflow.db" not in p.name) == before


def _lr_image(workdir: Path) -> Path:
    return workdir / "data/05_model_input/eval/skimage_heldout/LR_x4/chelsea.png"


@needs_chromium
@pytest.mark.e2e
def test_upload_compare_and_download_in_chromium(page_server, tmp_path):
    url, workdir = page_server
    lr = _lr_image(workdir)
    width, height = Image.open(lr).size
    (tmp_path / "notes.png").write_text("not an image, whatever its name says")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1300, "height": 1100},
                                          accept_downloads=True)
            context.set_default_timeout(60_000)
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            expect(page.locator("body[data-state=ready]")).to_have_count(1)
            options = page.locator("#model option")
            assert options.first.get_attribute("value") == CHAMPION
            assert "@champion" in options.first.inner_text()

            # a file that is not an image: a clear error on the page, nothing shown
            page.set_input_files("#file", str(tmp_path / "notes.png"))
            page.click("#run")
            expect(page.locator("body[data-state=error]")).to_have_count(1)
            expect(page.locator("#status")).to_contain_text("415")
            expect(page.locator("#status")).to_contain_text("not an image")
            page.screenshot(path=tmp_path / "try_it_error.png")

            # then a real one: bicubic and SR side by side, the slider, the download link
            page.set_input_files("#file", str(lr))
            page.click("#run")
            expect(page.locator("body[data-state=done]")).to_have_count(1)
            for image in ("#sr", "#bicubic", "#compare-sr"):
                size = page.eval_on_selector(image, "img => [img.naturalWidth, img.naturalHeight]")
                assert size == [4 * width, 4 * height], image
            expect(page.locator("#status")).to_contain_text(f"Done: {4 * width}x{4 * height}")
            page.fill("#slider", "30")
            page.dispatch_event("#slider", "input")
            with page.expect_download() as download_info:
                page.click("#download")
            download = download_info.value
            assert download.suggested_filename == "chelsea_x4.png"
            saved = tmp_path / download.suggested_filename
            download.save_as(saved)
            with Image.open(saved) as result:
                result.load()
                assert result.format == "PNG" and result.size == (4 * width, 4 * height)
            page.screenshot(path=tmp_path / "try_it_result.png", full_page=True)
            print(f"\nscreenshots: {tmp_path / 'try_it_error.png'}, "
                  f"{tmp_path / 'try_it_result.png'}")
            assert not errors, errors
        finally:
            browser.close()


def _post(url: str, body: bytes, query: str = f"model={CHAMPION}", headers=None):
    request = urllib.request.Request(f"{url}/api/upscale?{query}", data=body, method="POST",
                                     headers={"Content-Type": "application/octet-stream",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["detail"]


def _png(size, text: str = "") -> bytes:
    array = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("comment", text, zip=True)  # a 4 KB zTXt chunk inflating to MBs
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.mark.parametrize("body, query, status, words", [
    (b"", f"model={CHAMPION}", 400, "empty body"),
    (b"\x00\x01 binary junk", f"model={CHAMPION}", 415, "not an image"),
    (_png((60, 40))[:300], f"model={CHAMPION}", 400, "damaged or truncated"),
    (_png((150, 150)), f"model={CHAMPION}", 413, "150x150 = 22,500 pixels, over this server's "
                                                 "limit of 20,000"),
    (_png((8, 8)), "model=models:/srgan_pipeline_generator@nobody", 404,
     "alias nobody not found"),
    (_png((8, 8)), "model=runs:/0123/model", 400, "model must be models:/"),
    (_png((8, 8)), f"model={CHAMPION}&method=lanczos", 400, "method must be sr or bicubic"),
    (_png((8, 8), text="x" * 4_000_000), f"model={CHAMPION}", 400,  # 4 MB of text
     "metadata is over Pillow's safety limit"),
], ids=["empty", "not-an-image", "truncated", "over-the-limit", "unknown-alias", "foreign-uri",
        "unknown-method", "4-MB-text-chunk"])
def test_bad_uploads_get_a_clear_error_and_the_page_keeps_serving(page_server, body, query,
                                                                  status, words):
    url, _ = page_server
    got, detail = _post(url, body, query)
    assert (got, words in detail) == (status, True), detail
    got, data = _post(url, _png((10, 6)))
    assert got == 200 and Image.open(io.BytesIO(data)).size == (40, 24)
    got, data = _post(url, _png((10, 6)), f"model={CHAMPION}&method=bicubic")
    assert got == 200 and Image.open(io.BytesIO(data)).size == (40, 24)


def test_the_page_serves_the_scored_checkpoint_and_matlab_bicubic(page_server,
                                                                  served_quickstart):
    """SR: `upscale_image` of the train_gan checkpoint evaluation scored for @champion; bicubic:
    `imresize`, the evaluation's bicubic, pixel for pixel."""
    url, workdir = page_server
    _, _, kind = served_quickstart
    data = _lr_image(workdir).read_bytes()
    image = Image.open(io.BytesIO(data))
    status, sr = _post(url, data)
    assert status == 200, sr
    generator = generator_from_checkpoint(evaluated_weights(scored_checkpoint(workdir, kind)))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(sr))),
                          np.asarray(upscale_image(generator, image)))
    status, bicubic = _post(url, data, f"model={CHAMPION}&method=bicubic")
    assert status == 200, bicubic
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(bicubic))),
                          imresize(to_rgb_array(image), 4))


@pytest.mark.parametrize("host, status", [
    ("evil.example", 421), ("evil.example:80", 421), ("127.0.0.1.nip.io", 421),
    ("localhost", 200), ("127.0.0.1", 200), ("[::1]", 200),
])
def test_requests_for_another_host_name_are_refused(page_server, host, status):
    """DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1 sends
    `Host: evil.example`; the page answers only its own names and addresses."""
    url, _ = page_server
    port = url.rsplit(":", 1)[1]
    with_port = host if ":" in host.replace("[::1]", "") else f"{host}:{port}"
    request = urllib.request.Request(f"{url}/api/models", headers={"Host": with_port})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            got, body = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        got, body = error.code, json.loads(error.read())
    assert got == status, body
    if status == 421:
        assert "is not this server" in body["detail"] and "DNS rebinding" in body["detail"]


def _stalled_upload(url: str, body: bytes, declared: int | None = None) -> socket.socket:
    """An upload whose headers and first half are sent, the rest held back by the client."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    length = len(body) if declared is None else declared
    sock.sendall(f"POST /api/upscale?model={CHAMPION} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n"
                 f"Connection: close\r\n\r\n".encode() + body[: len(body) // 2])
    return sock


def test_a_body_over_the_byte_limit_is_refused_before_it_is_read(page_server):
    """A client announcing 300 MB gets 413 naming the limit as soon as its headers arrive: the
    server reads none of it (the client sends no body at all here)."""
    url, _ = page_server
    sock = _stalled_upload(url, b"", declared=300_000_000)
    with sock:
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert (f"300,000,000 bytes, over this server's limit of {max_body_bytes(MAX_PIXELS):,} "
            f"bytes") in json.loads(body)["detail"]


def _models(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/models", timeout=30) as response:
        return json.loads(response.read())


def test_uploads_beyond_the_bound_get_503_and_those_in_progress_are_served(page_server):
    """Two uploads in progress (held mid-body by the client: certain, not timing-dependent)
    fill the page's two slots: the page keeps answering /api/models, a third upload gets 503
    with Retry-After at once instead of queuing, and both held ones are then served."""
    url, _ = page_server
    bodies = [_png((10, 6)), _png((7, 5))]
    held = [_stalled_upload(url, body) for body in bodies]
    try:
        deadline = time.monotonic() + 60  # the server picking both up: a wait, not a measure
        while _models(url)["uploads_in_progress"] < 2:
            assert time.monotonic() < deadline, _models(url)
            time.sleep(0.05)
        request = urllib.request.Request(f"{url}/api/upscale?model={CHAMPION}", method="POST",
                                         data=_png((8, 8)))
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "5"
        assert "busy: 2 uploads are being upscaled" in json.loads(refused.value.read())["detail"]
        for sock, body in zip(held, bodies, strict=True):
            sock.sendall(body[len(body) // 2:])
        for sock, body in zip(held, bodies, strict=True):
            answer = b"".join(iter(lambda s=sock: s.recv(65536), b""))
            head, _, png = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            width, height = Image.open(io.BytesIO(body)).size
            assert Image.open(io.BytesIO(png)).size == (4 * width, 4 * height)
    finally:
        for sock in held:
            sock.close()
    assert _models(url)["uploads_in_progress"] == 0
