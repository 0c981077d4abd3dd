"""`doodle download` against a local HTTP server that serves the sample of real files (tests/fixtures/quickdraw,
laid out as ../shared/quickdraw) like Google's bucket.

The server (started inside the test, on 127.0.0.1, port 0) supports HEAD and Range and can be told
to misbehave: drop the connection part way, answer 503, ignore Range, refuse HEAD, stall.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from doodle.cli import main
from doodle.data import download as dl
from doodle.errors import DoodleError

# bucket folder -> folder of the sample (the layout of ../shared/quickdraw)
LAYOUT = {
    "full/raw/": "raw/",
    "full/simplified/": "simplified/",
    "full/binary/": "bin/",
    "full/numpy_bitmap/": "bitmap/",
    "sketchrnn/": "npz/",
}


@dataclass
class Behaviour:
    """Switches for the test server, and a log of what it was asked."""

    drop_after: int | None = None  # send only this many body bytes, then close ...
    drop_times: int = 0  # ... on this many GETs
    fail_503: int = 0  # answer 503 to this many GETs
    stall_times: int = 0  # wait `stall_s` before answering this many GETs
    stall_s: float = 1.5
    ignore_range: bool = False
    no_head: bool = False
    requests: list[tuple[str, str, str | None, int]] = field(default_factory=list)  # method, path, Range, status

    def gets(self) -> list[tuple[str, str, str | None, int]]:
        return [r for r in self.requests if r[0] == "GET"]


def _local_file(root: Path, url_path: str) -> Path | None:
    path = urllib.parse.unquote(url_path.lstrip("/"))
    for folder, local in LAYOUT.items():
        if path.startswith(folder) and "/" not in path[len(folder) :]:
            candidate = root / local / path[len(folder) :]
            return candidate if candidate.is_file() else None
    return None


def _make_handler(root: Path, behaviour: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest's output clean
            pass

        def _log(self, status: int) -> None:
            behaviour.requests.append((self.command, self.path, self.headers.get("Range"), status))

        def _status(self, code: int) -> None:
            self._log(code)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            if behaviour.no_head:
                return self._status(405)
            path = _local_file(root, self.path)
            if path is None:
                return self._status(404)
            self._log(200)
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def do_GET(self) -> None:
            if behaviour.stall_times > 0:
                behaviour.stall_times -= 1
                self._log(0)  # status 0: stalled (the client gives up before the answer)
                time.sleep(behaviour.stall_s)
            if behaviour.fail_503 > 0:
                behaviour.fail_503 -= 1
                return self._status(503)
            path = _local_file(root, self.path)
            if path is None:
                return self._status(404)
            data = path.read_bytes()
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match and not behaviour.ignore_range:
                start = int(match.group(1))
                if start >= len(data):
                    return self._status(416)
            body = data[start:]
            self._log(206 if start else 200)
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if behaviour.drop_times > 0 and behaviour.drop_after is not None:
                behaviour.drop_times -= 1
                body = body[: behaviour.drop_after]
            self.wfile.write(body)

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client hanging up is expected here
        pass


@pytest.fixture
def server(quickdraw: Path):
    """(base URL, Behaviour) of a bucket-like server running for one test."""
    behaviour = Behaviour()
    httpd = QuietServer(("127.0.0.1", 0), _make_handler(quickdraw, behaviour))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", behaviour
    httpd.shutdown()
    httpd.server_close()


FAST = {"backoff": 0.0, "timeout": 10, "progress": False}


# -- pure helpers -------------------------------------------------------------------------------


def test_category_url_encodes_spaces_for_every_format():
    base = "https://example.org/qd/"
    assert dl.category_url(base, "paint can", "raw") == base + "full/raw/paint%20can.ndjson"
    assert dl.category_url(base, "The Eiffel Tower", "simplified") == (
        base + "full/simplified/The%20Eiffel%20Tower.ndjson"
    )
    assert dl.category_url(base, "dog", "binary") == base + "full/binary/dog.bin"
    assert dl.category_url(base, "dog", "npz") == base + "sketchrnn/dog.npz"
    assert dl.category_url(base[:-1], "dog", "bitmap") == base + "full/numpy_bitmap/dog.npy"
    assert dl.file_name("paint can", "raw") == "paint can.ndjson"
    with pytest.raises(DoodleError, match="unknown format"):
        dl.category_url(base, "dog", "png")


def test_range_header_and_content_range():
    assert dl.range_header(0) == {}
    assert dl.range_header(1234) == {"Range": "bytes=1234-"}
    assert dl.parse_content_range("bytes 100-199/200") == (100, 200)
    assert dl.parse_content_range("bytes 100-199/*") == (100, None)
    assert dl.parse_content_range(None) is None
    assert dl.parse_content_range("items 1-2/3") is None


def test_backoff_grows_exponentially_up_to_a_cap():
    delays = [dl.backoff_delay(a, base=0.5, cap=5) for a in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_base_url_from_argument_environment_or_default(monkeypatch):
    monkeypatch.delenv(dl.BASE_URL_ENV, raising=False)
    assert dl.resolve_base_url() == dl.DEFAULT_BASE_URL
    monkeypatch.setenv(dl.BASE_URL_ENV, "http://mirror/qd")
    assert dl.resolve_base_url() == "http://mirror/qd/"
    assert dl.resolve_base_url("http://other/") == "http://other/"


def test_categories_all_unknown_and_spelling(quickdraw):
    names = dl.all_categories()
    assert names == (quickdraw / "meta" / "categories.txt").read_text().split("\n")[:-1]
    assert len(names) == 345
    assert dl.resolve_categories(["all"]) == names
    assert dl.resolve_categories(["the eiffel tower", "paint_can", "cat,dog", "cat"]) == [
        "The Eiffel Tower",
        "paint can",
        "cat",
        "dog",
    ]
    with pytest.raises(DoodleError) as err:
        dl.resolve_categories(["cat", "elefant", "qwertyuiop"])
    assert "'elefant' (did you mean 'elephant'?)" in str(err.value)
    assert "'qwertyuiop'" in str(err.value)
    assert "'cat'" not in str(err.value)


# -- against the server -----------------------------------------------------------------------


def test_download_is_byte_identical_and_encodes_names(server, quickdraw, tmp_path):
    base, behaviour = server
    paths = dl.download(["cat", "paint can", "The Eiffel Tower"], "raw", tmp_path, base_url=base, **FAST)
    assert [p.name for p in paths] == ["cat.ndjson", "paint can.ndjson", "The Eiffel Tower.ndjson"]
    for p in paths:
        assert p.read_bytes() == (quickdraw / "raw" / p.name).read_bytes()
    assert not list(tmp_path.glob("*.part"))
    requested = {r[1] for r in behaviour.gets()}
    assert "/full/raw/paint%20can.ndjson" in requested
    assert "/full/raw/The%20Eiffel%20Tower.ndjson" in requested


def test_binary_and_bitmap_formats(server, quickdraw, tmp_path):
    base, _ = server
    [path] = dl.download(["dog"], "binary", tmp_path, base_url=base, **FAST)
    assert path.read_bytes() == (quickdraw / "bin" / "dog.bin").read_bytes()
    [path] = dl.download(["apple"], "bitmap", tmp_path, base_url=base, **FAST)
    assert path.read_bytes() == (quickdraw / "bitmap" / "apple.npy").read_bytes()


def test_dropped_connections_are_resumed_with_range(server, quickdraw, tmp_path):
    base, behaviour = server
    behaviour.drop_after, behaviour.drop_times = 5000, 2
    [path] = dl.download(["cat"], "raw", tmp_path, base_url=base, **FAST)
    assert path.read_bytes() == (quickdraw / "raw" / "cat.ndjson").read_bytes()
    ranges = [r[2] for r in behaviour.gets()]
    assert ranges == [None, "bytes=5000-", "bytes=10000-"]


def test_a_503_is_retried(server, quickdraw, tmp_path):
    base, behaviour = server
    behaviour.fail_503 = 1
    [path] = dl.download(["dog"], "simplified", tmp_path, base_url=base, **FAST)
    assert path.read_bytes() == (quickdraw / "simplified" / "dog.ndjson").read_bytes()
    assert [r[3] for r in behaviour.gets()] == [503, 200]


def test_a_timeout_is_retried(server, quickdraw, tmp_path):
    base, behaviour = server
    behaviour.stall_times, behaviour.stall_s = 1, 1.5
    [path] = dl.download(["dog"], "binary", tmp_path, base_url=base, **{**FAST, "timeout": 0.3})
    assert path.read_bytes() == (quickdraw / "bin" / "dog.bin").read_bytes()
    assert [r[3] for r in behaviour.gets()] == [0, 200]


def test_server_ignoring_range_restarts_the_file(server, quickdraw, tmp_path):
    base, behaviour = server
    behaviour.ignore_range = True
    behaviour.drop_after, behaviour.drop_times = 3000, 1
    [path] = dl.download(["cat"], "raw", tmp_path, base_url=base, **FAST)
    assert path.read_bytes() == (quickdraw / "raw" / "cat.ndjson").read_bytes()
    assert [r[2:] for r in behaviour.gets()] == [(None, 200), ("bytes=3000-", 200)]


def test_giving_up_keeps_the_part_for_a_later_resume(server, quickdraw, tmp_path):
    base, behaviour = server
    behaviour.drop_after, behaviour.drop_times = 4000, 3
    with pytest.raises(DoodleError, match="giving up after 3 attempts"):
        dl.download(["cat"], "raw", tmp_path, base_url=base, retries=2, **FAST)
    part = tmp_path / "cat.ndjson.part"
    assert part.stat().st_size == 12000
    assert not (tmp_path / "cat.ndjson").exists()
    [path] = dl.download(["cat"], "raw", tmp_path, base_url=base, **FAST)
    assert path.read_bytes() == (quickdraw / "raw" / "cat.ndjson").read_bytes()
    assert behaviour.gets()[-1][2] == "bytes=12000-"


def test_404_is_a_clear_error_without_retries(server, tmp_path):
    base, behaviour = server
    with pytest.raises(DoodleError, match=r"404.*sketchrnn/cat\.npz"):
        dl.download(["cat"], "npz", tmp_path, base_url=base, **FAST)
    behaviour.no_head = True
    with pytest.raises(DoodleError, match=r"404.*sketchrnn/dog\.npz"):
        dl.download(["dog"], "npz", tmp_path, base_url=base, **FAST)
    assert len(behaviour.gets()) == 1


def test_complete_files_are_skipped_and_changed_ones_fetched(server, quickdraw, tmp_path):
    base, behaviour = server
    dl.download(["cat", "dog"], "raw", tmp_path, base_url=base, **FAST)
    assert len(behaviour.gets()) == 2
    (tmp_path / "dog.ndjson").write_bytes(b"stale")
    dl.download(["cat", "dog"], "raw", tmp_path, base_url=base, **FAST)
    assert [r[1] for r in behaviour.gets()] == ["/full/raw/cat.ndjson", "/full/raw/dog.ndjson"] + [
        "/full/raw/dog.ndjson"
    ]
    assert (tmp_path / "dog.ndjson").read_bytes() == (quickdraw / "raw" / "dog.ndjson").read_bytes()


def test_without_head_present_files_are_kept_and_parts_resumed(server, quickdraw, tmp_path):
    base, behaviour = server
    behaviour.no_head = True
    (tmp_path / "cat.ndjson").write_bytes(b"kept as is")
    source = (quickdraw / "raw" / "dog.ndjson").read_bytes()
    (tmp_path / "dog.ndjson.part").write_bytes(source[:777])
    dl.download(["cat", "dog"], "raw", tmp_path, base_url=base, **FAST)
    assert (tmp_path / "cat.ndjson").read_bytes() == b"kept as is"
    assert (tmp_path / "dog.ndjson").read_bytes() == source
    assert [r[1:3] for r in behaviour.gets()] == [("/full/raw/dog.ndjson", "bytes=777-")]


def test_base_url_from_environment(server, quickdraw, tmp_path, monkeypatch):
    base, _ = server
    monkeypatch.setenv("DOODLE_BASE_URL", base)
    [path] = dl.download(["cat"], "simplified", tmp_path, **FAST)
    assert path.read_bytes() == (quickdraw / "simplified" / "cat.ndjson").read_bytes()


# -- CLI --------------------------------------------------------------------------------------


def test_cli_downloads(server, quickdraw, tmp_path, capsys):
    base, _ = server
    out = tmp_path / "out"
    argv = ["download", "--categories", "paint can", "cat", "--format", "raw", "--out", str(out)]
    assert main([*argv, "--base-url", base, "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cat.ndjson", "paint can.ndjson"]
    assert (out / "paint can.ndjson").read_bytes() == (quickdraw / "raw" / "paint can.ndjson").read_bytes()
    assert "2 raw file(s)" in capsys.readouterr().out


def test_cli_reports_unknown_categories_and_404(server, tmp_path, capsys):
    base, _ = server
    argv = ["download", "--format", "raw", "--out", str(tmp_path), "--base-url", base, "--no-progress"]
    assert main([*argv, "--categories", "catt"]) == 2
    assert "did you mean 'cat'?" in capsys.readouterr().err
    assert main([*argv[:2], "npz", *argv[3:], "--categories", "cat"]) == 2
    assert "sketchrnn/cat.npz" in capsys.readouterr().err


# -- no network: fail in seconds, not after 30 s of retries ----------------------------------------


def _refused_url() -> str:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("base_url, host, what", [
    ("refused", "127.0.0.1:", "connection refused"),
    ("http://no-such-host.invalid/", "no-such-host.invalid", "name does not resolve"),
])
def test_an_unreachable_host_fails_fast_naming_it_and_the_mirror_option(base_url, host, what, tmp_path):
    base_url = _refused_url() if base_url == "refused" else base_url
    started = time.monotonic()
    with pytest.raises(DoodleError) as info:
        dl.download(["cat"], "raw", tmp_path, base_url=base_url, retries=5, backoff=2.0, progress=False)
    assert time.monotonic() - started < 5  # five retries with backoff 2 would take 62 s
    message = str(info.value)
    assert "\n" not in message and host in message and what in message
    assert "--base-url" in message and "DOODLE_BASE_URL" in message


def test_cli_without_network_is_one_line(tmp_path, capsys):
    started = time.monotonic()
    code = main(["download", "--categories", "cat", "--format", "raw", "--out", str(tmp_path),
                 "--base-url", _refused_url(), "--no-progress"])
    assert code == 2 and time.monotonic() - started < 5
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("doodle download: error: cannot reach 127.0.0.1:")


def test_unreachable_is_not_transient_but_timeouts_and_5xx_are():
    import socket
    import urllib.error

    assert dl.is_unreachable(urllib.error.URLError(socket.gaierror(-2, "Name or service not known")))
    assert dl.is_unreachable(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")))
    assert not dl.is_transient(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")))
    assert dl.is_transient(urllib.error.URLError(TimeoutError("timed out")))
    assert dl.is_transient(ConnectionResetError(104, "reset"))
    assert dl.is_transient(urllib.error.HTTPError("u", 503, "busy", {}, None))
    assert dl.is_transient(dl.TruncatedBody("short"))
