"""The report in a real browser (Debian's Chromium, headless, from file://): no console errors,
every image loads, the feature table sorts and filters, links open, class names stay text."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reports.runs import LONG, XSS, digits_run
from vista.reports.html import ReportConfig, write_report


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        msg = "Chromium and chromedriver are missing; scripts/install.sh installs Debian's chromium and chromium-driver"
        if os.environ.get("VISTA_REQUIRE_BROWSER"):
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chrome')}",
        "--window-size=1280,1600",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    b = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver))
    yield b
    b.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = digits_run(tmp_path_factory.mktemp("digits") / "run", xss=True)
    return write_report(run, ReportConfig(max_features=30))


def _open(b: Any, path: Path, shots: Path) -> None:
    b.get(path.resolve().as_uri())
    b.get_screenshot_as_file(str(shots / f"{path.parent.name}_{path.stem}.png"))
    errors = [e for e in b.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    broken = b.execute_script(
        "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
    )
    assert not broken, broken
    assert b.execute_script("return document.images.length") > 0 or path.parent.name == "labels"


def test_the_report_works_in_chromium(browser: Any, report: Path, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    _open(browser, report, tmp_path)
    header = browser.find_element(By.XPATH, "//table[@id='features']//th[text()='best AUC']")
    col = len(
        browser.find_elements(
            By.XPATH, "//table[@id='features']//th[text()='best AUC']/preceding-sibling::th"
        )
    )

    def column() -> list[float]:
        cells = browser.find_elements(
            By.CSS_SELECTOR, f"#features tbody tr td:nth-child({col + 1})"
        )
        return [float(c.text) for c in cells]

    header.click()
    assert column() == sorted(column())
    header.click()
    asc = column()
    assert asc == sorted(asc, reverse=True) and len(asc) == 30
    browser.find_element(By.ID, "filter").send_keys("parity=")
    shown = [
        r for r in browser.find_elements(By.CSS_SELECTOR, "#features tbody tr") if r.is_displayed()
    ]
    assert 0 < len(shown) < 30 or all("parity=" in r.text for r in shown)
    links = [
        a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#features a")
    ][:2]
    for href in links:
        _open(browser, Path(href.removeprefix("file://")), tmp_path)
        assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Feature ")
    label_page = report.parent / "labels" / "1.html"
    _open(browser, label_page, tmp_path)
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert XSS in browser.find_element(By.TAG_NAME, "main").text  # shown as text, not run
    assert len(list(tmp_path.glob("*.png"))) == 4


def test_a_300_character_class_name_keeps_every_page_on_screen(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A class name of 300 characters without a space wraps in tables and headings (it made the
    feature table 5,700 px wide): no page of the report scrolls sideways in a 1280 px window."""
    run = digits_run(tmp_path_factory.mktemp("long") / "run", long_name=True)
    index = write_report(run, ReportConfig(max_features=10))
    pages = [index, *sorted((index.parent / "labels").glob("*.html"))]
    pages += sorted((index.parent / "features").glob("*.html"))[:3]
    for page in pages:
        _open(browser, page, tmp_path)
        wide = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert wide <= 0, f"{page.name} is {wide} px wider than the window"
    assert LONG in (index.parent / "labels" / "1.html").read_text()  # shown in full, wrapped


def test_every_alive_feature_is_reachable_by_page_and_by_search(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Issue 26: every alive feature has a page and a row; the table pages through them, a
    feature's number finds it alone, a class finds its features, and sorting covers all rows,
    not only the page shown."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    from vista.analysis import exemplars
    from vista.analysis.result import read_results

    run = digits_run(tmp_path_factory.mktemp("all") / "run")
    index = write_report(run)  # report.max_features=0: every alive feature
    alive = exemplars.REPORT_ORDER.of(read_results(run))
    assert len(list((index.parent / "features").glob("*.html"))) == len(alive) > 50
    _open(browser, index, tmp_path)
    Select(browser.find_element(By.ID, "page-size")).select_by_visible_text("50")

    def ids() -> list[int]:
        return [int(a.text) for a in browser.find_elements(By.CSS_SELECTOR, "#features tbody a")]

    seen = ids()
    assert len(seen) == 50 and f"of {len(alive)}" in browser.find_element(By.ID, "showing").text
    browser.find_element(By.ID, "next").click()
    seen += ids()
    assert sorted(seen) == sorted(int(i) for i in alive)  # two pages hold every feature once
    assert not browser.find_element(By.ID, "next").is_enabled()
    box = browser.find_element(By.ID, "filter")
    box.send_keys(str(seen[37]))
    assert ids() == [seen[37]]  # a number is that feature, not every row containing its digits
    box.clear()
    box.send_keys("#" + str(seen[3]))
    assert ids() == [seen[3]]
    box.clear()
    box.send_keys("digit=3")
    rows = browser.find_elements(By.CSS_SELECTOR, "#features tbody tr")
    assert rows and all("digit=3" in r.text for r in rows)
    box.clear()  # (sets the value without an input event: the next keys send one)
    box.send_keys("x", Keys.BACK_SPACE)  # an emptied box shows every row again
    header = browser.find_element(By.XPATH, "//table[@id='features']//th[text()='feature']")
    header.click()
    assert ids() == sorted(int(i) for i in alive)[:50]  # the smallest ids of all, not of a page
    header.click()
    assert ids() == sorted((int(i) for i in alive), reverse=True)[:50]
