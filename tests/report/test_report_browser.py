"""The HTML report in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by selenium): the tables render, every figure has a non-zero natural size, and clicking a
column header sorts the table.

Without the browser the test is skipped, unless ``BENCH_REQUIRE_BROWSER=1`` (set by ``.ci/run``,
which installs it) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.results.analysis import load_results
from bench.results.report import ReportOptions, write_report

CHROMIUM = os.environ.get("BENCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BENCH_CHROMEDRIVER", "/usr/bin/chromedriver")


def _browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("BENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def column_values(driver: Any, table: Any, column: int) -> list[float]:
    from selenium.webdriver.common.by import By

    cells = table.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({column + 1})")
    return [float(c.get_attribute("data-sort")) for c in cells if c.get_attribute("data-sort")]


def test_html_report_renders_shows_figures_and_sorts(
    run_store: Path, tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    out = tmp_path / "report"
    write_report(
        load_results(run_store), out, name="tiny", formats=("html",), options=ReportOptions()
    )
    page = out / "tiny.html"
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    # The page stands alone: move it away from its figure folder before opening it.
    alone = tmp_path / "alone.html"
    page.rename(alone)
    shutil.rmtree(out)

    driver = browser
    driver.get(alone.as_uri())
    # The details are folded; open every one to check what they hold.
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    tables = driver.find_elements(By.CSS_SELECTOR, "table.sortable")
    assert len(tables) >= 4 * 3 + 1  # per scenario: metrics, comparison, coverage; and timing
    for table in tables:
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert rows and table.size["height"] > 0 and table.size["width"] > 0
    images = driver.find_elements(By.TAG_NAME, "img")
    assert len(images) == 4
    for image in images:
        assert driver.execute_script("return arguments[0].complete", image)
        assert driver.execute_script("return arguments[0].naturalWidth", image) > 0
        assert driver.execute_script("return arguments[0].naturalHeight", image) > 0

    metrics_table = next(
        t
        for t in tables
        if t.find_elements(By.TAG_NAME, "caption")
        and t.find_element(By.TAG_NAME, "caption").text.startswith("Mean over seeds")
    )
    headers = metrics_table.find_elements(By.CSS_SELECTOR, "thead th")
    column = next(i for i, h in enumerate(headers) if h.text.startswith("rmse"))
    before = column_values(driver, metrics_table, column)
    assert before != sorted(before)  # rows come grouped by k, not by rmse
    headers[column].click()
    ascending = column_values(driver, metrics_table, column)
    assert ascending == sorted(before)
    assert headers[column].get_attribute("aria-sort") == "ascending"
    headers[column].click()
    assert column_values(driver, metrics_table, column) == sorted(before, reverse=True)
    learner = headers[0]
    learner.click()
    names = [
        c.text for c in metrics_table.find_elements(By.CSS_SELECTOR, "tbody tr td:first-child")
    ]
    assert names == sorted(names)


def test_the_headline_is_in_view_at_1400_by_900_and_the_details_fold(
    run_store: Path, tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    out = tmp_path / "report"
    write_report(
        load_results(run_store), out, name="tiny", formats=("html",), options=ReportOptions()
    )
    driver = browser
    driver.set_window_size(1400, 900)
    driver.get((out / "tiny.html").as_uri())
    view = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    headline = driver.find_element(By.CSS_SELECTOR, "#headline table")
    box = driver.execute_script("return arguments[0].getBoundingClientRect().toJSON()", headline)
    assert box["top"] >= 0 and box["bottom"] <= view[1], (box, view)
    assert box["right"] <= view[0]  # no sideways scrolling for the headline
    rows = headline.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert rows and all(r.is_displayed() for r in rows)
    verdicts = driver.find_element(By.CSS_SELECTOR, "#verdicts table")
    assert verdicts.find_elements(By.CSS_SELECTOR, "tbody tr")
    # The full tables start folded: opening them makes the page at least twice as tall.
    folded = driver.execute_script("return document.documentElement.scrollHeight")
    assert all(not d.get_attribute("open") for d in driver.find_elements(By.TAG_NAME, "details"))
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    opened = driver.execute_script("return document.documentElement.scrollHeight")
    assert opened >= 2 * folded, (folded, opened)
