"""Fetch Quick, Draw! files from Google's public bucket (or a mirror), resumably.

One file per category and format::

    raw         full/raw/<category>.ndjson          simplified  full/simplified/<category>.ndjson
    binary      full/binary/<category>.bin          npz         sketchrnn/<category>.npz
    bitmap      full/numpy_bitmap/<category>.npy

Each file is written to `<name>.part` and renamed into place only once complete, so a file without
`.part` is always whole. An interrupted download resumes the `.part` with an HTTP Range request;
timeouts, dropped connections, 5xx answers and truncated bodies are retried with exponential
backoff; a 404 (or another 4xx) is reported at once, and so is a host that cannot be reached at all
(its name does not resolve, or it refuses the connection): a machine without network stays so for
longer than any backoff, so that fails in seconds, with a hint to use a mirror. Files that are
already complete are skipped.

The small pure helpers (`category_url`, `range_header`, `backoff_delay`, ...) are public so they can
be tested and reused on their own.
"""

from __future__ import annotations

import difflib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from doodle.errors import DoodleError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://storage.googleapis.com/quickdraw_dataset/"
BASE_URL_ENV = "DOODLE_BASE_URL"

FORMATS: dict[str, tuple[str, str]] = {
    "raw": ("full/raw/", ".ndjson"),
    "simplified": ("full/simplified/", ".ndjson"),
    "binary": ("full/binary/", ".bin"),
    "npz": ("sketchrnn/", ".npz"),
    "bitmap": ("full/numpy_bitmap/", ".npy"),
}
"""Format name -> (folder in the bucket, file suffix)."""

CHUNK = 256 * 1024
USER_AGENT = "doodle-downloader"

# Errors worth another try; anything else (a full disk, a 404) is not.
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


class TruncatedBody(http.client.HTTPException):
    """The server closed the connection before sending all the bytes it announced."""


# -- categories ---------------------------------------------------------------------------------


def all_categories() -> list[str]:
    """The 345 Quick, Draw! category names, in Google's order (shipped with the package)."""
    text = resources.files("doodle.data").joinpath("categories.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def resolve_categories(names: Iterable[str], known: list[str] | None = None) -> list[str]:
    """Canonical category names for user input, in order, without duplicates.

    "all" stands for every category; matching ignores case and treats "_" as a space; several
    names may be given in one string separated by commas. Unknown names raise `DoodleError` listing
    each with its closest match.
    """
    known = all_categories() if known is None else known
    lookup = {_normal(name): name for name in known}
    out: list[str] = []
    unknown: list[str] = []
    for item in names:
        for name in (part.strip() for part in item.split(",")):
            if not name:
                continue
            if name.lower() == "all":
                out.extend(known)
            elif _normal(name) in lookup:
                out.append(lookup[_normal(name)])
            else:
                unknown.append(name)
    if unknown:
        raise DoodleError("unknown categories: " + "; ".join(_suggest(name, lookup) for name in unknown))
    if not out:
        raise DoodleError("no categories given")
    return list(dict.fromkeys(out))


def _normal(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip().lower())


def _suggest(name: str, lookup: dict[str, str]) -> str:
    close = difflib.get_close_matches(_normal(name), list(lookup), n=1, cutoff=0.6)
    return f"{name!r} (did you mean {lookup[close[0]]!r}?)" if close else repr(name)


# -- URLs, names and headers ------------------------------------------------------------------


def resolve_base_url(base_url: str | None = None) -> str:
    """`base_url`, else $DOODLE_BASE_URL, else Google's bucket; always ending in "/"."""
    url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise DoodleError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def file_name(category: str, fmt: str) -> str:
    """The local (and bucket) file name: the category name, spaces kept, plus the suffix."""
    return category + FORMATS[check_format(fmt)][1]


def category_url(base_url: str, category: str, fmt: str) -> str:
    """The URL of one category's file, its name percent-encoded ("paint can" -> "paint%20can")."""
    folder = FORMATS[check_format(fmt)][0]
    return resolve_base_url(base_url) + folder + urllib.parse.quote(file_name(category, fmt))


def part_path(dest: Path) -> Path:
    """Where `dest` is written until it is complete."""
    return dest.with_name(dest.name + ".part")


def range_header(offset: int) -> dict[str, str]:
    """Request headers asking for the bytes from `offset` on (none for offset 0)."""
    return {"Range": f"bytes={offset}-"} if offset > 0 else {}


def parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """(first byte, total size or None) of a "bytes 100-199/200" header; None if absent or odd."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not match:
        return None
    total = match.group(3)
    return int(match.group(1)), (None if total == "*" else int(total))


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 30.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): base, 2*base, 4*base ... up to cap."""
    return min(cap, base * 2 ** max(0, attempt - 1))


def is_transient(err: BaseException) -> bool:
    """True for errors worth retrying: network trouble, timeouts, truncation and 5xx answers."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500
    return isinstance(err, _TRANSIENT) and not is_unreachable(err)


def is_unreachable(err: BaseException) -> bool:
    """True when the host cannot be reached at all: its name does not resolve or it refuses connections.

    Retrying these only delays the answer (no network, a typo in the URL, a mirror that is not running).
    """
    return isinstance(_socket_error(err), socket.gaierror | ConnectionRefusedError)


def _socket_error(err: BaseException) -> BaseException | str:
    """The error under a URLError (urllib wraps the socket's), else `err` itself."""
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        return err.reason
    return err


def unreachable_error(url: str, err: BaseException) -> DoodleError:
    """The one-line error for a host that cannot be reached, naming it and the way to a mirror."""
    host = urllib.parse.urlsplit(url).netloc or url
    reason = _socket_error(err)
    what = "name does not resolve" if isinstance(reason, socket.gaierror) else "connection refused"
    return DoodleError(f"cannot reach {host} ({what}: {reason}); without network access point --base-url URL "
                       f"or {BASE_URL_ENV} at a mirror (e.g. `python -m doodle.data.mirror FOLDER`)")


# -- HTTP -------------------------------------------------------------------------------------


def _request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> urllib.request.Request:
    return urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT, **(headers or {})})


