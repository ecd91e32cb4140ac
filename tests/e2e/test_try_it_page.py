"""The try-it page in a real browser: `python -m srgan_pipeline.serving` over the tiny
quickstart's registry, driven by headless Debian chromium (Playwright, no downloaded browser):
upload an image, wait for the result, check it is x4 and decodes, download it, screenshot it.
Also the page's API with bad input, by plain HTTP. Screenshots land in tmp_path (`pytest -s`
prints their paths).
"""

from __future__ import annotations

import io
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, start_server, stop_process_group
from PIL import Image

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
def page_server(tiny_quickstart, tmp_path_factory):
    """The page as README starts it, on a free port; (base URL, project folder)."""
    workdir, _ = tiny_quickstart
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


def _post(url: str, body: bytes, query: str = f"model={CHAMPION}"):
    request = urllib.request.Request(f"{url}/api/upscale?{query}", data=body, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["detail"]


def _png(size) -> bytes:
    array = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
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
], ids=["empty", "not-an-image", "truncated", "over-the-limit", "unknown-alias", "foreign-uri",
        "unknown-method"])
def test_bad_uploads_get_a_clear_error_and_the_page_keeps_serving(page_server, body, query,
                                                                  status, words):
    url, _ = page_server
    got, detail = _post(url, body, query)
    assert (got, words in detail) == (status, True), detail
    got, data = _post(url, _png((10, 6)))
    assert got == 200 and Image.open(io.BytesIO(data)).size == (40, 24)
    got, data = _post(url, _png((10, 6)), "method=bicubic")
    assert got == 200 and Image.open(io.BytesIO(data)).size == (40, 24)
