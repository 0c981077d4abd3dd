"""A loopback mirror of Google's Quick, Draw! bucket, served from a local folder.

    python -m doodle.data.mirror ../shared/quickdraw --port 8765
    doodle download --categories cat dog --format raw --out data/raw --base-url http://127.0.0.1:8765/

The folder is laid out like ../shared/quickdraw (raw/, simplified/, bin/, bitmap/ and a
manifest.csv whose `file`, `format` and `categories` columns say what each file holds). A category's
file in the bucket (`full/raw/cat.ndjson`, `full/simplified/cat.ndjson`, `full/binary/cat.bin`,
`full/numpy_bitmap/cat.npy`: the paths `doodle.data.download` asks for) is every local file of that
format and category put together: ndjson files concatenated (a single pretty-printed JSON drawing
becomes one line), binary files concatenated, bitmaps stacked into one `.npy`. So
`JulienDuranleau_bycicle.ndjson` (category "bicycle" in the manifest) is part of
`full/simplified/bicycle.ndjson`. Without a manifest.csv, a file's folder gives its format and its
name its category.

HEAD answers with Content-Length and GET honours `Range: bytes=N-` (206 with Content-Range), as the
downloader's resume needs; `GET /` lists what is served, as JSON. The content of a category is built
on its first request and kept in memory (the whole shared folder is tens of MB).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import re
import sys
import threading
import urllib.parse
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

from doodle.data.download import FORMATS

log = logging.getLogger(__name__)

FOLDER_FORMATS = {"raw": "raw", "simplified": "simplified", "bin": "binary", "bitmap": "bitmap", "npz": "npz"}
"""Local folder -> download format, for folders without a manifest.csv."""

# manifest.csv's `format` column starts with one of these (longest first: "raw uint8" is a bitmap)
_MANIFEST_FORMATS = [("raw uint8", "bitmap"), ("numpy_bitmap", "bitmap"), ("raw", "raw"),
                     ("simplified", "simplified"), ("official quick draw binary", "binary")]
BITMAP_BYTES = 28 * 28


# -- what is served ---------------------------------------------------------------------------------


def catalogue(root: Path) -> dict[tuple[str, str], list[Path]]:
    """(download format, category) -> the local files that make up that bucket file, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no Quick, Draw! folder at {root}")
    entries = _manifest_entries(root) if (root / "manifest.csv").is_file() else _folder_entries(root)
    index: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for fmt, category, path in entries:
        if path.is_file():
            index[fmt, category].append(path)
    return {key: sorted(files) for key, files in sorted(index.items())}


