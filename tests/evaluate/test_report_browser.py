"""The evaluation report in a real browser: headless Chromium (Debian's `chromium` package) driven by
Playwright opens report.html from disk and sees the headline, the metric explanations, the drawn
examples and the per-class chart, with no request leaving the file.

Also the script that writes the README screenshot (a small CNN trained for a few seconds on the
committed sample, evaluated on the sample's raw drawings; or any run and data given):

    .venv/bin/python -m tests.evaluate.test_report_browser --out docs/report.png
    .venv/bin/python -m tests.evaluate.test_report_browser --run runs/a --data store/val --out docs/report.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from .report_helpers import points_run, real_sources, train_small

CHROMIUM = os.environ.get("DOODLE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 1240, "height": 1500}


def launch(playwright):
    """Headless Chromium from the system package (Playwright's own download is not used)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


def open_report(browser, html: Path, requests: list[str]):
    """A page showing `html`, every request it makes recorded in `requests` (and any other than the
    file itself or inline data refused, so a stray reference cannot reach the network)."""
    page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
    page.on("request", lambda request: requests.append(request.url))
    own = html.resolve().as_uri()
    page.route("**/*", lambda route: route.continue_() if route.request.url in (own,) else route.abort())
    page.goto(own)
    return page


def test_the_report_reads_at_a_glance_in_chromium(tmp_path, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    from doodle.evaluate.report import evaluate_run

    run, data = points_run(tmp_path, monkeypatch)
    report = evaluate_run(run, [data], tmp_path / "rep", batch_size=4, progress=False)
    requests: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = open_report(browser, report.files["html"], requests)
            expect(page.locator("#headline")).to_be_visible()
            expect(page.locator("#headline")).to_contain_text("The right word is the first guess for")
            expect(page.locator(".metric .explain")).to_have_count(6)
            for explain in page.locator(".metric .explain").all():
                expect(explain).to_be_visible()
            assert "fair share" in page.locator(".metric", has_text="proxy score").inner_text()
            thumbs = page.locator("#examples .example svg.drawing")
            assert thumbs.count() == len(report.worst) + len(report.best) > 0
            expect(thumbs.first).to_be_visible()
            assert thumbs.first.bounding_box()["width"] > 60  # a picture, not a speck
            assert page.locator("#examples .example polyline").count() > thumbs.count()  # strokes drawn
            bars = page.locator("#per-class-chart .bar-row")
            expect(bars).to_have_count(3)
            expect(bars.first).to_be_visible()
            assert page.locator("#per-class-chart .fill1").last.bounding_box()["width"] > 0
            for img in page.locator("img").all():  # the figures decoded (naturalWidth 0: a broken image)
                assert img.evaluate("i => i.complete && i.naturalWidth > 0")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
        finally:
            browser.close()
    own = report.files["html"].resolve().as_uri()
    assert requests and all(url == own or url.startswith("data:") for url in requests), requests


def screenshot(run: Path | None, data: list[Path], out: Path) -> None:
    """Evaluate `run` on `data` (default: a small CNN trained now on the sample, on its raw drawings)
    and save the report as seen in Chromium, from the headline down to the per-class chart."""
    from playwright.sync_api import sync_playwright

    from doodle.evaluate.report import evaluate_run

    out, data, home = out.resolve(), [d.resolve() for d in data], Path.cwd()  # small_run changes directory
    with tempfile.TemporaryDirectory() as tmp:
        try:
            report = evaluate_run(run or small_run(Path(tmp)), data or real_sources(), Path(tmp) / "report",
                                  progress=False)
        finally:
            os.chdir(home)
        print(f"MAP@3 {report.metrics['map3']:.4f} on {report.metrics['n']} drawings")
        with sync_playwright() as p:
            browser = launch(p)
            page = open_report(browser, report.files["html"], [])
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp_png = out.with_name(f".{out.name}.tmp.png")
            chart = page.locator("#per-class-chart").bounding_box()  # down to the chart: the first look
            height = chart["y"] + chart["height"] + 24
            page.screenshot(path=str(tmp_png), full_page=True,
                            clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
            to_palette(tmp_png)
            os.replace(tmp_png, out)
            browser.close()
    print(f"wrote {out}")


def to_palette(png: Path, colors: int = 128) -> None:
    """Rewrite a screenshot with a palette of `colors`: a third of the size, no visible change (the page
    is flat colours and grey text)."""
    from PIL import Image

    with Image.open(png) as image:
        paletted = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    paletted.save(png, optimize=True)


def small_run(tmp: Path) -> Path:
    """A small CNN trained now into `tmp`, named by a relative path (runs/small-cnn: the report's title
    shows it, so the picture does not show a temporary folder); the working directory becomes `tmp`."""
    train_small(tmp / "runs" / "small-cnn")
    os.chdir(tmp)
    return Path("runs/small-cnn")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write a screenshot of the evaluation report.")
    parser.add_argument("--run", type=Path, help="run folder or checkpoint (default: train a small one now)")
    parser.add_argument("--data", type=Path, nargs="+", default=[], help="labelled drawings (default: the sample)")
    parser.add_argument("--out", type=Path, default=Path("docs/report.png"))
    args = parser.parse_args()
    screenshot(args.run, args.data, args.out)
