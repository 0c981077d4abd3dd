"""The drawing page in a real browser: headless Chromium (Debian's `chromium` package) driven by
Playwright draws real Quick, Draw! drawings with the mouse and sees the model's guesses appear;
undoes and clears; wins, times out and gives up games, drawing freely after each; sees the page say
it is thinking while a guess is on its way; fits a laptop, a projector and a phone both ways; and
opens the API docs without a request to another origin.

The layout test writes its screenshots to a temporary folder. The committed copies in docs/app/
come from the script mode below, with any run or export (the tiny test model when none is given):

    .venv/bin/python -m tests.serve.test_browser --layouts docs/app [RUN_OR_EXPORT]
    .venv/bin/python -m tests.serve.test_browser RUN --drawing "../shared/quickdraw/raw/cat.ndjson" \\
        --index 3 --out docs/app.png
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from .serve_helpers import CLASSES, LiveServer, raw_drawings

CHROMIUM = os.environ.get("DOODLE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
MARGIN = 0.1
"""Blank share of the canvas on each side of a replayed drawing."""
LAYOUTS = {"laptop-1024x600": (1024, 600), "projector-1920x1080": (1920, 1080),
           "phone-portrait-390x844": (390, 844), "phone-landscape-844x390": (844, 390)}
"""Screens the page must fit (name: viewport width, height)."""
STATUS_LOG = """
window.__statusLog = [];
window.__pending = 0;
const realFetch = window.fetch;
window.fetch = async (...args) => {
  const guess = String(args[0]).includes("/predict");
  if (guess) window.__pending++;
  try { return await realFetch(...args); } finally { if (guess) window.__pending--; }
};
document.addEventListener("DOMContentLoaded", () => {
  const s = document.getElementById("status");
  new MutationObserver(() => window.__statusLog.push([s.textContent, window.__pending]))
    .observe(s, {childList: true, characterData: true, subtree: true});
});
"""
"""Records every text the status line shows with the number of /predict requests in flight then."""


def launch(playwright):
    """Headless Chromium from the system package (Playwright's own download is not used)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


def canvas_points(strokes: list, side: float) -> list[list[tuple[float, float]]]:
    """A raw drawing's strokes fitted into a canvas of `side` pixels (aspect kept, centred), as
    page positions relative to the canvas' top-left corner."""
    xs = [x for s in strokes for x in s[0]]
    ys = [y for s in strokes for y in s[1]]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1)
    scale = side * (1 - 2 * MARGIN) / span
    ox = (side - (max(xs) - min(xs)) * scale) / 2
    oy = (side - (max(ys) - min(ys)) * scale) / 2
    return [[(ox + (x - min(xs)) * scale, oy + (y - min(ys)) * scale) for x, y in zip(s[0], s[1], strict=True)]
            for s in strokes]


def replay(page, strokes: list) -> None:
    """Draw `strokes` on the canvas with the mouse, one press-move-release per stroke."""
    box = page.locator("#canvas").bounding_box()
    for stroke in canvas_points(strokes, box["width"]):
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


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def open_page(browser, live_server):
    """open_page(query="", viewport=None): a fresh page of the app, the game's word CLASSES[0],
    page errors collected (checked to be none at the end of the test)."""
    pages, errors = [], []

    def make(query: str = "", viewport: tuple[int, int] = (1000, 720)):
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.on("pageerror", lambda err: errors.append(str(err)))
        fix_random(page, 0, len(CLASSES))
        page.add_init_script(STATUS_LOG)
        page.goto(live_server.url + "/" + query)
        from playwright.sync_api import expect

        expect(page.locator("#classes li")).to_have_count(len(CLASSES))
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def records(quickdraw) -> list[dict]:
    return raw_drawings(quickdraw, CLASSES)


