"""The drawing page in a real browser: headless Chromium (Debian's `chromium` package) driven by
Playwright draws real Quick, Draw! drawings with the mouse and sees the model's guesses appear,
then undoes, clears and wins a game.

Also a script that writes the README screenshot from any run or export:

    .venv/bin/python -m tests.serve.test_browser /work/runs/cpu-q15-v3 \\
        --drawing "../shared/quickdraw/raw/cat.ndjson" --index 3 --out docs/app.png
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

from .serve_helpers import CLASSES, LiveServer, raw_drawings

CHROMIUM = os.environ.get("DOODLE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CANVAS = 480
MARGIN = 48


def launch(playwright):
    """Headless Chromium from the system package (Playwright's own download is not used)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


def canvas_points(strokes: list) -> list[list[tuple[float, float]]]:
    """A raw drawing's strokes fitted into the canvas (aspect kept, centred), as page positions
    relative to the canvas' top-left corner."""
    xs = [x for s in strokes for x in s[0]]
    ys = [y for s in strokes for y in s[1]]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1)
    scale = (CANVAS - 2 * MARGIN) / span
    ox = (CANVAS - (max(xs) - min(xs)) * scale) / 2
    oy = (CANVAS - (max(ys) - min(ys)) * scale) / 2
    return [[(ox + (x - min(xs)) * scale, oy + (y - min(ys)) * scale) for x, y in zip(s[0], s[1], strict=True)]
            for s in strokes]


def replay(page, strokes: list) -> None:
    """Draw `strokes` on the canvas with the mouse, one press-move-release per stroke."""
    box = page.locator("#canvas").bounding_box()
    for stroke in canvas_points(strokes):
        x, y = stroke[0]
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.up()


def guess_words(page) -> list[str]:
    return page.locator("#guesses li .word").all_inner_texts()


def fix_random(page, index: int, n: int) -> None:
    """Make the game pick class `index` of `n` (Math.random fixed before the page's script runs)."""
    page.add_init_script(f"Math.random = () => {(index + 0.5) / n};")


def confident(engine, records: list[dict], word: str) -> dict:
    """The record of `word` the model is surest about (so a replay with the mouse is guessed too)."""
    from doodle.data.drawing import Limits
    from doodle.serve.inference import to_drawing

    def score(record):
        guesses = engine.guesses(to_drawing(record["drawing"], Limits()), 1)
        return guesses[0].probability if guesses[0].word == word else 0.0

    return max((r for r in records if r["word"] == word), key=score)


def test_draw_and_see_guesses(live_server, engine, quickdraw, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    records = raw_drawings(quickdraw, CLASSES)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 720})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            fix_random(page, 0, len(CLASSES))
            page.goto(live_server.url + "/")
            expect(page.locator("#classes")).to_contain_text("television")
            expect(page.locator("#guesses li")).to_have_count(0)

            # draw a real drawing: three guesses appear, all classes of the model
            eye = confident(engine, records, "eye")
            replay(page, eye["drawing"])
            expect(page.locator("#guesses li")).to_have_count(3)
            expect(page.locator("#status")).to_contain_text(f"{len(eye['drawing'])} stroke")
            words = guess_words(page)
            assert set(words) <= set(CLASSES) and len(set(words)) == 3
            assert words[0] == "eye"
            assert re.fullmatch(r"\d+%", page.locator("#guesses li .pct").first.inner_text())

            # undo removes the last stroke and the guesses follow; clear empties everything
            page.click("#undo")
            expect(page.locator("#status")).to_contain_text(f"{len(eye['drawing']) - 1} stroke")
            expect(page.locator("#guesses li")).to_have_count(3)
            page.click("#clear")
            expect(page.locator("#guesses li")).to_have_count(0)

            # the game: the word is CLASSES[0]; drawing one the model knows wins before the timer ends
            page.click("#play")
            expect(page.locator("#prompt")).to_have_text(f"Draw: {CLASSES[0]}")
            expect(page.locator("#timer")).to_have_text(re.compile(r"^\d+\.\d s$"))
            replay(page, confident(engine, records, CLASSES[0])["drawing"])
            expect(page.locator("#result")).to_contain_text(f"I know, it's {CLASSES[0]}!", timeout=15_000)
            assert page.locator("#guesses li.target").count() == 1
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot))
            assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
            assert not errors, errors
        finally:
            browser.close()


def screenshot(model: str, drawing: Path, index: int, out: Path, game: bool = False) -> None:
    """Serve `model`, replay the drawing with the mouse and save the page once the guesses are those
    of the whole drawing; `game`: in a game whose word is the drawing's (it stops at the win)."""
    import orjson
    from playwright.sync_api import expect, sync_playwright

    from doodle.serve.app import create_app
    from doodle.serve.inference import load_engine
    from doodle.serve.settings import ServeSettings

    record = [orjson.loads(line) for line in drawing.read_bytes().splitlines() if line.strip()][index]
    engine = load_engine(model)
    try:
        with LiveServer(create_app(ServeSettings(model=model), engine)) as server, sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 980, "height": 680}, device_scale_factor=1)
            if record["word"] in engine.classes:
                fix_random(page, engine.classes.index(record["word"]), len(engine.classes))
            page.goto(server.url + "/")
            expect(page.locator("#classes")).not_to_be_empty()
            if game:
                page.click("#play")
            replay(page, record["drawing"])
            expect(page.locator("#guesses li")).to_have_count(3)
            if not game:
                n = len(record["drawing"])
                expect(page.locator("#status")).to_have_text(f"{n} stroke{'s' if n > 1 else ''}")
            page.wait_for_timeout(500)
            print("guesses:", guess_words(page), "|", page.locator("#result").inner_text())
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp.png")
            page.screenshot(path=str(tmp))
            os.replace(tmp, out)
            browser.close()
    finally:
        engine.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write a screenshot of the app drawing a real drawing.")
    parser.add_argument("model", help="run folder, checkpoint or export folder")
    parser.add_argument("--drawing", type=Path, required=True, help="a raw ndjson file")
    parser.add_argument("--index", type=int, default=0, help="which drawing of the file (default 0)")
    parser.add_argument("--out", type=Path, default=Path("docs/app.png"))
    parser.add_argument("--game", action="store_true", help="draw in a game whose word is the drawing's")
    args = parser.parse_args()
    screenshot(args.model, args.drawing, args.index, args.out, args.game)
