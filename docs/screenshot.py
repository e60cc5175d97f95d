"""Take the README's screenshot of `aekit serve`: a run's explorer page after a few actions.

Serves RUN_DIR on a free loopback port, opens the page in Debian's Chromium (headless, through
Playwright), shift-clicks two dots of different classes to interpolate between them, draws a
digit on the pad, and saves the whole page.

    python docs/screenshot.py RUN_DIR [-o docs/images/serve.png] [--chromium /usr/bin/chromium]

The README's picture: `aekit train --model vae --latent-dim 2 --dataset mnist --data-dir
../shared/data --epochs 30 --batch-size 128 --out runs/vae2d`, then this script on runs/vae2d.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

from aekit.web import create_app
from aekit.web.background import serve_in_thread

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
# A "3" in pad coordinates (fractions of its width and height).
THREE = [(0.3, 0.22), (0.62, 0.18), (0.68, 0.32), (0.45, 0.5), (0.68, 0.66), (0.62, 0.82), (0.3, 0.8)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("-o", "--out", type=Path, default=Path("docs/images/serve.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    app = create_app([args.run_dir], allowed_hosts=["127.0.0.1", "localhost"])
    with serve_in_thread(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        # Two dots far apart with different classes: the interpolation crosses the map.
        a, b = page.evaluate("""() => {
            const pts = state.map.points;
            let best = [0, 0], far = -1;
            for (let i = 0; i < pts.length; i += 7) for (let j = 0; j < pts.length; j += 7) {
                const d = (pts[i].x - pts[j].x) ** 2 + (pts[i].y - pts[j].y) ** 2;
                if (pts[i].label !== pts[j].label && d > far) { far = d; best = [i, j]; }
            }
            return best.map(k => toPx(pts[k].x, pts[k].y));
        }""")
        box = page.locator("#map").bounding_box()
        page.keyboard.down("Shift")
        page.mouse.click(box["x"] + a[0], box["y"] + a[1])
        page.mouse.click(box["x"] + b[0], box["y"] + b[1])
        page.keyboard.up("Shift")
        page.wait_for_function("() => document.querySelectorAll('#strip img').length === 10")
        pad = page.locator("#pad").bounding_box()
        xy = [(pad["x"] + u * pad["width"], pad["y"] + v * pad["height"]) for u, v in THREE]
        page.mouse.move(*xy[0])
        page.mouse.down()
        for x, y in xy[1:]:
            page.mouse.move(x, y, steps=4)
        page.mouse.up()
        page.wait_for_selector("#recon-reconstruction")
        page.wait_for_timeout(300)  # the decoded image follows the drawn point
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