def free_drawing_works(page, engine, records) -> None:
    """After a game: Clear empties the page, and a new drawing gets guesses in free mode."""
    from playwright.sync_api import expect

    page.click("#clear")
    expect(page.locator("#guesses li")).to_have_count(0)
    expect(page.locator("#result")).to_have_text("")
    expect(page.locator("#game")).to_be_hidden()
    expect(page.locator("#status")).to_have_text("Waiting for your first stroke.")
    eye = confident(engine, records, "eye")
    replay(page, eye["drawing"])
    expect(page.locator("#guesses li")).to_have_count(3)
    n = len(eye["drawing"])
    expect(page.locator("#status")).to_have_text(f"{n} stroke{'s' if n > 1 else ''}")
    assert guess_words(page)[0] == "eye"
    expect(page.locator("#result")).to_have_text("")  # free mode: no game result for it


def test_draw_and_see_guesses(open_page, engine, records):
    from playwright.sync_api import expect

    page = open_page()
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
    assert_never_waiting_while_guessing(page)


def assert_never_waiting_while_guessing(page) -> None:
    log = page.evaluate("window.__statusLog")
    assert log, "the status line never changed"
    wrong = [text for text, pending in log if pending and "Waiting" in text]
    assert not wrong, log


def test_the_page_says_it_is_thinking_while_a_guess_is_pending(open_page, engine, records):
    """With the answer held back, the page shows the thinking state (never "Waiting for your
    first stroke."), and leaves it when the answer arrives."""
    from playwright.sync_api import expect

    page = open_page()
    held = []

    def hold_the_first(route):
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/predict", hold_the_first)
    eye = confident(engine, records, "eye")
    replay(page, eye["drawing"][:1])
    expect(page.locator("body")).to_have_class(re.compile(r"\bthinking\b"))
    expect(page.locator("#status")).to_have_text("Thinking\u2026")
    page.wait_for_timeout(300)  # however long the server takes
    expect(page.locator("#status")).to_have_text("Thinking\u2026")
    assert len(held) == 1  # one request in flight at a time
    held[0].continue_()
    expect(page.locator("#guesses li")).to_have_count(3)
    expect(page.locator("#status")).to_have_text("1 stroke")
    expect(page.locator("body")).not_to_have_class(re.compile(r"\bthinking\b"))
    assert_never_waiting_while_guessing(page)


def test_a_won_game_then_free_drawing(open_page, engine, records, tmp_path):
    from playwright.sync_api import expect

    page = open_page()
    page.click("#play")
    expect(page.locator("#prompt")).to_have_text(f"Draw: {CLASSES[0]}")
    expect(page.locator("#timer")).to_have_text(re.compile(r"^\d+\.\d s$"))
    expect(page.locator("#classes li.target")).to_have_text(CLASSES[0])
    replay(page, confident(engine, records, CLASSES[0])["drawing"])
    expect(page.locator("#result")).to_contain_text(f"I know, it's {CLASSES[0]}!", timeout=15_000)
    assert page.locator("#guesses li.target").count() == 1
    frozen = page.locator("#timer").inner_text()
    page.wait_for_timeout(300)
    assert page.locator("#timer").inner_text() == frozen  # the clock stopped at the win
    expect(page.locator("#giveup")).to_be_hidden()
    expect(page.locator("#play")).to_have_text("Play again")
    shot = tmp_path / "app.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
    free_drawing_works(page, engine, records)


def test_a_timed_out_game_then_free_drawing(open_page, engine, records):
    from playwright.sync_api import expect

    page = open_page("?game_seconds=1")
    page.click("#play")
    expect(page.locator("#result")).to_have_text(f"Time's up: the model did not see {CLASSES[0]}.", timeout=10_000)
    expect(page.locator("#timer")).to_have_text("0.0 s")
    free_drawing_works(page, engine, records)


