"""``tinct serve`` in a real browser: Debian's headless Chromium driven by Playwright.

Nothing is downloaded: Playwright is pointed at the system Chromium (``/usr/bin/chromium``, or
``TINCT_CHROMIUM``). Skipped with the reason when Chromium, Playwright or Gradio is missing.

``TINCT_SCREENSHOTS=DIR`` also writes the page screenshots the README shows into DIR
(``TINCT_SCREENSHOTS=docs``); ``TINCT_STUDY_PHOTOS=DIR`` takes the study's photos from DIR
instead of synthetic ones (for a screenshot with real photos).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import color_image
from tinct.weights import DEFAULT_MODEL

CHROMIUM = os.environ.get("TINCT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
UPLOAD_LIMIT_MB = 0.5

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TINCT_CHROMIUM)", allow_module_level=True)
pytest.importorskip("gradio", reason="gradio is not installed (pip install 'tinct[serve]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _screenshot(page, name: str) -> None:
    folder = os.environ.get("TINCT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), type="jpeg", quality=70, full_page=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tinct.serve import ServeConfig, TinctApp

    photos = tmp_path_factory.mktemp("study_photos")
    source = os.environ.get("TINCT_STUDY_PHOTOS")
    if source:
        for p in sorted(Path(source).glob("*.jp*g"))[:4]:
            shutil.copy(p, photos / p.name)
    else:
        for i in range(3):
            color_image(96, 72, seed=i).save(photos / f"photo{i}.png")
    csv_path = tmp_path_factory.mktemp("study") / "answers.csv"
    app = TinctApp(ServeConfig(models=["default", "cic", "bigcolor"], device="cpu", max_upload_mb=UPLOAD_LIMIT_MB,
                               max_pixels=4_000_000, study_dir=str(photos), study_csv=str(csv_path), trials=2,
                               exposure_s=1.0, display_size=256, seed=0))
    url = app.launch("127.0.0.1", _free_port(), block=False)
    yield app, url
    app.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def test_upload_colorize_download(server, page, tmp_path):
    _app, url = server
    page.goto(url)
    page.wait_for_selector("#colorize")
    page.set_input_files("#upload input[type=file]", [str(EXAMPLES / "chelsea.jpg"), str(EXAMPLES / "rocket.jpg")])
    page.wait_for_selector("#upload >> text=rocket")  # both files are uploaded
    page.click("#colorize")
    page.wait_for_selector("#download-png", state="visible")
    assert "Colorized 2 images" in page.inner_text("#status")
    assert page.locator("#gallery img").count() == 2
    assert page.locator("#slider img").count() >= 2  # before and after

    with page.expect_download() as d:
        page.click("#download-png")
    assert d.value.suggested_filename == "chelsea.png"
    png = tmp_path / "chelsea.png"
    d.value.save_as(png)
    gray = Image.open(EXAMPLES / "chelsea.jpg")
    result = Image.open(png)
    assert result.size == gray.size and result.mode == "RGB"
    rgb = np.asarray(result, dtype=np.float32)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).mean() > 2  # it has color

    with page.expect_download() as d:
        page.click("#download-zip")
    archive = tmp_path / "all.zip"
    d.value.save_as(archive)
    assert sorted(zipfile.ZipFile(archive).namelist()) == ["chelsea.png", "rocket.png"]
    _screenshot(page, "serve_colorize.jpg")
    page.click("#card-box button")  # the model card opens under the page
    page.wait_for_selector(f"#model-card >> text=Model card: {DEFAULT_MODEL}")  # "default" shows the default's card
    page.click("#card-box button")

    # a phone-size screen: everything fits the width, nothing scrolls sideways
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    _screenshot(page, "serve_phone.jpg")


def test_model_switch_shows_its_generated_controls(server, page):
    _app, url = server
    page.goto(url)
    page.wait_for_selector("#colorize")
    assert not page.locator("#opt-bigcolor-samples").is_visible()
    page.click("#model input")
    page.get_by_role("option", name="bigcolor").click()
    page.wait_for_selector("#opt-bigcolor-samples", state="visible")
    assert page.locator("#opt-bigcolor-class").is_visible() and not page.locator("#opt-cic-temperature").is_visible()
    page.wait_for_selector("#model >> text=method bigcolor")  # the model card's summary follows the model
    page.click("#card-box button")
    page.wait_for_selector("#model-card >> text=Model card: bigcolor")
    # the generated controls reach the method: 2 samples -> 2 results
    page.fill("#opt-bigcolor-samples input[type=number]", "2")
    page.press("#opt-bigcolor-samples input[type=number]", "Tab")
    page.set_input_files("#upload input[type=file]", [str(EXAMPLES / "coffee.jpg")])
    page.wait_for_selector("#upload >> text=coffee")
    page.click("#colorize")
    page.wait_for_selector("#download-png", state="visible")
    assert page.locator("#gallery img").count() == 2
    assert "coffee_s0.png" in page.inner_text("#gallery") and "coffee_s1.png" in page.inner_text("#gallery")


def test_oversize_upload_gets_a_message(server, page, tmp_path):
    _app, url = server
    noise = np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)  # ~1.5 MB as PNG
    big = tmp_path / "big_scan.png"
    Image.fromarray(noise).save(big)
    assert big.stat().st_size > UPLOAD_LIMIT_MB * 1024 * 1024
    page.goto(url)
    page.wait_for_selector("#colorize")
    page.set_input_files("#upload input[type=file]", [str(big)])
    message = page.get_by_text("exceed the maximum allowed size")
    message.wait_for()
    assert "big_scan.png" in message.inner_text()


def test_non_image_and_pixel_limit_get_messages(server, page, tmp_path):
    _app, url = server
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"this is not an image")
    wide = tmp_path / "wide.png"
    Image.new("L", (2500, 2000), 120).save(wide)  # 5 MP, a small file, over the 4 MP limit
    page.goto(url)
    page.wait_for_selector("#colorize")
    page.set_input_files("#upload input[type=file]", [str(notes), str(wide), str(EXAMPLES / "coffee.jpg")])
    page.wait_for_selector("#upload >> text=coffee")
    page.click("#colorize")
    page.wait_for_selector("#status >> text=Not colorized")
    status = page.inner_text("#status")
    assert "notes.png: not an image" in status
    assert "wide.png: image is 2500x2000" in status and "over the limit" in status
    assert "Colorized 1 image" in status


def test_study_trial_writes_a_csv_row(server, page):
    app, url = server
    page.goto(url.rstrip("/") + "/study")
    page.click("#study-start")
    page.wait_for_selector("#study-trial .tinct-trial.showing", timeout=60_000)  # both photos visible together
    _screenshot(page, "serve_study.jpg")
    page.wait_for_selector("#study-trial .tinct-trial.done", timeout=10_000)  # hidden after the exposure
    assert page.locator("#study-trial img").first.evaluate("im => getComputedStyle(im).visibility") == "hidden"
    page.click("#study-left")
    page.wait_for_selector("#study-info >> text=Trial 2 of 2")
    deadline = time.time() + 10
    rows = []
    while time.time() < deadline and not rows:
        rows = list(csv.DictReader(io.StringIO(Path(app.config.study_csv).read_text())))
        time.sleep(0.1)
    assert len(rows) == 1
    row = rows[0]
    assert row["choice"] == "left" and row["model"] in ("default", "cic", "bigcolor")
    assert row["fooled"] == str(int(row["real_side"] != "left")) and row["exposure_ms"] == "1000"
    assert int(row["response_ms"]) >= 1000  # answered after the exposure
