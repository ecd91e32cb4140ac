"""The MLflow UI in a real browser: a tiny quickstart run makes a store, `kedro mlflow ui` (the
documented command) serves it on 127.0.0.1, and headless Debian chromium (driven by Playwright,
no downloaded browser) opens the experiment, the run, a loss metric and the comparison figure.
Screenshots land in each test's tmp_path; their paths are printed (`pytest -s` shows them).

Offline as documented: the server starts as from a user's shell (none of the test's telemetry
switches or CI markers), every non-loopback connection of its Python processes is refused and
recorded (conftest.offline_env), and the browser aborts and records every request that leaves
127.0.0.1. Either record fails the test.

Needs Debian's chromium (`apt-get install -y chromium`) and the `playwright` Python package
(the `test` extra). `playwright install` is never run: the browser is /usr/bin/chromium.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
import pytest
from conftest import copy_project, free_port, offline_env, start_server, stop_process_group
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
    """`kedro mlflow ui --port <free port>` over a copy of the tiny quickstart (host 127.0.0.1
    from conf/base/mlflow.yml), in its own process group; the base URL. Always stopped at
    teardown, then its network log must be empty."""
    folder = tmp_path_factory.mktemp("mlflow_ui")
    workdir = copy_project(store["workdir"], folder / "project")
    port = free_port()
    log = folder / "server.log"
    guard, network_log = offline_env(folder / "offline")
    # kedro-mlflow starts `mlflow ui` by name from PATH: the one beside this interpreter. No
    # background job runner: the UI does not need it, and it spawns a handful of processes.
    env = {**guard, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    url = f"http://127.0.0.1:{port}"
    proc = start_server([sys.executable, "-m", "kedro", "mlflow", "ui", "--port", str(port)],
                        workdir, log, f"{url}/health", env=env, quiet=False)
    try:
        print(f"\nkedro mlflow ui {url} (pid {proc.pid}), log {log}")
        yield url
    finally:
        stop_process_group(proc)
        assert proc.returncode is not None
    used = network_log.read_text()
    assert used == "", f"the MLflow UI server used the network (telemetry?):\n{used}"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _loopback_only(browser):
    """A browser context that aborts every request beyond loopback, and the list it records
    them in."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    external = []

    def route(route):
        if urllib.parse.urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    return context, external


@pytest.fixture
def page(browser):
    """A page of a loopback-only context; the test fails if the UI requested anything beyond."""
    context, external = _loopback_only(browser)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    if errors:
        print("page errors:", *errors, sep="\n  ")
    assert external == [], f"the MLflow UI requested beyond loopback: {external}"


def test_the_browser_guard_aborts_and_records_requests_beyond_loopback(server, browser):
    """The guard every page here relies on: a request to a documentation-range address fails
    and is recorded, one to the server goes through."""
    context, external = _loopback_only(browser)
    try:
        page = context.new_page()
        page.goto(f"{server}/health")
        outcome = page.evaluate("""async () => [
            await fetch('/health').then(r => r.status, () => 'failed'),
            await fetch('http://192.0.2.1/x').then(r => r.status, () => 'failed')]""")
    finally:
        context.close()
    assert outcome == [200, "failed"]
    assert external == ["http://192.0.2.1/x"]


def test_the_ui_is_told_its_telemetry_is_off(server):
    """MLflow's UI asks its server (from a SharedWorker, which the browser's routing does not
    see) whether to send usage events and show its notice; the server that `kedro mlflow ui`
    starts answers off, because the project's settings.py turns MLflow's telemetry off for
    every command of the project, without any variable from the user."""
    with urllib.request.urlopen(f"{server}/ajax-api/3.0/mlflow/ui-telemetry",
                                timeout=10) as answer:
        assert json.load(answer)["disable_ui_telemetry"] is True


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
