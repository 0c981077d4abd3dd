"""The evaluation report as one self-contained HTML page, written for people rather than for Kaggle.

From the top: a headline in plain words, each metric with one line saying what it means, the worst
mistakes and the surest right answers as small drawings (inline SVG) with the top-3 guesses, the
per-class accuracy as sorted bars (the 20 hardest and 20 easiest words when there are many), the
figures (base64 PNG) and the full per-class table. CSS is inline and nothing is fetched from
elsewhere, so the file opens anywhere, offline, as it is.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from doodle.evaluate.examples import Example

CHART_ALL_UP_TO = 40
"""Up to this many classes the chart shows every class; above, the hardest and easiest `CHART_EACH`."""
CHART_EACH = 20
THUMB_SIZE = 132


@dataclass
class Page:
    """What the page shows besides the numbers (everything optional but the title)."""

    title: str
    classes: Sequence[str] = ()
    worst: Sequence[Example] = ()
    best: Sequence[Example] = ()
    drawings: bool = False
    """True when the examples carry their strokes (a model on drawings), False for a predictions file."""
    meta: dict = field(default_factory=dict)
    missing: str = ""
    """Why the drawings are not shown (default `NO_DRAWINGS_IN_FILE`), when `drawings` is False."""


NO_DRAWINGS_IN_FILE = (
    "These scores come from a saved predictions file, which does not hold the drawings, so they cannot be "
    "drawn here: the key ids below let you look them up, or evaluate the model on the drawings "
    "(doodle evaluate RUN --data STORE/val) to see them.")
NO_DRAWINGS_MATCHED = (
    "The drawings read could not be matched to the model's predictions, so they are not drawn here: the key "
    "ids below let you look them up.")


def esc(value: Any) -> str:
    return html.escape(str(value))


def percent(x: float) -> str:
    """`x` (a share, 0..1) as a whole percentage, with one decimal where rounding would say 0 or 100
    of a share that is neither (a model right 99.7 % of the time is not right "100 %" of the time)."""
    if x is None or np.isnan(x):
        return "–"
    p = 100 * x
    if 0 < x < 1 and round(p) in (0, 100):
        p = math.floor(p * 10) / 10 if p > 50 else math.ceil(p * 10) / 10
        return f"{p:.1f} %"
    return f"{p:.0f} %"


def headline(metrics: dict) -> str:
    """The report's first sentence, e.g. "The right word is the first guess for 93 % of 1,083
    drawings and in the top three for 98 %."."""
    n = metrics["n"]
    drawings = "drawing" if n == 1 else "drawings"
    return (f"The right word is the first guess for {percent(metrics['acc1'])} of {n:,} {drawings} "
            f"and in the top three for {percent(metrics['acc3'])}.")


def subheadline(metrics: dict) -> str:
    """The competition's score in one sentence, under the headline."""
    return (f"MAP@3, the Kaggle competition's score, is {metrics['map3']:.3f} out of 1 "
            f"over {metrics['classes']:,} words.")


def metric_cards(metrics: dict) -> list[tuple[str, str, str]]:
    """(name, value, one-line explanation) of each headline number, in the page's order."""
    m, fair = metrics, metrics["n"] / metrics["classes"]
    typical = percent(math.exp(-m["log_loss"]))
    return [
        ("MAP@3", f"{m['map3']:.3f}", "The competition's score: 1 point when the first of three guesses is right, "
         "1/2 when the second is, 1/3 when the third is, else 0; averaged over the drawings (1 = perfect)."),
        ("acc@1", percent(m["acc1"]), "How often the first guess is the right word."),
        ("acc@3", percent(m["acc3"]), "How often the right word is among the three guesses."),
        ("log-loss", f"{m['log_loss']:.3f}", "How surprised the model is by the right word (0 = always sure and "
         f"right; lower is better): on a typical drawing it gives the right word {typical}."),
        ("calibration error", f"{100 * m['ece']:.1f} pts", "Whether its confidence can be trusted: the average "
         "gap between how sure the first guess is and how often it is right (0 = when it says 80 %, it is "
         "right 80 % of the time)."),
        ("proxy score", f"{m['proxy_score']:,.0f}", "How unevenly the first guesses spread over the words: the "
         f"sum of each word's distance from its fair share of {fair:,.1f} first guesses (0 = even). Kaggle's "
         "test set had as many drawings of every word, so lower went with a better leaderboard score."),
    ]


