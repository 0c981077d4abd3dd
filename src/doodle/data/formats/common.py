"""Pieces every reader shares: read statistics, byte-range line iteration, gzip, names and ids."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from doodle.data.drawing import Drawing, KeyIdRangeError, Limits, Reject, drawing_from_record

GZIP_MAGIC = b"\x1f\x8b"
BUFFER_SIZE = 1 << 20
"""Read buffer: large enough that per-line Python overhead, not I/O calls, dominates."""
SNIFF_LINE_BYTES = 1 << 24
"""Longest first line looked at to tell a text file's line ends."""
# What a malformed record may raise inside the shared validators: always turned into a Reject.
RECORD_ERRORS = (ValueError, TypeError, OverflowError, KeyError, IndexError, AttributeError)
RAW_HEX_BYTES = 256
"""How many bytes of a bad binary record a `Reject` keeps (as hex)."""


@dataclass(slots=True)
class ReadStats:
    """Counters a reader updates as it goes, so a caller splitting a file knows what a range held.

    `lines` counts every physical line of the range (blank lines and a CSV header included), so a
    reject's absolute line number is the sum of `lines` over the preceding ranges plus its `line`.
    For binary formats `lines` counts records, like `records`.
    """

    lines: int = 0
    records: int = 0
    """Items yielded: drawings plus rejects."""
    rejects: int = 0


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