def remote_size(url: str, timeout: float = 60) -> int | None:
    """The file's size from a HEAD request, or None when HEAD is unavailable or gives no length.

    A 404 raises `DoodleError`: the file does not exist.
    """
    try:
        with urllib.request.urlopen(_request(url, "HEAD"), timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise _not_found(url) from None
        return None
    except _TRANSIENT as err:
        if is_unreachable(err):
            raise unreachable_error(url, err) from None
        return None
    return int(length) if length and length.isdigit() else None


def _not_found(url: str) -> DoodleError:
    return DoodleError(f"not found (HTTP 404): {url} - check the category name, format and base URL")


def _fetch_once(url: str, part: Path, timeout: float, bar: Any) -> None:
    """One GET into `part`, resuming from its current size.

    A whole-file (200) answer to a ranged request restarts the file. Raises `TruncatedBody` when
    fewer bytes arrive than the server announced.
    """
    offset = part.stat().st_size if part.exists() else 0
    with urllib.request.urlopen(_request(url, headers=range_header(offset)), timeout=timeout) as resp:
        content_range = parse_content_range(resp.headers.get("Content-Range"))
        if resp.status == 206 and content_range and content_range[0] == offset:
            mode, total = "ab", content_range[1]
        else:  # 200: the server sent the whole file (it ignored or never got a Range)
            if offset:
                log.info("%s: server ignored the Range request; restarting the file", url)
            offset, mode, total = 0, "wb", None
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if total is None and expected is not None:
            total = offset + expected
        bar.reset(total=total)
        bar.update(offset)
        received = _copy(resp, part, mode, bar)
    if expected is not None and received < expected:
        raise TruncatedBody(f"connection closed after {received} of {expected} bytes")


def _copy(resp: Any, part: Path, mode: str, bar: Any) -> int:
    received = 0
    with open(part, mode) as out:
        while chunk := resp.read(CHUNK):
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return received


def fetch(
    url: str,
    dest: Path,
    *,
    retries: int = 5,
    timeout: float = 60,
    backoff: float = 1.0,
    progress: bool = True,
) -> Path:
    """Download `url` to `dest` (via `dest.part`), resuming and retrying; skip it if already complete."""
    from tqdm import tqdm

    dest = Path(dest)
    part = part_path(dest)
    size = remote_size(url, timeout)
    if _already_complete(dest, part, size):
        log.info("%s: already complete, skipped", dest)
        return dest
    if size is not None and part.exists() and part.stat().st_size > size:
        part.unlink()  # longer than the file: not a prefix of it
    with tqdm(desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024, leave=False, disable=not progress) as bar:
        _fetch_with_retries(url, part, retries, timeout, backoff, bar)
    actual = part.stat().st_size
    if size is not None and actual != size:
        part.unlink()
        raise DoodleError(f"{url}: got {actual} bytes but the server announced {size}; try again")
    os.replace(part, dest)
    return dest


def _already_complete(dest: Path, part: Path, size: int | None) -> bool:
    if not dest.exists():
        return False
    if size is None:
        return not part.exists()
    return dest.stat().st_size == size


def _fetch_with_retries(url: str, part: Path, retries: int, timeout: float, backoff: float, bar: Any) -> None:
    attempt = 0
    while True:
        try:
            _fetch_once(url, part, timeout, bar)
            return
        except urllib.error.HTTPError as err:
            if err.code == 404:
                raise _not_found(url) from None
            if err.code == 416 and part.exists():  # our offset is past the end: start over
                part.unlink()
            elif not is_transient(err):
                raise DoodleError(f"{url}: HTTP {err.code} {err.reason}") from None
            failure: BaseException = err
        except _TRANSIENT as err:
            if is_unreachable(err):
                raise unreachable_error(url, err) from None
            failure = err
        attempt += 1
        if attempt > retries:
            raise DoodleError(f"{url}: giving up after {attempt} attempts: {_describe(failure)}")
        delay = backoff_delay(attempt, backoff)
        log.warning("%s: %s; retry %d of %d in %.1fs", url, _describe(failure), attempt, retries, delay)
        time.sleep(delay)


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"connection failed ({err.reason})"
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


# -- the whole job ----------------------------------------------------------------------------


def download(
    categories: Iterable[str],
    fmt: str,
    out_dir: str | Path,
    *,
    base_url: str | None = None,
    retries: int = 5,
    timeout: float = 60,
    backoff: float = 1.0,
    progress: bool = True,
) -> list[Path]:
    """Fetch one `fmt` file per category into `out_dir`; returns the local paths, in order.

    `categories` may contain "all"; `base_url` defaults to $DOODLE_BASE_URL, then Google's bucket.
    `retries` is how many times a failing file is retried, waiting `backoff`, 2*`backoff`, ...
    seconds in between; `timeout` bounds each network wait in seconds.
    """
    from tqdm import tqdm

    check_format(fmt)
    names = resolve_categories(categories)
    base = resolve_base_url(base_url)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in tqdm(names, desc=f"{fmt} files", unit="file", disable=not progress or len(names) < 2):
        url = category_url(base, name, fmt)
        paths.append(
            fetch(
                url,
                out / file_name(name, fmt),
                retries=retries,
                timeout=timeout,
                backoff=backoff,
                progress=progress,
            )
        )
    return paths