# -- drawings ----------------------------------------------------------------------------------
def svg_drawing(strokes: Sequence[np.ndarray], size: int = THUMB_SIZE, label: str = "drawing") -> str:
    """Inline SVG of strokes (x, y; y down as in Quick, Draw!), fitted into a square with the aspect kept."""
    points = np.concatenate([s[:, :2] for s in strokes]) if strokes else np.zeros((1, 2))
    lo, span = points.min(0), max(float(np.ptp(points, 0).max()), 1e-9)
    scale = 88 / span
    offset = (100 - np.ptp(points, 0) * scale) / 2
    lines = "".join(f'<polyline points="{_points((s[:, :2] - lo) * scale + offset)}"/>' for s in strokes)
    return (f'<svg class="drawing" viewBox="0 0 100 100" width="{size}" height="{size}" role="img" '
            f'aria-label="{esc(label)}"><g fill="none" stroke="#1f2937" stroke-width="2.2" '
            f'stroke-linecap="round" stroke-linejoin="round">{lines}</g></svg>')


def _points(xy: np.ndarray) -> str:
    if len(xy) == 1:  # a dot: a zero-length line, which round caps draw
        xy = np.repeat(xy, 2, axis=0)
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)


def example_card(e: Example, classes: Sequence[str]) -> str:
    """One drawing: the picture (when available), its true word, the top-3 guesses with probabilities."""
    truth = classes[e.label]
    picture = svg_drawing(e.strokes, label=f"a drawing of {truth}") if e.strokes is not None else ""
    guesses = "".join(_guess(classes[c], p, c == e.label) for c, p in e.guesses)
    key = f'<div class="key">key_id {e.key_id}</div>' if e.key_id is not None else ""
    return (f'<figure class="example">{picture}<figcaption><div class="truth">drawn: <b>{esc(truth)}</b></div>'
            f'<ol class="guesses">{guesses}</ol>{key}</figcaption></figure>')


def _guess(word: str, p: float, right: bool) -> str:
    width = 0.0 if np.isnan(p) else 100 * min(max(p, 0.0), 1.0)
    return (f'<li class="{"right" if right else "wrong"}"><span class="word">{esc(word)}</span>'
            f'<span class="p">{percent(p)}</span><span class="meter"><span style="width:{width:.1f}%">'
            f'</span></span></li>')


def examples_section(page: Page) -> str:
    """The worst mistakes and the surest right answers, or why the drawings cannot be shown."""
    why = page.missing or NO_DRAWINGS_IN_FILE
    note = "" if page.drawings else f'<p class="note" id="no-drawings">{esc(why)}</p>'
    worst = _grid(page.worst, page.classes, "No mistakes: every first guess is right.")
    best = _grid(page.best, page.classes, "No right first guess.")
    return (f'<section id="examples"><h2>Worst mistakes</h2>{note}<p class="lead">The drawings where the model '
            f"was surest of a wrong word (green: the right word, when it is among the guesses).</p>{worst}"
            f'<h2>Surest right answers</h2><p class="lead">The drawings the model recognised with the most '
            f"confidence.</p>{best}</section>")


def _grid(examples: Sequence[Example], classes: Sequence[str], empty: str) -> str:
    if not examples:
        return f'<p class="note">{esc(empty)}</p>'
    return f'<div class="examples">{"".join(example_card(e, classes) for e in examples)}</div>'