def test_a_lost_game_then_free_drawing(open_page, engine, records):
    """Drawing something else and giving up loses the game; the page is free again at once."""
    from playwright.sync_api import expect

    page = open_page()
    page.click("#play")
    replay(page, confident(engine, records, "eye")["drawing"])
    expect(page.locator("#guesses li")).to_have_count(3)
    expect(page.locator("#result")).to_have_text("")  # eye is not the word: no win
    page.click("#giveup")
    expect(page.locator("#result")).to_have_text(f"You gave up: the word was {CLASSES[0]}.")
    # drawing on goes on in free mode, over the last drawing
    replay(page, confident(engine, records, "television")["drawing"][:2])
    expect(page.locator("#status")).to_contain_text("stroke")
    free_drawing_works(page, engine, records)
    # and a new game starts cleanly after all that
    page.click("#play")
    expect(page.locator("#result")).to_have_text("")
    expect(page.locator("#guesses li")).to_have_count(0)


def check_layout(page, size: tuple[int, int]) -> None:
    """The canvas and every button in the viewport without scrolling; the class list shown."""
    from playwright.sync_api import expect

    width, height = size
    assert page.evaluate("[window.scrollX, window.scrollY]") == [0, 0]
    for selector in ("#canvas", "#undo", "#clear", "#play", "#giveup"):
        box = page.locator(selector).bounding_box()
        if selector == "#giveup" and box is None:
            continue  # shown during a game only
        assert box is not None, selector
        inside = box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width
        assert inside and box["y"] + box["height"] <= height, (selector, box, size)
    canvas = page.locator("#canvas").bounding_box()
    assert canvas["width"] >= 0.3 * min(width, height)  # the largest thing on the page
    expect(page.locator("#classes")).to_be_visible()
    expect(page.locator("#classes li").first).to_be_visible()


