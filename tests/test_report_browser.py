"""The built report in a real browser: Debian's chromium, driven by Playwright, opens index.html of a
small generated suite from disk (file://, as a reader of a checked-out or unzipped report would) and
checks that every image loads and has a size, every link resolves, every table renders with its
rows, nothing fails on the page, and saves a screenshot of the whole page.

`make setup` installs chromium (apt) and Playwright (the `test` extra); Playwright's own browser
downloads are never used. The test skips, saying why, only where chromium itself is absent.
Set REPORT_SCREENSHOT=path.png to keep the screenshot.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reports import build_report
from test_reports import SUITE, write_golden_results

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
# Links are fetched from the page itself, as the browser resolves them; file:// needs this flag for it.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--allow-file-access-from-files"]

IMAGES = """() => Array.from(document.images).map(img => ({
    src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0,
    width: img.getBoundingClientRect().width, height: img.getBoundingClientRect().height}))"""
LINKS = """() => Array.from(document.querySelectorAll("a[href]")).map(a => a.getAttribute("href"))"""
FETCH = """(href) => { const request = new XMLHttpRequest();
    try { request.open("GET", href, false); request.send(); }
    catch (error) { return {ok: false, why: String(error)}; }
    return {ok: (request.status === 0 || request.status === 200) && request.responseText.length > 0,
            why: "status " + request.status + ", " + request.responseText.length + " characters"}; }"""
TABLES = """() => Array.from(document.querySelectorAll("table")).map(t => ({
    id: t.id, rows: t.querySelectorAll("tbody tr").length,
    width: t.getBoundingClientRect().width, height: t.getBoundingClientRect().height,
    text: t.innerText}))"""


@pytest.mark.slow
def test_report_opens_in_chromium(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (`make setup` installs Debian's chromium when apt-get is usable "
                    "as root; or `apt-get install chromium`)")
    from playwright.sync_api import sync_playwright  # the `test` extra; a missing one is a broken setup

    root = write_golden_results(tmp_path / "results")
    out = tmp_path / "report"
    build_report(SUITE, root, out)
    html = (out / "index.html").read_text(encoding="utf-8")
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
            page.goto((out / "index.html").as_uri(), wait_until="load")
            images = page.evaluate(IMAGES)
            links = page.evaluate(LINKS)
            fetched = {href: page.evaluate(FETCH, href) for href in links if not href.startswith("#")}
            anchors = {href: page.evaluate("(id) => document.getElementById(id) !== null", href[1:])
                       for href in links if href.startswith("#")}
            tables = page.evaluate(TABLES)
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert not problems, problems
    assert len(images) == html.count("<img ") and len(images) >= 10
    for image in images:
        assert image["loaded"] and image["width"] > 0 and image["height"] > 0, image
    assert len(fetched) >= 40  # tables (md, tex), figures (png, svg), CSVs, the tuner's file
    for href, result in fetched.items():
        assert result["ok"], (href, result["why"])
    assert anchors and all(anchors.values()), anchors
    by_id = {t["id"]: t for t in tables}
    assert len(tables) == html.count("<table ")
    for table in tables:
        assert table["rows"] > 0 and table["width"] > 0 and table["height"] > 0, table["id"]
    assert "72.00 ± 2.00 (n=3)" in by_id["main_table"]["text"]
    assert "Newest run finished" in by_id["provenance"]["text"]
    assert {"main_table", "gain_over_fedavg", "cost_table", "configurations", "excluded_runs"} <= set(by_id)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("REPORT_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["REPORT_SCREENSHOT"])
    # the screenshot is the whole page: far taller than one window
    width, height = _png_size(shot)
    assert width >= 1400 and height > 3 * 900


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[16:24]
    return int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