# -- per-class chart ---------------------------------------------------------------------------
def class_chart(per_class: Sequence[dict]) -> str:
    """Horizontal bars of acc@1 (dark) and acc@3 (light) per class, hardest first; above
    `CHART_ALL_UP_TO` classes only the `CHART_EACH` hardest and easiest, the table having them all."""
    rows = sorted((r for r in per_class if r["n"]), key=lambda r: (r["acc1"], r["acc3"], r["class"]))
    if len(rows) <= CHART_ALL_UP_TO:
        return _bars(rows, f"All {len(rows)} words, hardest first")
    return (_bars(rows[:CHART_EACH], f"The {CHART_EACH} hardest words")
            + _bars(rows[-CHART_EACH:], f"The {CHART_EACH} easiest words"))


def _bars(rows: Sequence[dict], caption: str) -> str:
    bars = "".join(_bar(r) for r in rows)
    return f'<div class="chart"><h3>{esc(caption)}</h3>{bars}</div>'


def _bar(row: dict) -> str:
    a1, a3 = 100 * row["acc1"], 100 * row["acc3"]
    return (f'<div class="bar-row" title="{esc(row["class"])}: first guess right {percent(row["acc1"])}, '
            f'in the top three {percent(row["acc3"])}, of {row["n"]:,} drawings">'
            f'<span class="name">{esc(row["class"])}</span><span class="track">'
            f'<span class="fill3" style="width:{a3:.1f}%"></span><span class="fill1" style="width:{a1:.1f}%">'
            f'</span></span><span class="value">{percent(row["acc1"])}</span>'
            f'<span class="count">{row["n"]:,}</span></div>')


# -- the page ----------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if np.isnan(v) else f"{v:.4f}"
    return esc(v)


def _img(images: dict[str, bytes], name: str, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(images[name]).decode()}">'


def _cards(metrics: dict) -> str:
    return "".join(f'<div class="metric"><div class="value">{esc(v)}</div><div class="name">{esc(n)}</div>'
                   f'<p class="explain">{esc(x)}</p></div>' for n, v, x in metric_cards(metrics))


def _provenance(metrics: dict, meta: dict) -> str:
    parts = [f"{metrics['n']:,} labelled drawings", f"{metrics['classes']:,} words"]
    if meta.get("model"):
        parts.append(f"model {meta['model']}")
    if meta.get("tta"):
        parts.append(f"test-time views {', '.join(map(str, meta['tta']))} ({meta.get('tta_mean', 'prob')} mean)")
    if metrics.get("unlabelled_skipped"):
        parts.append(f"{metrics['unlabelled_skipped']:,} drawings without a known word skipped")
    return " · ".join(esc(p) for p in parts)


def _table(per_class: Sequence[dict]) -> str:
    cols = list(per_class[0]) if per_class else []
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    rows = "".join("<tr>" + "".join(f"<td>{_fmt(r[c])}</td>" for c in cols) + "</tr>" for r in per_class)
    return f'<table class="per-class"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _pairs_table(pairs: Sequence[tuple[str, str, int]]) -> str:
    rows = "".join(f"<tr><td>{esc(t)}</td><td>{esc(p)}</td><td>{n:,}</td></tr>" for t, p, n in pairs)
    return f"<table><thead><tr><th>true</th><th>top-1 guess</th><th>drawings</th></tr></thead>{rows}</table>"


