"""`doodle.data.mirror`: a local Quick, Draw! folder served under Google's bucket paths, fetched by
`doodle download` as it fetches the bucket (HEAD, Range resume, 404s)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from doodle.data import download as dl
from doodle.data.formats import read
from doodle.data.mirror import Mirror, catalogue
from doodle.errors import DoodleError


@pytest.fixture(scope="module")
def mirror(quickdraw: Path):
    with Mirror(quickdraw) as served:
        yield served


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_bytes().splitlines() if line.strip())


def test_a_category_is_every_file_of_its_format_and_category(mirror, quickdraw, tmp_path):
    [path] = dl.download(["camera"], "simplified", tmp_path, base_url=mirror.url, progress=False)
    parts = [quickdraw / "simplified" / "JulienDuranleau_camera.ndjson", quickdraw / "simplified" / "camera.ndjson"]
    assert path.read_bytes() == b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in parts)
    assert len(list(read(path))) == 425


def test_a_pretty_printed_drawing_becomes_one_ndjson_line(mirror, quickdraw, tmp_path):
    [path] = dl.download(["cat"], "raw", tmp_path, base_url=mirror.url, progress=False)
    assert _lines(path) == _lines(quickdraw / "raw" / "cat.ndjson") + 1
    drawings = list(read(path))
    assert len(drawings) == 26 and 5321656484495360 in {d.key_id for d in drawings}


def test_names_with_spaces_and_bitmaps_stacked(mirror, quickdraw, tmp_path):
    [path] = dl.download(["paint can"], "raw", tmp_path, base_url=mirror.url, progress=False)
    assert path.read_bytes().rstrip() == (quickdraw / "raw" / "paint can.ndjson").read_bytes().rstrip()
    [bitmaps] = dl.download(["cat"], "bitmap", tmp_path, base_url=mirror.url, progress=False)
    assert np.load(bitmaps).shape == (100, 784)  # cat.npy (50) + cats1000.bin (50 headerless)


def test_head_and_range_as_the_downloader_uses_them(mirror):
    url = mirror.url + "full/simplified/eye.ndjson"
    whole = urllib.request.urlopen(url).read()
    head = urllib.request.urlopen(urllib.request.Request(url, method="HEAD"))
    assert int(head.headers["Content-Length"]) == len(whole)
    ranged = urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=100-"}))
    assert ranged.status == 206 and ranged.read() == whole[100:]
    assert ranged.headers["Content-Range"] == f"bytes 100-{len(whole) - 1}/{len(whole)}"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": f"bytes={len(whole)}-"}))
    assert info.value.code == 416


def test_a_partial_download_resumes_from_the_mirror(mirror, tmp_path):
    url = mirror.url + "full/simplified/map.ndjson"
    whole = urllib.request.urlopen(url).read()
    dl.part_path(tmp_path / "map.ndjson").write_bytes(whole[:1000])
    [path] = dl.download(["map"], "simplified", tmp_path, base_url=mirror.url, progress=False)
    assert path.read_bytes() == whole


def test_an_unknown_category_is_a_404(mirror, tmp_path):
    with pytest.raises(DoodleError, match="HTTP 404"):
        dl.download(["zigzag"], "raw", tmp_path, base_url=mirror.url, progress=False)


def test_the_command_line_serves_and_refuses_a_missing_folder(quickdraw, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "doodle.data.mirror", str(quickdraw), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        [path] = dl.download(["dog"], "raw", tmp_path, base_url=url, progress=False)
        assert len(list(read(path))) == 26  # a newline is added to files that end without one
    finally:
        proc.terminate()
        proc.wait(10)
    failed = subprocess.run([sys.executable, "-m", "doodle.data.mirror", str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2 and failed.stderr.strip().count("\n") == 0 and "none" in failed.stderr


@pytest.mark.breadth
def test_every_shared_category_is_served_and_readable(shared_quickdraw, tmp_path):
    index = catalogue(shared_quickdraw)
    assert len({c for f, c in index if f == "raw"}) == 345
    assert shared_quickdraw / "simplified" / "JulienDuranleau_bycicle.ndjson" in index["simplified", "bicycle"]
    started = time.monotonic()
    with Mirror(shared_quickdraw) as served:
        names = sorted({c for f, c in index if f == "simplified"})
        paths = dl.download(names, "simplified", tmp_path, base_url=served.url, progress=False)
    assert len(paths) == 344 and time.monotonic() - started < 120
    bicycles = list(read(tmp_path / "bicycle.ndjson"))
    assert len(bicycles) >= 400 and {d.word for d in bicycles} == {"bicycle"}
