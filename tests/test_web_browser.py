"""The explorer page in a real browser: Debian's Chromium, headless, driven by Playwright.

The real server (uvicorn, in a thread, on a free loopback port) serves four tiny runs: a 2-D
VAE, a denoising dense AE, a conditional VAE and a U-Net denoiser whose latent (1,568 numbers)
is too large to send, so its sliders move along principal axes.  Screenshots land in ``test-artifacts/`` at the repository root.
Any request the page makes to anything but this server is blocked and fails the test: the
page must work offline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _browser import CHROMIUM, CHROMIUM_ARGS  # noqa: F401  (tests/test_runs_compare.py imports them from here)

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# as in test_web_api.py, so a session that runs both trains each once
CVAE_OPTIONS = {"channels": (8, 16), "hidden": 32, "latent_dim": 4}
UNET_OPTIONS = {"channels": (8,)}
TIMEOUT_MS = 60_000  # the first page load trains nothing but loads a model and encodes the test set


@pytest.fixture(scope="module")
def server(make_run):
    pytest.importorskip("uvicorn")
    from aekit.web import create_app
    from aekit.web.background import serve_in_thread

    runs = [make_run("vae"), make_run("dense-ae", task="denoise", noise="gaussian:0.5"),
            make_run("cvae", model_options=CVAE_OPTIONS),
            make_run("dn", task="denoise", noise="gaussian:0.5", model_options=UNET_OPTIONS)]
    with serve_in_thread(create_app(runs, allowed_hosts=["127.0.0.1", "localhost"])) as base:
        yield base


class Page:
    """A fresh page on the explorer, with the console errors and foreign requests it produced."""

    def __init__(self, browser, base: str):
        self.base = base
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def _route(self, route):
        url = route.request.url
        if url.startswith((self.base, "data:", "blob:")):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.base}/{fragment}")
        self.wait_ready()

    def wait_ready(self) -> None:
        self.page.wait_for_selector("body[data-ready='1']")

    def src(self, selector: str) -> str:
        return self.page.get_attribute(selector, "src") or ""

    def wait_src_change(self, selector: str, before: str) -> str:
        self.page.wait_for_function(
            "([sel, before]) => { const el = document.querySelector(sel);"
            " return el && el.src.startsWith('data:image/png') && el.src !== before; }",
            arg=[selector, before])
        return self.src(selector)

    def box(self, selector: str) -> dict:
        return self.page.locator(selector).bounding_box()

    def draw_stroke(self, points: list[tuple[float, float]]) -> None:
        """A mouse stroke on the pad; points in [0, 1] of its width and height."""
        box = self.box("#pad")
        xy = [(box["x"] + u * box["width"], box["y"] + v * box["height"]) for u, v in points]
        self.page.mouse.move(*xy[0])
        self.page.mouse.down()
        for x, y in xy[1:]:
            self.page.mouse.move(x, y, steps=3)
        self.page.mouse.up()

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def check_clean(self) -> None:
        assert self.errors == [], f"console errors: {self.errors}"
        assert self.foreign == [], f"the page reached outside the server: {self.foreign}"


@pytest.fixture
def page(browser, server):
    p = Page(browser, server)
    yield p
    p.context.close()


def test_page_loads_and_draws_every_point(page, server):
    import httpx

    page.open()
    expected = len(httpx.get(f"{server}/api/points?run=0").json()["points"])
    assert expected > 0
    assert page.page.get_attribute("#map", "data-points") == str(expected)
    assert "2-D latent space" in page.page.text_content("#projection")
    assert page.page.locator("#legend .legend-item").count() == 10
    assert page.src("#decoded").startswith("data:image/png")
    assert page.page.locator("#sliders input[type=range]").count() == 2
    assert page.page.is_visible("#random-button")  # a VAE can sample its prior
    page.screenshot("explorer-loaded")
    page.check_clean()


def test_clicking_and_dragging_on_the_map_decodes(page):
    page.open()
    before = page.src("#decoded")
    box = page.box("#map")
    page.page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.3)
    after_click = page.wait_src_change("#decoded", before)
    # a drag keeps decoding as the pointer moves
    page.page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    page.page.mouse.down()
    page.page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.7, steps=15)
    page.page.mouse.up()
    page.wait_src_change("#decoded", after_click)
    page.screenshot("explorer-map-clicked")
    page.check_clean()


def test_moving_a_slider_changes_the_image(page):
    page.open()
    before = page.src("#decoded")
    readout = page.page.text_content("#sliders output")
    page.page.locator("#slider-0").focus()
    for _ in range(40):
        page.page.keyboard.press("ArrowRight")
    page.wait_src_change("#decoded", before)
    assert page.page.text_content("#sliders output") != readout
    page.check_clean()


def test_hovering_a_point_shows_its_test_image(page):
    page.open()
    x, y, index = page.page.evaluate(
        "() => { const p = state.map.points[0]; const [x, y] = toPx(p.x, p.y); return [x, y, p.index]; }")
    box = page.box("#map")
    page.page.mouse.move(box["x"] + x, box["y"] + y)
    page.page.wait_for_selector("#hover:not(.hidden)")
    page.page.wait_for_function("() => document.getElementById('hover-img').src.startsWith('data:image/png')")
    assert page.page.text_content("#hover-text").startswith(f"#{index}")
    page.check_clean()


def test_drawing_on_the_pad_returns_a_reconstruction_and_a_marker(page):
    page.open()
    page.draw_stroke([(0.5, 0.15), (0.52, 0.5), (0.5, 0.85)])
    page.page.wait_for_selector("#recon-reconstruction")
    assert page.src("#recon-input").startswith("data:image/png")
    assert page.src("#recon-reconstruction").startswith("data:image/png")
    assert page.page.evaluate("() => state.marks.drawn !== null")
    # a second drawing makes a pair to interpolate between
    page.page.click("#clear-button")
    page.draw_stroke([(0.3, 0.3), (0.7, 0.3), (0.7, 0.7), (0.3, 0.7), (0.3, 0.3)])
    page.page.wait_for_function("() => !document.getElementById('pair-button').disabled")
    page.page.click("#pair-button")
    page.page.wait_for_function("() => document.querySelectorAll('#strip img').length === 10")
    page.screenshot("explorer-drawn")
    page.check_clean()


def test_shift_clicking_two_places_interpolates(page):
    page.open()
    box = page.box("#map")
    page.page.keyboard.down("Shift")
    page.page.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
    page.page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.8)
    page.page.keyboard.up("Shift")
    page.page.wait_for_function("() => document.querySelectorAll('#strip img').length === 10")
    assert "B:" in page.page.text_content("#interp-ends")
    page.page.fill("#steps", "4")
    page.page.dispatch_event("#steps", "change")
    page.page.wait_for_function("() => document.querySelectorAll('#strip img').length === 4")
    page.check_clean()


def test_random_sample_and_metrics_dialog(page):
    page.open()
    before = page.src("#decoded")
    page.page.click("#random-button")
    page.wait_src_change("#decoded", before)
    page.page.click("#metrics-button")
    page.page.wait_for_selector("#metrics-dialog[open] table")
    assert "epoch" in page.page.text_content("#metrics-dialog")
    page.check_clean()


def test_a_denoise_run_shows_its_output(page):
    page.open()
    page.page.select_option("#run-select", "1")
    page.page.wait_for_function("() => document.body.dataset.ready === '1' && state.run === '1'")
    assert page.page.is_hidden("#random-button")  # a plain AE has no prior
    assert "principal axes" in page.page.text_content("#projection")
    page.draw_stroke([(0.35, 0.2), (0.65, 0.2), (0.4, 0.8)])
    page.page.wait_for_selector("#recon-output")
    for sel in ("#recon-clean", "#recon-input", "#recon-output", "#recon-reconstruction"):
        assert page.src(sel).startswith("data:image/png"), sel
    page.screenshot("explorer-denoise")
    page.check_clean()



def test_a_conditional_run_has_a_class_selector(page):
    page.open("#run=2")
    assert page.page.is_visible("#class-picker") and page.page.is_visible("#random-button")
    assert page.page.locator("#class-select option").count() == 10
    before = page.src("#decoded")
    page.page.select_option("#class-select", "7")
    after = page.wait_src_change("#decoded", before)
    page.page.click("#random-button")
    page.wait_src_change("#decoded", after)
    page.draw_stroke([(0.5, 0.2), (0.5, 0.8)])
    page.page.wait_for_selector("#recon-reconstruction")
    page.check_clean()


def test_a_large_latent_moves_along_principal_axes(page):
    page.open("#run=3")
    assert "first 8 principal axes" in page.page.text_content("#slider-note")
    assert page.page.locator("#sliders input[type=range]").count() == 8
    assert "1568 numbers" in page.page.text_content("#z-readout")  # too large to show, and to send
    before = page.src("#decoded")
    page.page.locator("#slider-0").focus()
    for _ in range(60):
        page.page.keyboard.press("ArrowRight")
    after_slider = page.wait_src_change("#decoded", before)
    box = page.box("#map")
    page.page.mouse.click(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.4)
    page.wait_src_change("#decoded", after_slider)
    page.check_clean()