def _manifest_entries(root: Path) -> list[tuple[str, str, Path]]:
    with open(root / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    entries = []
    for row in rows:
        fmt = _manifest_format(row.get("format") or "")
        category = (row.get("categories") or "").strip()
        if fmt and category and row.get("file"):
            entries.append((fmt, category, root / row["file"]))
    return entries


def _manifest_format(text: str) -> str | None:
    lowered = text.strip().lower()
    return next((fmt for prefix, fmt in _MANIFEST_FORMATS if lowered.startswith(prefix)), None)


def _folder_entries(root: Path) -> list[tuple[str, str, Path]]:
    entries = []
    for folder, fmt in FOLDER_FORMATS.items():
        for path in sorted((root / folder).glob("*")):
            entries.append((fmt, path.stem, path))
    return entries


def category_bytes(files: list[Path], fmt: str) -> bytes:
    """The content of one bucket file made of `files` (see the module doc); unreadable parts are
    left out with a warning, so one damaged file never takes the mirror down."""
    if fmt == "bitmap":
        return _stacked_bitmaps(files)
    out = io.BytesIO()
    for path in files:
        data = _ndjson_bytes(path) if fmt in ("raw", "simplified") else path.read_bytes()
        out.write(data)
    return out.getvalue()


def _ndjson_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".json":  # one pretty-printed drawing: one line of ndjson
        try:
            return orjson.dumps(orjson.loads(data)) + b"\n"
        except orjson.JSONDecodeError as err:
            log.warning("%s: not one JSON drawing (%s); left out", path, err)
            return b""
    return data if data.endswith(b"\n") or not data else data + b"\n"


def _stacked_bitmaps(files: list[Path]) -> bytes:
    import numpy as np

    arrays = [a for a in (_bitmap_array(path) for path in files) if a is not None]
    stacked = np.concatenate(arrays) if arrays else np.zeros((0, BITMAP_BYTES), np.uint8)
    out = io.BytesIO()
    np.save(out, stacked, allow_pickle=False)
    return out.getvalue()


def _bitmap_array(path: Path):
    import numpy as np

    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False).reshape(-1, BITMAP_BYTES).astype(np.uint8)
        data = path.read_bytes()
        return np.frombuffer(data[: len(data) // BITMAP_BYTES * BITMAP_BYTES], np.uint8).reshape(-1, BITMAP_BYTES)
    except (ValueError, OSError) as err:
        log.warning("%s: not 28x28 bitmaps (%s); left out", path, err)
        return None


def bucket_path(fmt: str, category: str) -> str:
    """The path in the bucket of a category's file ("full/raw/paint can.ndjson"), unquoted."""
    folder, suffix = FORMATS[fmt]
    return folder + category + suffix


# -- the server -------------------------------------------------------------------------------------


class Mirror:
    """The mirror of `root` on `host`:`port` (0: any free port), in a background thread.

        with Mirror("tests/fixtures/quickdraw") as mirror:
            download(["cat"], "raw", "data", base_url=mirror.url)
    """

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.root = Path(root)
        self.files = {bucket_path(fmt, cat): paths for (fmt, cat), paths in catalogue(self.root).items()}
        self.cache: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def content(self, path: str) -> bytes | None:
        """The bytes of bucket path `path` (unquoted), or None when it is not served."""
        if path not in self.files:
            return None
        with self.lock:  # built once even when several downloads ask at the same moment
            if path not in self.cache:
                fmt = next(f for f, (folder, suffix) in FORMATS.items() if path.startswith(folder)
                           and path.endswith(suffix))
                self.cache[path] = category_bytes(self.files[path], fmt)
            return self.cache[path]

    def listing(self) -> dict[str, list[str]]:
        """Format -> the categories served in it."""
        out: dict[str, list[str]] = defaultdict(list)
        for fmt, category in catalogue(self.root):
            out[fmt].append(category)
        return dict(out)

    def start(self) -> Mirror:
        self.thread = threading.Thread(target=self.server.serve_forever, name="doodle-mirror", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Mirror:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_range(value: str | None) -> int | None:
    """The first byte asked for by `Range: bytes=N-` (or `N-M`, served to the end); None without one."""
    match = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", value or "")
    return int(match.group(1)) if match else None


def _handler(mirror: Mirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "doodle-mirror"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
            log.debug("%s %s", self.address_string(), format % args)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path.lstrip("/"))
            data = orjson.dumps(mirror.listing()) if path == "" else mirror.content(path)
            if data is None:
                return self._send(404, b"not found: " + path.encode() + b"\n", body)
            start = parse_range(self.headers.get("Range")) if body else None
            if start is None:
                return self._send(200, data, body)
            if start >= len(data):
                return self._send(416, b"", body, {"Content-Range": f"bytes */{len(data)}"})
            headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            self._send(206, data[start:], body, headers)

        def _send(self, code: int, data: bytes, body: bool, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m doodle.data.mirror", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a Quick, Draw! folder laid out like ../shared/quickdraw")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    args = parser.parse_args(argv)
    try:
        mirror = Mirror(args.folder, args.host, args.port)
    except FileNotFoundError as err:
        return _fail(str(err))
    except OSError as err:  # the port is taken, or not ours to bind
        return _fail(f"cannot listen on {args.host}:{args.port}: {err.strerror}")
    counts = {fmt: len(cats) for fmt, cats in mirror.listing().items()}
    print(f"doodle mirror: serving {args.folder} ({counts}) at {mirror.url}  "
          f"(use --base-url {mirror.url} or DOODLE_BASE_URL; Ctrl+C stops)", flush=True)
    try:
        mirror.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        mirror.server.server_close()
    return 0


def _fail(message: str) -> int:
    print(f"doodle mirror: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
