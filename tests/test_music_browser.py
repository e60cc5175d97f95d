"""A melody run in the explorer, in Debian's Chromium (headless, through Playwright): the map
decodes a melody where it is clicked, and the page renders exactly its notes into an audio buffer.

The page renders every melody with an OfflineAudioContext before playing it, and keeps what it
rendered (``window.aekitMusic.lastRender``): the notes, and for each note the loudness of the
buffer while it sounds and the pitch measured from the buffer's zero crossings.  The tests hold
those against the notes the server decoded.  Nothing may be fetched from outside the server.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _melody_files import melody_run

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("data_cache")]
pytest.importorskip("music21")

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_cache, make_run):
    pytest.importorskip("uvicorn")
    from aekit.web import create_app
    from aekit.web.background import serve_in_thread

    runs = [melody_run(tmp_path_factory), make_run("vae")]  # a melody run first, then an image run
    with serve_in_thread(create_app(runs, allowed_hosts=["127.0.0.1", "localhost"])) as base:
        yield base


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    errors, foreign = [], []

    def route(r):
        if r.request.url.startswith((server, "data:", "blob:")):
            r.continue_()
        else:
            foreign.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    pg = context.new_page()
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    yield pg
    assert errors == [], f"console errors: {errors}"
    assert foreign == [], f"the page reached outside the server: {foreign}"
    context.close()


def open_run(pg, server: str, run_id: str) -> None:
    pg.goto("about:blank")  # a fresh page: going from one #run= to another is no page load
    pg.goto(f"{server}/#run={run_id}")
    pg.wait_for_selector("body[data-ready='1']")


def wait_render(pg, count: int) -> dict:
    pg.wait_for_selector(f"body[data-audio='{count}']")
    return pg.evaluate("() => window.aekitMusic.lastRender")


def check_buffer_holds(render: dict, notes: list[list[int]]) -> None:
    """Every note sounds in the rendered buffer, at its pitch, and the rests are silent."""
    assert render["notes"] == notes
    assert render["length"] > 0 and render["peak"] > 0.1
    assert render["silenceRms"] < 0.01
    for note in render["perNote"]:
        assert note["rms"] > 0.05, note
        if note["end"] - note["start"] >= 2:  # long enough for a dozen periods even at the bottom
            semitones = 12 * math.log2(note["measuredHz"] / note["expectedHz"])
            assert abs(semitones) < 0.5, note


def test_clicking_the_map_plays_the_decoded_melody(page, server):
    open_run(page, server, "0")
    assert page.is_visible("#music-panel") and not page.is_visible("#pad-panel")
    assert int(page.get_attribute("#map", "data-points")) > 0
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.6)
    render = wait_render(page, 1)
    # the notes the server decodes for the same point are the notes in the buffer
    decoded = page.evaluate("async () => (await postJSON('/api/decode', state.lastDecode)).notes")
    assert decoded, "the decoded melody is silent"
    check_buffer_holds(render, decoded)
    assert render["duration"] == pytest.approx(32 * render["secondsPerStep"] + 0.3, abs=0.01)
    assert page.get_attribute("#decoded", "src").startswith("data:image/png")  # its piano roll
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "explorer-melody.png"), full_page=True)


def test_an_interpolation_plays_every_step_in_turn(page, server):
    open_run(page, server, "0")
    page.uncheck("#play-on-click")
    box = page.locator("#map").bounding_box()
    page.keyboard.down("Shift")
    page.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
    page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.8)
    page.keyboard.up("Shift")
    page.wait_for_function("() => document.querySelectorAll('#strip img').length === 10")
    page.click("#play-interpolation")
    render = wait_render(page, 1)
    melodies = page.evaluate("""async () => (await postJSON('/api/interpolate', {a: state.ends[0].target,
        b: state.ends[1].target, steps: 10, spherical: false})).melodies""")
    gap = 32 + 8  # each melody, then half a bar of silence
    expected = [[s + i * gap, e + i * gap, p] for i, melody in enumerate(melodies) for s, e, p in melody]
    check_buffer_holds(render, expected)
    assert render["duration"] == pytest.approx((10 * gap - 8) * render["secondsPerStep"] + 0.3, abs=0.01)
    page.click("#play-decoded")  # the decoded melody of the page's start, on its own
    assert len(wait_render(page, 2)["notes"]) <= 32


def test_an_image_run_keeps_its_drawing_pad_and_no_music_panel(page, server):
    open_run(page, server, "1")
    assert page.is_visible("#pad-panel") and not page.is_visible("#music-panel")
    open_run(page, server, "0")
    assert page.is_visible("#music-panel")