class StreamDamage(Exception):
    """A gzip file that cannot be decompressed past some point; everything before it was read.

    `reason` says where and why (one sentence), `raw` is the cut line the readable part ends in.
    """

    def __init__(self, reason: str, raw: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


def open_bytes(path: Path) -> IO[bytes]:
    """A buffered binary handle on a text file's content, as the line readers want it.

    gzip (detected by magic, not name) is decompressed; a damaged gzip ends at the last whole line
    before the damage, and `stream_damage(handle)` then says why. A UTF-8 byte-order mark reads as
    three spaces and old-Mac line ends (a lone CR) as LF, byte for byte, so offsets stay the file's.
    Plain LF files get a plain buffered file: nothing is added to the common case.
    """
    if is_gzip(path):
        return io.BufferedReader(_GunzipStream(path), BUFFER_SIZE)
    bom, cr = _file_text_mode(path)
    if not (bom or cr):
        return open(path, "rb", buffering=BUFFER_SIZE)
    return io.BufferedReader(_TranslatedFile(path, bom, cr), BUFFER_SIZE)


def stream_damage(handle: IO[bytes]) -> StreamDamage | None:
    """Why a handle from `open_bytes` ended early (a damaged gzip), or None."""
    return getattr(getattr(handle, "raw", None), "damage", None)


# -- text modes: BOM and lone-CR line ends, decided once per file ----------------------------------

BOM = b"\xef\xbb\xbf"
MODE_BYTES = 1 << 16
"""Bytes read at a time while looking for a file's first line end."""


def cr_only(head: bytes, final: bool = False) -> bool | None:
    """Whether text starting with `head` ends its lines with a lone CR; None while `head` cannot tell.

    The first line end decides: a CR not followed by LF. Without any line end yet, None (False when
    `final`, that is when `head` is the whole text).
    """
    lf = head.find(b"\n")
    cr = head.find(b"\r", 0, lf if lf >= 0 else len(head))
    if cr < 0:
        return False if lf >= 0 or final else None
    if cr + 1 == len(head):  # a CR last: the next byte says whether it is a CRLF
        return True if final else None
    return head[cr + 1 : cr + 2] != b"\n"


class _LineEnds:
    """Tells a text's line ends (`cr_only`) from its chunks as they come, each byte looked at once."""

    def __init__(self) -> None:
        self.mode: bool | None = None
        self.tail = b""  # the last byte seen: a CR there may be the start of a CRLF
        self.size = 0

    def feed(self, chunk: bytes, final: bool = False) -> bool | None:
        self.size += len(chunk)
        self.mode = cr_only(self.tail + chunk, final or self.size >= SNIFF_LINE_BYTES)
        self.tail = chunk[-1:]
        return self.mode


def _file_text_mode(path: Path) -> tuple[bool, bool]:
    """(starts with a BOM, lone-CR line ends) of a plain file, from its first line end."""
    ends = _LineEnds()
    with open(path, "rb") as handle:
        first = more = handle.read(MODE_BYTES)
        while ends.feed(more, final=not more) is None:
            more = handle.read(MODE_BYTES)
    return first.startswith(BOM), bool(ends.mode)


def translate(data: bytes, offset: int, bom: bool, cr: bool) -> bytes:
    """`data` read at `offset` of a file: the BOM's bytes as spaces, CRs as LFs (same length)."""
    if bom and offset < len(BOM):
        n = min(len(BOM) - offset, len(data))
        data = b" " * n + data[n:]
    return data.replace(b"\r", b"\n") if cr else data


class _TranslatedFile(io.RawIOBase):
    """A plain text file read through `translate`; seekable like the file itself."""

    def __init__(self, path: Path, bom: bool, cr: bool) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._bom, self._cr = bom, cr

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._file.seek(pos, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer: Any) -> int:
        offset = self._file.tell()
        view = memoryview(buffer).cast("B")
        n = self._file.readinto(view) or 0
        view[:n] = translate(bytes(view[:n]), offset, self._bom, self._cr)
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


# -- gzip that survives damage ------------------------------------------------------------------------

GZIP_WBITS = 31
"""zlib's gzip wrapper: it parses the header and checks the CRC-32 and length trailer itself."""
GZIP_READ = 1 << 18
GZIP_OUT = 1 << 23
"""Most bytes one decompression step makes: 256 KiB of deflate data can stand for 256 MiB."""
_ZLIB_MEANING = {"incorrect data check": "CRC-32 check failed", "incorrect length check": "length check failed"}


class _Damage(Exception):
    """Raised by `_gunzip` where decompression cannot go on (its message is the reason)."""


def _gunzip(handle: IO[bytes]) -> Iterator[bytes]:
    """Decompressed chunks of every gzip member in `handle`, then `_Damage` if it cannot go on.

    Everything that decompresses before the damage is yielded first. Zero bytes after a member are
    padding (as gzip itself allows).
    """
    z = zlib.decompressobj(GZIP_WBITS)
    consumed = produced = 0
    started = False
    data = b""
    while True:
        data = data or handle.read(GZIP_READ)
        if not started:  # zero bytes between or after members are padding
            consumed += len(data)
            data = data.lstrip(b"\0")
            consumed -= len(data)
        if not data:
            if started:
                raise _Damage(f"gzip stream truncated after {produced} decompressed bytes: the file ends at "
                              f"compressed byte {consumed}, before the end of the gzip data")
            return
        started = True
        out, used, error = _decompress(z, data)
        if out:
            produced += len(out)
            yield out
        if error:
            raise _Damage(f"gzip stream damaged at compressed byte {consumed + used}, after {produced} "
                          f"decompressed bytes: {error}")
        data = z.unused_data if z.eof else z.unconsumed_tail  # the next member, or input not used yet
        consumed += used - len(data)
        if z.eof:
            z, started = zlib.decompressobj(GZIP_WBITS), False


def _decompress(z: Any, data: bytes) -> tuple[bytes, int, str | None]:
    """(output, bytes of `data` used before an error, zlib's complaint or None)."""
    saved = z.copy()
    try:
        return z.decompress(data, GZIP_OUT), len(data), None
    except zlib.error:
        return _salvage(saved, data, 256)


def _salvage(z: Any, data: bytes, step: int) -> tuple[bytes, int, str]:
    """Decompress `data` in steps, to keep the output up to the byte zlib refuses (a failed call
    returns nothing, so one big call would lose every line of its chunk before the damage)."""
    parts = []
    for pos in range(0, len(data), step):
        saved = z.copy()
        try:
            parts.append(z.decompress(data[pos : pos + step]))
        except zlib.error as err:
            if step > 1:
                out, used, why = _salvage(saved, data[pos : pos + step], 1)
                return b"".join(parts) + out, pos + used, why
            why = str(err).rpartition(": ")[2]
            return b"".join(parts), pos, _ZLIB_MEANING.get(why, why)
    return b"".join(parts), len(data), "the data does not decompress"


def _translated_start(chunks: list[bytes], cr: bool) -> bytes:
    """The first chunks of a text, joined and translated (`translate` from offset 0)."""
    data = b"".join(chunks)
    return translate(data, 0, data.startswith(BOM), cr)


class _GunzipStream(io.RawIOBase):
    """A gzip file's text content, decompressed as it is read (see `open_bytes`).

    Served in whole lines (a chunk's unfinished last line waits for the next chunk), so that on
    damage the cut line is held back: `damage` then holds the reason and that line.
    """

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._chunks = self._lines(_gunzip(self._file))
        self._pending = memoryview(b"")
        self.damage: StreamDamage | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        memoryview(buffer).cast("B")[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _lines(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        carry = b""
        ends = _LineEnds()
        waiting: list[bytes] = []  # chunks decompressed while the line ends are not known yet
        try:
            for chunk in chunks:
                if ends.mode is None:
                    waiting.append(chunk)
                    if ends.feed(chunk) is None:
                        continue
                    chunk, waiting = _translated_start(waiting, bool(ends.mode)), []
                elif ends.mode:
                    chunk = chunk.replace(b"\r", b"\n")
                data = carry + chunk
                cut = data.rfind(b"\n") + 1
                carry = data[cut:]
                if cut:
                    yield data[:cut]
        except _Damage as err:
            self.damage = StreamDamage(str(err), carry + _translated_start(waiting, True))
            return
        # text still waiting has no line end but perhaps a last CR: translating it as CR-only is right
        yield carry + _translated_start(waiting, True)

    def close(self) -> None:
        self._file.close()
        super().close()


def check_range(path: Path, start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"bad byte range [{start}, {end}) for {path}")


def iter_lines(path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """Physical lines (with their line ending) whose first byte lies at an offset in [start, end).

    Consecutive ranges therefore cover every line exactly once: a range that starts in the middle of
    a line skips to the next line start, and the line straddling `end` belongs to this range.
    Byte ranges need a seekable plain file; gzip files only support the whole file, and a damaged
    one raises `StreamDamage` after its last whole line. Text is read through `open_bytes` (BOM,
    lone-CR line ends).
    """
    check_range(path, start, end)
    whole = start == 0 and end is None
    if is_gzip(path):
        if not whole:
            raise ValueError(f"{path}: a gzip file cannot be split by byte range; read it whole")
        with open_bytes(path) as gz:
            yield from gz
        damage = stream_damage(gz)
        if damage is not None:
            raise damage
        return
    with open_bytes(path) as handle:
        if whole:
            yield from handle
            return
        pos = start
        if start > 0:
            handle.seek(start - 1)
            if handle.read(1) != b"\n":  # in the middle of a line: it belongs to an earlier range
                pos += len(handle.readline())
        limit = end if end is not None else float("inf")
        while pos < limit:
            line = handle.readline()
            if not line:
                return
            pos += len(line)
            yield line


def iter_text_records(
    path: Path,
    start: int,
    end: int | None,
    stats: ReadStats | None,
    parse: Callable[[int, bytes], Drawing | Reject],
    header_lines: int = 0,
) -> Iterator[Drawing | Reject]:
    """`parse(line_no, raw)` of every record line of a text file or byte range (`iter_lines`).

    Blank lines and the first `header_lines` lines are counted in `stats.lines` but are no record;
    a damaged gzip ends with one reject (`damage_reject`) after its readable lines.
    """
    line_no = 0
    try:
        for raw in iter_lines(path, start, end):
            line_no += 1
            if stats is not None:
                stats.lines += 1
            if line_no <= header_lines or raw.isspace():
                continue
            item = parse(line_no, raw)
            if stats is not None:
                stats.records += 1
                stats.rejects += isinstance(item, Reject)
            yield item
    except StreamDamage as damage:
        yield damage_reject(path, line_no + 1, damage, stats)


def first_line(path: Path, max_bytes: int = 1 << 24) -> bytes:
    """The file's first physical line (decompressed if gzip), without reading further."""
    with open_bytes(path) as handle:
        return handle.readline(max_bytes)


def record_to_item(
    path: Path, line_no: int, obj: Any, raw: bytes, limits: Limits, word: str | None
) -> Drawing | Reject:
    """A parsed JSON object (ndjson line, CSV row) -> a Drawing, or a Reject carrying `raw`.

    `word` fills in the category of records that carry none (Kaggle's test files).
    """
    try:
        drawing = drawing_from_record(obj, limits)
    except KeyIdRangeError as err:
        literal = KEY_LITERAL.search(raw)  # the number as written, not as the float JSON made of it
        return text_reject(path, line_no, err.with_text(literal.group(1)) if literal else str(err), raw)
    except RECORD_ERRORS as err:
        return text_reject(path, line_no, str(err), raw)
    if drawing.word is None and word:
        drawing.word = word
    return drawing


KEY_LITERAL = re.compile(rb'"key_id"\s*:\s*(-?[0-9][0-9.eE+-]*)')


def text_reject(path: Path, line_no: int, reason: str, raw: bytes) -> Reject:
    """A reject of a text record; `raw` cut to `Reject.RAW_LIMIT`, its full length kept."""
    line = raw.rstrip(b"\r\n")
    text = line[: Reject.RAW_LIMIT * 4].decode("utf-8", "replace")
    return Reject(source=str(path), line=line_no, reason=reason, raw=text[: Reject.RAW_LIMIT], raw_length=len(line))


def hex_reject(path: Path, index: int, reason: str, raw: bytes, size: int | None = None) -> Reject:
    """A reject whose `raw` is the record's first bytes as hex, "... (N bytes)" added when cut."""
    size = len(raw) if size is None else size
    text = raw[:RAW_HEX_BYTES].hex()
    if size > RAW_HEX_BYTES:
        text += f"... ({size} bytes)"
    return Reject(source=str(path), line=index, reason=reason, raw=text, raw_length=size)


def damage_reject(path: Path, line_no: int, damage: StreamDamage, stats: ReadStats | None) -> Reject:
    """The one reject a damaged gzip ends with, at the line the damage cut (counted in `stats`)."""
    if stats is not None:
        stats.lines += 1
        stats.records += 1
        stats.rejects += 1
    return text_reject(path, line_no, damage.reason, damage.raw)


def utf8_problem(raw: bytes) -> str | None:
    """"not valid UTF-8 at byte N" (1-based, in the line) when `raw` is not UTF-8, else None."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"not valid UTF-8 at byte {err.start + 1}"
    return None


_SUFFIXES = (".full.npz", ".npz", ".npy", ".bin")
_PREFIXES = ("full_numpy_bitmap_", "full_binary_")


def infer_word(path: Path | str) -> str | None:
    """The category a file holds, guessed from its name (formats without a word field).

    Strips `.full.npz`/`.npz`/`.npy`/`.bin`, a `full_numpy_bitmap_` (or `full_binary_`) prefix and
    trailing digits, and turns underscores into spaces; a name that is a Quick, Draw! category up to
    case, or whose singular is one, becomes that category: `full_numpy_bitmap_The_Eiffel_Tower.npy`
    -> "The Eiffel Tower", `dog.bin` -> "dog", `cats1000.bin` (a common sample name) -> "cat".
    Other names are kept as they are; pass `word=` (`doodle prepare --word`) where the name is not
    the category.
    """
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    name = " ".join(re.sub(r"\d+$", "", name).replace("_", " ").split())
    return _known_category(name) or name or None


def _known_category(name: str) -> str | None:
    """The category `name` spells (any case), or the one its singular spells ("cats", "buses")."""
    known = _categories()
    lowered = name.lower()
    for candidate in (lowered, lowered.removesuffix("s"), lowered.removesuffix("es")):
        if candidate in known:
            return known[candidate]
    return None


@functools.cache
def _categories() -> dict[str, str]:
    """Google's 345 category names by their lower-case spelling (shipped with the package)."""
    from importlib import resources

    text = resources.files("doodle.data").joinpath("categories.txt").read_text(encoding="utf-8")
    return {line.strip().lower(): line.strip() for line in text.splitlines() if line.strip()}


def synthetic_key_id(fmt: str, path: Path | str, subset: str, index: int) -> int:
    """A deterministic 63-bit key_id for formats that carry none (npz, bitmaps).

    blake2b (8-byte digest) of "format|file name|subset|index", top bit cleared: the same record of
    the same file always gets the same id, on any machine (only the file's name is used, not its
    folder), and ids stay positive in a signed int64 column.
    """
    text = f"{fmt}|{Path(path).name}|{subset}|{index}".encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@contextmanager
def atomic_output(path: Path | str) -> Iterator[IO[bytes]]:
    """A binary handle on a temporary file beside `path`, renamed over it only on success.

    A writer that stops half-way (a drawing it cannot represent, Ctrl-C) leaves no truncated file
    that a later run would mistake for a complete one. A `.gz` name gets gzip compression.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb", buffering=BUFFER_SIZE) as raw:
            if path.name.lower().endswith(".gz"):
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
                    yield gz  # type: ignore[misc]
            else:
                yield raw
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