def _numbers(metrics: dict) -> str:
    return "".join(f"<tr><th>{esc(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics.items())


def render_html(report_metrics: dict, per_class: list[dict], pairs: list[tuple[str, str, int]],
                images: dict[str, bytes], page: Page | str) -> str:
    """The self-contained HTML report (`page`: a `Page`, or only its title)."""
    page = Page(page) if isinstance(page, str) else page
    m = report_metrics
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(page.title)}</title><style>{CSS}</style></head>
<body><main>
<header><h1>{esc(page.title)}</h1><p class="provenance">{_provenance(m, page.meta)}</p></header>
<section id="summary"><p id="headline">{esc(headline(m))}</p><p class="sub">{esc(subheadline(m))}</p>
<div class="metrics">{_cards(m)}</div></section>
{examples_section(page)}
<section id="per-class-chart"><h2>Accuracy per word</h2><p class="lead">Dark: the first guess is right;
light: the right word is in the top three. The number after the bar is the drawings of that word.</p>
{class_chart(per_class)}</section>
<section id="pairs"><h2>Most-confused pairs</h2><p class="lead">The mistakes made most often: the true word,
then the word guessed first instead.</p>{_img(images, 'confused_pairs', 'most-confused pairs')}{_pairs_table(pairs)}
</section>
<section id="confusion"><h2>Confusion matrix</h2><p class="lead">Row: the true word; column: the first guess;
a dark diagonal means mostly right.</p>{_img(images, 'confusion', 'confusion matrix')}</section>
<section id="reliability"><h2>Reliability</h2><p class="lead">Bars on the dashed line mean the model is as sure
as it is right; below it, over-confident.</p>{_img(images, 'reliability', 'reliability diagram')}</section>
<section id="per-class"><h2>Per word, every number</h2>{_table(per_class)}</section>
<section id="all-numbers"><h2>All headline numbers</h2><table>{_numbers(m)}</table></section>
</main></body></html>
"""


CSS = """
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--ok:#15803d;--bad:#b91c1c;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:20px;margin:0;font-weight:600;color:var(--muted)}
h2{font-size:20px;margin:36px 0 6px}h3{font-size:15px;margin:14px 0 8px;color:var(--muted)}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin-top:18px}
header{padding:4px 2px}.provenance{color:var(--muted);margin:4px 0 0;font-size:13px}
#headline{font-size:28px;line-height:1.25;font-weight:650;margin:0 0 6px}
.sub{color:var(--muted);margin:0 0 16px;font-size:16px}
.lead,.note{color:var(--muted);margin:0 0 12px}.note{background:#fff7ed;border-radius:6px;padding:8px 12px}
section h2:first-child{margin-top:0}
.metrics{display:grid;grid-template-columns:repeat(3,1fr);gap:12px}
@media (max-width:760px){.metrics{grid-template-columns:1fr}}
.metric{border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.metric .value{font-size:24px;font-weight:650;color:var(--accent);display:inline-block;margin-right:8px}
.metric .name{font-weight:600;margin-bottom:4px;display:inline-block}
.metric .explain{margin:0;font-size:13px;color:#374151}
.examples{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:12px}
.example{margin:0;border:1px solid var(--line);border-radius:8px;padding:8px;background:#fff}
.example svg{display:block;margin:0 auto 4px;background:#fafafa;border-radius:6px}
.truth{font-size:14px;margin-bottom:2px}.key{font-size:11px;color:var(--muted);margin-top:2px}
.guesses{margin:0;padding:0;list-style:none;font-size:13px}
.guesses li{display:grid;grid-template-columns:1fr auto;column-gap:6px}
.guesses .word{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.guesses .meter{grid-column:1/3;height:4px;background:var(--line);border-radius:2px;margin:1px 0 3px}
.guesses .meter span{display:block;height:100%;border-radius:2px}
.guesses .wrong .meter span{background:var(--bad)}.guesses .right .meter span{background:var(--ok)}
.guesses .right .word{color:var(--ok);font-weight:600}
.chart{max-width:820px}
.bar-row{display:grid;grid-template-columns:minmax(90px,190px) 1fr 52px 52px;gap:8px;align-items:center;
font-size:13px;margin:2px 0}
.bar-row .name{text-align:right;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.track{position:relative;height:14px;background:#f1f5f9;border-radius:3px}
.track span{position:absolute;left:0;top:0;bottom:0;border-radius:3px}
.fill3{background:#bfdbfe}.fill1{background:var(--accent)}
.bar-row .value{font-weight:600}.bar-row .count{color:var(--muted);text-align:right}
img{max-width:100%;height:auto;display:block;margin:8px 0}
table{border-collapse:collapse;font-size:13px;margin-top:8px}
td,th{border-bottom:1px solid var(--line);padding:3px 10px;text-align:right}th{background:#f9fafb}
#per-class{overflow-x:auto}
code{background:#f1f5f9;padding:0 4px;border-radius:4px}
"""