def draw_layout(page, engine, records, size: tuple[int, int]) -> None:
    """A game in progress with a drawing guessed, as a class would see it."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": size[0], "height": size[1]})
    page.click("#play")
    replay(page, confident(engine, records, "eye")["drawing"])
    expect(page.locator("#guesses li")).to_have_count(3)
    check_layout(page, size)


def write_screenshot(page, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    page.screenshot(path=str(tmp))
    os.replace(tmp, out)


def test_the_layout_fits_laptop_projector_and_phone(open_page, engine, records, tmp_path):
    for name, size in LAYOUTS.items():
        page = open_page(viewport=size)
        draw_layout(page, engine, records, size)
        font = float(page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)"))
        if name.startswith("projector"):
            assert font >= 24  # readable from the back of a room
            for selector in ("#guesses", "#classes"):  # the whole page at once, no scrolling
                box = page.locator(selector).bounding_box()
                assert box["y"] + box["height"] <= size[1], selector
        write_screenshot(page, tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000


def test_all_345_classes_keep_the_canvas_and_buttons_on_screen(browser, live_server, quickdraw):
    """A model of every Quick, Draw! category: its list scrolls inside the panel on wide screens
    and below the canvas on a phone held upright; the canvas and buttons stay where they were."""
    names = [line.strip() for line in (quickdraw / "meta" / "categories.txt").read_text().splitlines() if line.strip()]
    assert len(names) == 345
    for name, size in LAYOUTS.items():
        page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        try:
            page.route("**/classes", lambda route: route.fulfill(json={"classes": names}))
            page.goto(live_server.url + "/")
            page.wait_for_function("document.querySelectorAll('#classes li').length === 345")
            page.click("#play")
            check_layout(page, size)
            width, height = page.evaluate("[document.documentElement.scrollWidth, "
                                          "document.documentElement.scrollHeight]")
            assert width == size[0], name  # never sideways
            if "portrait" not in name:
                assert height == size[1], name  # the list scrolls in its panel, not the page
                assert page.evaluate("(e => e.scrollHeight > e.clientHeight)(document.getElementById('classes'))")
        finally:
            page.close()


def test_the_api_docs_work_offline(browser, live_server):
    """/docs (Swagger UI) loads every file from this server: with every other origin blocked, the
    docs still render the API, and no request left the server's origin."""
    from playwright.sync_api import expect

    page = browser.new_page()
    elsewhere: list[str] = []

    def guard(route):
        if route.request.url.startswith(live_server.url + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    try:
        page.goto(live_server.url + "/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("doodle")
        expect(page.locator(".opblock-summary-path").filter(has_text="/predict")).to_have_count(1)
        expect(page.get_by_text("Guess a drawing").first).to_be_visible()
    finally:
        page.close()
    assert not elsewhere, elsewhere


def test_the_favicon(browser, live_server):
    page = browser.new_page()
    try:
        page.goto(live_server.url + "/")
        assert page.locator('link[rel="icon"]').get_attribute("href") == "/favicon.ico"
        icon = page.request.get(live_server.url + "/favicon.ico")
        assert icon.ok and icon.headers["content-type"].startswith("image/svg+xml")
        assert icon.body().lstrip().startswith(b"<svg")
    finally:
        page.close()


# -- script mode: the committed screenshots ------------------------------------------------------

def serving(model: str | None):
    """(engine, LiveServer) for `model`, or for the tiny test model trained into a temporary folder."""
    from doodle.serve.app import create_app
    from doodle.serve.inference import load_engine
    from doodle.serve.settings import ServeSettings

    if model is None:
        from .serve_helpers import train_tiny

        model = str(train_tiny(SAMPLE, Path(tempfile.mkdtemp(prefix="doodle-tiny-"))))
    engine = load_engine(model)
    return engine, LiveServer(create_app(ServeSettings(model=model), engine))


SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "quickdraw"


def layout_screenshots(model: str | None, out_dir: Path) -> None:
    """docs/app/*.png: the page on every screen of `LAYOUTS`, a game in progress, a drawing guessed."""
    from playwright.sync_api import sync_playwright

    engine, server = serving(model)
    records = [r for r in raw_drawings(SAMPLE, sorted(p.stem for p in (SAMPLE / "raw").glob("*.ndjson")))
               if r["word"] in engine.classes]
    try:
        with server, sync_playwright() as p:
            browser = launch(p)
            for name, size in LAYOUTS.items():
                page = browser.new_page(viewport={"width": size[0], "height": size[1]}, device_scale_factor=1)
                fix_random(page, engine.classes.index("eye"), len(engine.classes))
                page.goto(server.url + "/")
                page.wait_for_function("document.querySelectorAll('#classes li').length > 0")
                draw_layout(page, engine, records, size)
                page.wait_for_timeout(300)
                write_screenshot(page, out_dir / f"{name}.png")
                print(f"wrote {out_dir / name}.png")
            browser.close()
    finally:
        engine.close()


def screenshot(model: str, drawing: Path, index: int, out: Path, game: bool = False) -> None:
    """Serve `model`, replay the drawing with the mouse and save the page once the guesses are those
    of the whole drawing; `game`: in a game whose word is the drawing's (it stops at the win)."""
    import orjson
    from playwright.sync_api import expect, sync_playwright

    record = [orjson.loads(line) for line in drawing.read_bytes().splitlines() if line.strip()][index]
    engine, server = serving(model)
    try:
        with server, sync_playwright() as p:
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
            write_screenshot(page, out)
            browser.close()
    finally:
        engine.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write screenshots of the app drawing a real drawing.")
    parser.add_argument("model", nargs="?", help="run folder, checkpoint or export folder (--layouts: "
                        "default the tiny test model)")
    parser.add_argument("--layouts", type=Path, metavar="DIR",
                        help="write the page on a laptop, a projector and a phone (both ways) into DIR")
    parser.add_argument("--drawing", type=Path, help="a raw ndjson file")
    parser.add_argument("--index", type=int, default=0, help="which drawing of the file (default 0)")
    parser.add_argument("--out", type=Path, default=Path("docs/app.png"))
    parser.add_argument("--game", action="store_true", help="draw in a game whose word is the drawing's")
    args = parser.parse_args()
    if args.layouts:
        layout_screenshots(args.model, args.layouts)
    elif args.model and args.drawing:
        screenshot(args.model, args.drawing, args.index, args.out, args.game)
    else:
        parser.error("give --layouts DIR, or RUN_OR_EXPORT --drawing FILE")
