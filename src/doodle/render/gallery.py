"""A labelled PNG of drawings in one encoding: every channel visible.

Each drawing gets a panel: for a 3-channel encoding its RGB composite followed by one grey tile
per channel; for other channel counts one grey tile per channel. Panels are laid out `cols` to a
row, each titled with the drawing's word; the figure title names the encoding and the tiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from doodle.data.drawing import Drawing
from doodle.render.registry import get_encoding
from doodle.render.renderer import render

GAP = 4
"""Pixels between tiles of one panel."""
PANEL_GAP = 16
"""Pixels between panels."""
LABEL_H = 22
"""Pixels above each panel row for the word labels."""
HEADER_H = 48
"""Pixels at the top for the figure title."""


def gallery_tiles(images: np.ndarray) -> list[list[np.ndarray]]:
    """For each rendered image [C, H, W], its tiles as RGB uint8 [H, W, 3] arrays."""
    out = []
    for img in images:
        tiles = []
        if img.shape[0] == 3:
            tiles.append(np.ascontiguousarray(img.transpose(1, 2, 0)))
        tiles.extend(np.repeat(ch[:, :, None], 3, axis=2) for ch in img)
        out.append(tiles)
    return out


def save_gallery(
    drawings: Sequence[Drawing],
    path: str | Path,
    encoding: str = "grey",
    size: int = 128,
    cols: int = 4,
    **render_options,
) -> Path:
    """Render `drawings` in `encoding` and write the labelled gallery PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    enc = get_encoding(encoding)
    drawings = list(drawings)
    if not drawings:
        raise ValueError("no drawings to draw")
    images = render(drawings, encoding, size, **render_options)
    tiles = gallery_tiles(images)
    per_panel = len(tiles[0])
    cols = max(1, min(cols, len(drawings)))
    rows = math.ceil(len(drawings) / cols)
    panel_w = per_panel * size + (per_panel - 1) * GAP
    width = cols * panel_w + (cols + 1) * PANEL_GAP
    height = HEADER_H + rows * (LABEL_H + size + PANEL_GAP)
    canvas = np.full((height, width, 3), 255, np.uint8)
    labels = []
    for k, (d, panel) in enumerate(zip(drawings, tiles, strict=True)):
        r, c = divmod(k, cols)
        x0 = PANEL_GAP + c * (panel_w + PANEL_GAP)
        y0 = HEADER_H + r * (LABEL_H + size + PANEL_GAP) + LABEL_H
        for t, tile in enumerate(panel):
            xs = x0 + t * (size + GAP)
            canvas[y0 : y0 + size, xs : xs + size] = tile
            canvas[y0 - 1 : y0 + size + 1, xs - 1] = 160  # thin frame so black tiles show their edges
            canvas[y0 - 1 : y0 + size + 1, xs + size] = 160
            canvas[y0 - 1, xs - 1 : xs + size + 1] = 160
            canvas[y0 + size, xs - 1 : xs + size + 1] = 160
        timed = "raw, timed" if d.has_time else "simplified"
        labels.append((x0, y0 - 5, f"{d.word or '?'}  ({len(d.strokes)} strokes, {timed})"))

    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    tile_names = (["RGB"] if enc.channels == 3 else []) + list(enc.channel_names)
    title = f"{enc.name} @ {size}px: tiles = " + " | ".join(tile_names)
    ax.text(PANEL_GAP, 18, title, fontsize=12, weight="bold", va="center")
    note = enc.doc.replace("\n", " ")
    ax.text(PANEL_GAP, 38, note if len(note) < 190 else note[:187] + "...", fontsize=8, va="center")
    for x, y, text in labels:
        ax.text(x, y, text, fontsize=9, va="bottom")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
