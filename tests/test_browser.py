"""The MLflow UI in a real browser: Chromium (driven by Selenium) against a real `mlflow server` on a
smoke run's default store (sqlite in the run folder), as a user compares runs and promotes a student.

Chromium and its driver are Debian's (`make browser`, part of `make test`); the test fails, it does not
skip, where they are missing. Every wait is an explicit WebDriverWait on what the page shows.

MLflow 3.17's UI opens an experiment in the workflow picked by the sidebar switch (GenAI by default, kept
in the browser's storage); it no longer reads the experiment's ``mlflow.experimentKind`` tag. So the user
path the README gives is: switch to *Model training*, then open the experiment.

The compare view draws its metric names and values as two synchronised scrolling tables; under Selenium's
wheel events the names follow the values one scroll step late, so rows are read from the tables' layout
(same offset), not from where they are drawn, and the screenshot is taken before any scrolling.

``DEBIASKD_UI_RUN_DIR=DIR`` runs these tests on an existing run folder instead of a fresh smoke run (it
sets the `champion` alias there); ``DEBIASKD_UI_SCREENSHOTS=docs/img`` keeps the screenshots there
(how the README's images were made).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from conftest import MlflowServer
from debiaskd.tracking import service as tracking

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 60  # an upper bound for a page to show what it must, never a measured duration
STUDENTS = ("student_kd", "student_kd_all")  # the two students compared
FIRST_GROUP_METRIC = "challenge/constituent/entailment/accuracy"  # sorted first of the per-group metrics
GROUP_METRICS = ("challenge/lexical_overlap/non-entailment/accuracy", "challenge/negation/non-entailment/accuracy")


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished study's folder: a fresh smoke run on the default store, or DEBIASKD_UI_RUN_DIR."""
    given = os.environ.get("DEBIASKD_UI_RUN_DIR")
    if given:
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("browser") / "run"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the default store: DIR/mlflow.db
    proc = subprocess.run([sys.executable, "-m", "debiaskd", "run", "--preset", "smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=1200, cwd=out.parent, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


@pytest.fixture(scope="module")
def summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ui(run_dir, tmp_path_factory) -> MlflowServer:
    """`mlflow server` (the process `mlflow ui` starts) over HTTP on the run's own sqlite store."""
    root = tmp_path_factory.mktemp("mlflow-ui")
    server = MlflowServer(f"sqlite:///{run_dir / 'mlflow.db'}", root / "artifacts", root / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def browser() -> WebDriver:
    """A fresh headless Chromium per test (no storage carried over: each test starts as a new user)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    assert not missing, f"{missing} not installed: `make browser` installs Debian's chromium and chromium-driver"
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1920,1200"):
        options.add_argument(arg)
    # the Debian driver explicitly: Selenium Manager never looks for (or downloads) one
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    kept = os.environ.get("DEBIASKD_UI_SCREENSHOTS")
    folder = Path(kept) if kept else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ------------------------------------------------------------------------------ helpers
def wait(driver: WebDriver, condition, message: str):
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.25).until(condition, message)


def text_shown(text: str):
    """Some visible element's own text is exactly ``text``."""
    return ec.visibility_of_element_located((By.XPATH, f"//*[normalize-space(text())='{text}']"))


def page_says(text: str):
    """The page's visible text contains ``text`` (across elements: "<b>11</b> matching runs")."""
    return lambda driver: text in " ".join(driver.find_element(By.TAG_NAME, "body").text.split())


def click(driver: WebDriver, locator: tuple[str, str], message: str) -> WebElement:
    element = wait(driver, ec.element_to_be_clickable(locator), message)
    element.click()
    return element


def close_assistant(driver: WebDriver) -> None:
    """Close the MLflow Assistant side panel (it opens on a first visit and hides half the page)."""
    for button in driver.find_elements(By.XPATH, "//*[normalize-space(text())='MLflow Assistant']"
                                                 "/ancestor::*[.//button[@aria-label='Close']][1]"
                                                 "//button[@aria-label='Close']"):
        if button.is_displayed():
            button.click()
            wait(driver, ec.invisibility_of_element(button), "the MLflow Assistant panel did not close")


def experiment_id(uri: str, name: str) -> str:
    return tracking.client(uri).get_experiment_by_name(name).experiment_id


def variant_runs(uri: str, summary: dict) -> dict[str, object]:
    """variant → its MLflow run (the ids summary.json points at)."""
    c = tracking.client(uri)
    return {name: c.get_run(entry["mlflow_run_id"]) for name, entry in summary["variants"].items()}


def shown_number(text: str) -> float:
    return float(text.strip().replace(",", ""))


def same_number(shown: str, value: float) -> bool:
    """The UI rounds what it shows; ``shown`` is ``value`` at the precision it shows."""
    digits = len(shown.strip().split(".")[1]) if "." in shown else 0
    return math.isclose(shown_number(shown), value, abs_tol=0.5 * 10 ** -digits + 1e-12)


def open_training_runs(driver: WebDriver, ui: MlflowServer, experiment: str) -> None:
    """The README's path: the home page, the sidebar switch to *Model training*, then the experiment."""
    driver.get(ui.uri + "/")
    click(driver, (By.XPATH, "//*[normalize-space(text())='Model training']"), "no 'Model training' switch")
    click(driver, (By.LINK_TEXT, experiment), f"experiment {experiment} is not listed on the home page")
    wait(driver, ec.url_contains("/runs"), "the experiment did not open on its runs")


# ------------------------------------------------------------------------------ tests
def test_the_experiment_opens_on_its_training_runs(browser, ui, summary):
    experiment = tracking.client(ui.uri).get_experiment_by_name("debiaskd-nli")
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    open_training_runs(browser, ui, experiment.name)
    url = browser.current_url
    assert f"#/experiments/{experiment.experiment_id}/runs" in url and "workflowType=genai" not in url, url
    wait(browser, text_shown("Runs"), "no 'Runs' page title")
    wait(browser, page_says(f"{len(summary['variants']) + 1} matching runs"),
         "the study run and its variant runs are not counted")
    # not the GenAI landing page: no Overview/Traces heading, no trace-usage panels
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h1, h2, h3") if h.is_displayed()]
    assert not {"Overview", "Traces"} & set(headings), headings
    assert "Token Usage" not in browser.find_element(By.TAG_NAME, "body").text


def test_the_variant_runs_are_listed_with_their_challenge_metrics(browser, ui, summary):
    runs = variant_runs(ui.uri, summary)
    parent_id = next(iter(runs.values())).data.tags["mlflow.parentRunId"]
    open_training_runs(browser, ui, "debiaskd-nli")
    close_assistant(browser)
    # the variant runs are nested under the study run: expand it
    click(browser, (By.CSS_SELECTOR, f"div.ag-row[row-id='{parent_id}'] [col-id='attributes.`Run Name`'] button"),
          "the study run has no expand button")
    # add the challenge accuracy column through the column selector
    click(browser, (By.XPATH, "//button[normalize-space()='Columns']"), "no 'Columns' button")
    search = wait(browser, ec.visibility_of_element_located((By.CSS_SELECTOR, "input[placeholder='Search columns']")),
                  "the column selector did not open")
    search.send_keys("challenge/accuracy")
    click(browser, (By.XPATH, "//*[@role='tree' or @role='dialog' or @role='menu']"
                              "//*[normalize-space(text())='challenge/accuracy']"), "no challenge/accuracy column")
    search.send_keys("\ue00c")  # Escape closes the selector
    column = "metrics.`challenge/accuracy`"
    for variant, run in runs.items():
        row = f"div.ag-row[row-id='{run.info.run_id}']"
        wait(browser, ec.visibility_of_element_located((By.CSS_SELECTOR, f"{row} a[href$='/runs/{run.info.run_id}']")),
             f"{variant}'s run is not listed")
        name = browser.find_element(By.CSS_SELECTOR, f"{row} a[href$='/runs/{run.info.run_id}']").text
        assert name == run.info.run_name and name.startswith(variant), (variant, name)
        cell = wait(browser, ec.visibility_of_element_located((By.CSS_SELECTOR, f"{row} [col-id='{column}']")),
                    f"{variant}'s row has no challenge/accuracy cell")
        wait(browser, lambda _d, cell=cell: cell.text.strip() != "", f"{variant}'s challenge/accuracy is empty")
        assert same_number(cell.text, run.data.metrics["challenge/accuracy"]), (variant, cell.text)


def compare_metric_row(driver: WebDriver, section: WebElement, metric: str) -> list[str]:
    """The values the compare view shows for ``metric``, one per run column, scrolling its table as a user does.

    The row is read from the table's own layout (the names cell and the value cells at the same offset),
    not from where they are drawn (see the module notes).
    """
    names_grid, values_grid = section.find_elements(By.CSS_SELECTOR, "div.ReactVirtualized__Grid[role='grid']")[:2]

    def row_shown(driver: WebDriver):
        names = names_grid.find_elements(By.XPATH, f".//a[@title='Plot chart'][normalize-space()='{metric}']")
        if names:
            return names[0]
        ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(values_grid), 0, 180).perform()
        return False

    name = wait(driver, row_shown, f"the compare view does not list {metric}")
    top = name.find_element(By.XPATH, "./..").value_of_css_property("top")
    cells = [c for c in values_grid.find_elements(By.CSS_SELECTOR, "div[style*='position: absolute']")
             if c.value_of_css_property("top") == top]
    return [c.text for c in sorted(cells, key=lambda c: c.location["x"])]


def test_the_compare_view_of_two_students_shows_their_per_group_metrics(browser, ui, summary, screenshots):
    runs = variant_runs(ui.uri, summary)
    students = [runs[name] for name in STUDENTS]
    parent_id = students[0].data.tags["mlflow.parentRunId"]
    open_training_runs(browser, ui, "debiaskd-nli")
    close_assistant(browser)
    click(browser, (By.CSS_SELECTOR, f"div.ag-row[row-id='{parent_id}'] [col-id='attributes.`Run Name`'] button"),
          "the study run has no expand button")
    for run in students:  # tick the two students, then Compare
        box = f"div.ag-row[row-id='{run.info.run_id}'] .ag-selection-checkbox .ag-checkbox-input-wrapper"
        click(browser, (By.CSS_SELECTOR, box),
              f"{run.info.run_name} cannot be selected")
    click(browser, (By.XPATH, "//button[normalize-space()='Compare']"), "no 'Compare' button for two selected runs")
    wait(browser, ec.url_contains("#/compare-runs"), "Compare did not open the compare view")
    wait(browser, page_says("Comparing 2 Runs from 1 Experiment"), "the compare view does not say what it compares")
    close_assistant(browser)
    columns = sorted(students, key=lambda r: wait(browser, ec.visibility_of_element_located(
        (By.XPATH, f"//a[normalize-space()='{r.info.run_id}']"), ), f"no column for {r.info.run_name}").location["x"])
    section = wait(browser, ec.presence_of_element_located(
        (By.XPATH, "//button[@aria-label='Metrics - Show diff only']/ancestor::div"
                   "[.//div[contains(@class,'ReactVirtualized__Grid')]][1]")), "the compare view has no Metrics table")
    # the screenshot first, before the metrics table scrolls: its first rows already hold per-group metrics
    parameters = browser.find_element(By.XPATH, "//*[normalize-space(text())='Parameters']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", parameters)
    wait(browser, ec.visibility_of_element_located((By.XPATH, f"//a[@title='Plot chart'][normalize-space()="
                                                              f"'{FIRST_GROUP_METRIC}']")), "no per-group row on top")
    browser.save_screenshot(str(screenshots / "mlflow-compare.png"))
    for metric in (FIRST_GROUP_METRIC, *GROUP_METRICS):
        shown = compare_metric_row(browser, section, metric)
        expected = [run.data.metrics[metric] for run in columns]
        assert len(shown) == len(expected) and all(map(same_number, shown, expected)), (metric, shown, expected)


def test_the_registered_students_page_shows_its_champion_alias(browser, ui, summary, run_dir, screenshots):
    """Promote the registered student through `debiaskd promote`; a smoke student is refused by design
    (a constant predictor is no better than the majority class), and then the alias is set as an operator
    would, with MlflowClient. Either way the version page must show `champion`."""
    student = summary["registration"]["student"]
    name, version = student["name"], student["version"]
    c = tracking.client(ui.uri)
    if tracking.alias_version(ui.uri, name, "champion") is None:
        proc = subprocess.run([sys.executable, "-m", "debiaskd", "promote", "--model", name, "--version", version,
                               "--tracking-uri", ui.uri], capture_output=True, text=True, timeout=600)
        assert proc.returncode in (0, 3), proc.stdout[-2000:] + proc.stderr[-3000:]
        if proc.returncode == 3:  # the gate refused, by design on smoke: see the docstring
            assert "promotion refused" in proc.stderr and not summary["registration"]["student"]["gate"]["passed"]
            c.set_registered_model_alias(name, "champion", version)
    champion = str(tracking.alias_version(ui.uri, name, "champion").version)
    browser.get(f"{ui.uri}/#/models/{name}/versions/{champion}")
    wait(browser, page_says(f"Version {champion}"),
         "the model version page did not open")
    close_assistant(browser)
    aliases = ("//div[@data-testid='descriptions-item'][.//div[@data-testid='descriptions-item-label']"
               "[normalize-space()='Aliases']]//div[@data-testid='descriptions-item-content']")
    chip = wait(browser, ec.visibility_of_element_located((By.XPATH, f"{aliases}//*[@title='champion']")),
                "the version page shows no champion alias")
    assert "champion" in chip.text
    chips = browser.find_elements(By.XPATH, f"{aliases}//*[@role='status'][@title]")  # not the edit button
    shown = {e.get_attribute("title") for e in chips}
    expected = {a for a, v in c.get_registered_model(name).aliases.items() if str(v) == champion}
    assert shown == expected and "champion" in shown, (shown, expected)
    assert f"{name} v{champion}" in browser.title
    browser.save_screenshot(str(screenshots / "mlflow-model-version.png"))
