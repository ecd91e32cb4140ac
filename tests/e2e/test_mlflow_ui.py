"""The MLflow UI in a real browser: a tiny quickstart run makes a store, `mlflow server` serves it
on 127.0.0.1, and headless Debian chromium (driven by Playwright, no downloaded browser) opens
the experiment, the run, a loss metric and the comparison figure. Screenshots land in each test's
tmp_path; their paths are printed (`pytest -s` shows them).

Needs Debian's chromium (`apt-get install -y chromium`) and the `playwright` Python package
(the `test` extra). `playwright install` is never run: the browser is /usr/bin/chromium.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from conftest import QUIET_ENV, free_port, stop_process_group
from playwright import sync_api  # the `test` extra: missing is an error, not a skip

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="chromium not installed: apt-get install -y chromium"),
]

expect = sync_api.expect

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-sync",
]
EXPERIMENT = "srgan_pipeline"
LOSS = "pretrain/pixel"
FIGURE = "comparisons/skimage_heldout/chelsea.png"
UI_TIMEOUT_MS = 60_000  # a cold React bundle on 2 busy cores


@pytest.fixture(scope="module")
def store(tiny_quickstart):
    """The tiny quickstart's mlflow.db and mlruns/, with the one run's id and metrics."""
    workdir, _ = tiny_quickstart
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    run, = client.search_runs([experiment.experiment_id])
    return {"workdir": workdir, "experiment_id": experiment.experiment_id, "run": run}


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    """`mlflow server` on 127.0.0.1:<free port> over the store, in its own process group; the
    base URL. Always stopped at teardown."""
    workdir = store["workdir"]
    port = free_port()
    log = tmp_path_factory.mktemp("mlflow_server") / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--default-artifact-root", str(workdir / "mlruns"),
        "--artifacts-destination", str(workdir / "mlruns"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    # no background job runner: the UI does not need it, and it spawns a handful of processes
    env = {**os.environ, **QUIET_ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited ({proc.returncode}):\n"
                            + log.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("mlflow server not healthy after 120 s:\n" + log.read_text()[-3000:])
            time.sleep(0.5)
        print(f"\nmlflow server {url} (pid {proc.pid}), log {log}")
        yield url
    finally:
        stop_process_group(proc)
        assert proc.returncode is not None


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    if errors:
        print("page errors:", *errors, sep="\n  ")


def _screenshot(page, path: Path) -> None:
    page.screenshot(path=path)
    print(f"screenshot: {path}")


def _close_assistant(page) -> None:
    """MLflow 3's assistant panel takes a third of the window; close it when it is there."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()


def test_the_experiment_lists_the_run(server, store, page, tmp_path):
    run = store["run"]
    page.goto(f"{server}/#/experiments")
    experiment_link = page.get_by_role("link", name=EXPERIMENT, exact=True)
    expect(experiment_link).to_be_visible()
    _close_assistant(page)
    _screenshot(page, tmp_path / "experiments.png")

    # MLflow 3 opens an experiment in its GenAI view unless "Model training" is picked
    page.get_by_text("Model training", exact=True).click()
    experiment_link.click()
    run_link = page.get_by_role("link", name=run.info.run_name, exact=True)
    expect(run_link).to_be_visible()
    expect(page.get_by_text("1 matching run")).to_be_visible()
    assert run_link.get_attribute("href").endswith(
        f"/experiments/{store['experiment_id']}/runs/{run.info.run_id}")
    _screenshot(page, tmp_path / "experiment_runs.png")

    run_link.click()
    expect(page).to_have_url(re.compile(f"/runs/{run.info.run_id}"))
    expect(page.get_by_text(run.info.run_id, exact=True)).to_be_visible()


def test_the_run_page_shows_a_loss_metric(server, store, page, tmp_path):
    run = store["run"]
    page.goto(f"{server}/#/experiments/{store['experiment_id']}/runs/{run.info.run_id}")
    metrics = run.data.metrics
    expect(page.get_by_text(f"Metrics ({len(metrics)})", exact=True)).to_be_visible()
    row = page.get_by_role("row").filter(has=page.get_by_text(LOSS, exact=True))
    expect(row).to_have_count(1)
    # The row's cells, not its text split on spaces: which columns the table shows depends on
    # the experiment's kind, which MLflow 3 records on the server when a user (or another test)
    # picks a view, so a run page opened first shows more of them.
    cells = [text.strip() for text in row.get_by_role("cell").all_inner_texts()]
    assert cells[0] == LOSS, cells
    values = [float(text) for text in cells[1:] if re.fullmatch(r"-?[\d.]+(e-?\d+)?", text)]
    assert values and values[0] == pytest.approx(metrics[LOSS]), cells
    _close_assistant(page)
    row.scroll_into_view_if_needed()
    _screenshot(page, tmp_path / "run_overview.png")


def test_the_artifacts_view_shows_the_comparison_figure(server, store, page, tmp_path):
    run = store["run"]
    page.goto(f"{server}/#/experiments/{store['experiment_id']}/runs/{run.info.run_id}")
    page.get_by_role("tab", name="Artifacts").click()
    expect(page).to_have_url(re.compile(f"/runs/{run.info.run_id}/artifacts"))
    expect(page.get_by_text("checkpoints", exact=True)).to_be_visible()
    for part in FIGURE.split("/"):  # folders, then the file
        page.get_by_text(part, exact=True).click()
    expect(page.get_by_text(FIGURE, exact=True)).to_be_visible()  # the preview's title
    # the preview is the PNG fetched from the server and decoded: five panels side by side
    figure = page.locator("img[src^='blob:']").first
    expect(figure).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                           arg=figure.element_handle())
    width, height = figure.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 4 * height
    _close_assistant(page)
    _screenshot(page, tmp_path / "artifacts.png")
