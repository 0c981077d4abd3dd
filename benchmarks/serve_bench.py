"""Load benchmark of `doodle serve` on 127.0.0.1: latency p50/p99 and requests/s at several
concurrencies, ONNX Runtime against eager PyTorch, in one run.

    .venv/bin/python benchmarks/serve_bench.py /work/runs/cpu-q15-v3 --data ../shared/quickdraw/raw

Backends: onnx (ONNX Runtime, float32, what `doodle serve RUN` runs), onnx-int8 (the model exported
with `doodle export --quantize int8`, calibrated on the train split of the store of --val) and torch (eager
PyTorch), plus `floor`: the same app, validation and preprocessing with a model that answers at
once (constant guesses), which measures what HTTP, the client and preprocessing cost on this
machine before any model runs. For each backend the script starts `doodle serve MODEL --backend B`
itself (a separate process, as in production), waits for /healthz, warms up, then for each
concurrency C keeps C requests in flight for `--seconds`, each POSTing a real raw drawing (strokes
with timing, as the drawing page sends them) and checking the answer is a 200 with guesses. It
prints one row per backend and concurrency and the goal check (p50 <= 10 ms and p99 <= 30 ms at
concurrency 8, ONNX Runtime).

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams, one connection per
concurrent request, because on a 2-core machine a heavier client (httpx) takes much of the CPU the
server needs and the numbers would measure the client.

Mixed load (`--mixed`): one `doodle serve MODEL` (ONNX Runtime), and at each concurrency clients
on keep-alive connections sending, in a seeded order, valid drawings (~70 %), bad payloads (~20 %:
malformed or deeply nested JSON, huge numbers, wrong types and shapes, limits exceeded, wrong
content type, ...) and drawings slow to simplify (~10 %: the costliest zigzag within the limits,
and zigzags over them). It prints the count of each status, the 5xx count, the connections the
server dropped without saying so and those reopened after an answer that said `connection:
close`, the valid requests' p50/p99 latency (and the slow ones'), and the server's log lines.

    .venv/bin/python benchmarks/serve_bench.py RUN --mixed --concurrency 8 --seconds 10
    .venv/bin/python benchmarks/serve_bench.py tiny --mixed     # no trained run: an untrained tiny model

Cold starts (`--cold N`): N fresh `doodle serve MODEL` processes (ONNX Runtime), one after the
other; for each, the seconds from launch until /healthz answers 200 (the server warms every
compiled path first), then the latency of its very first guess for each kind of input (raw with
timing, the same without `t`, Google's simplified), the kinds taking turns to go first, and the
median of the next ten of each kind, so the first guess can be set beside the later ones.

    .venv/bin/python benchmarks/serve_bench.py real/export --cold 6 --data ../shared/quickdraw/raw

`tiny` builds a resnet10t at 32 px with its initial weights on the spot (the server and its
preprocessing are real; only the guesses mean nothing). A trained run comes from `doodle train
--config configs/cpu.yaml --data STORE --out runs/cpu` (README, Training). Without the raw data
folder the valid drawings are seeded random scribbles.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
TARGET_P50_MS, TARGET_P99_MS, TARGET_CONCURRENCY = 10.0, 30.0, 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_bodies(data: Path, classes: list[str], n: int) -> list[bytes]:
    """Request bodies of real raw drawings, round-robin over the model's class files (seeded random
    scribbles when `data` holds none)."""
    files = [data / f"{c}.ndjson" for c in classes if (data / f"{c}.ndjson").is_file()] or sorted(data.glob("*.ndjson"))
    if not files:
        return scribbles(n)
    per = [[orjson.loads(line) for line in f.read_bytes().splitlines() if line.strip()] for f in files]
    out = []
    for group in itertools.zip_longest(*per):
        out.extend(orjson.dumps({"strokes": r["drawing"], "top_k": 3}) for r in group if r is not None)
    return out[:n]


def scribbles(n: int, seed: int = 0) -> list[bytes]:
    """Bodies of `n` seeded random drawings (1-6 timed strokes of random walks on a 600 px canvas)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        strokes = []
        for _ in range(int(rng.integers(1, 7))):
            m = int(rng.integers(2, 60))
            xy = np.clip(np.cumsum(rng.normal(0, 12, (m, 2)), axis=0) + rng.uniform(100, 500, 2), 0, 600)
            t = np.cumsum(rng.integers(5, 30, m))
            strokes.append([xy[:, 0].round().tolist(), xy[:, 1].round().tolist(), t.tolist()])
        out.append(orjson.dumps({"strokes": strokes, "top_k": 3}))
    return out


def start_server(model: str, backend: str, port: int, extra: list[str], log=None) -> subprocess.Popen:
    """The server as a separate process, once its /healthz answers; its stderr to `log` (a file)."""
    if backend == "floor":
        cmd = [sys.executable, __file__, model, "--floor-server", str(port)]
    else:
        cmd = [sys.executable, "-m", "doodle", "-q", "serve", model, "--backend", backend, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log or subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited" + (f": {proc.stderr.read().decode()[-2000:]}" if log is None else ""))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start within 180 s")


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> int:
    writer.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    payload = await reader.readexactly(length)
    status = int(status_line.split()[1])
    if status != 200 or b'"predictions"' not in payload:
        raise RuntimeError(f"bad answer {status}: {payload[:200]!r}")
    return status


async def load(port: int, bodies: list[bytes], concurrency: int, seconds: float) -> tuple[list[float], float]:
    """Latencies (s) of every request and the wall time, with `concurrency` requests in flight."""
    latencies: list[float] = []
    counter = itertools.count()
    stop = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                body = bodies[next(counter) % len(bodies)]
                t = time.perf_counter()
                await post(reader, writer, body)
                latencies.append(time.perf_counter() - t)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start


def serve_floor(model: str, port: int) -> None:
    """`doodle serve`'s app on `port` whose engine preprocesses each batch exactly as served, then
    answers constant log-probabilities instead of running the model."""
    import uvicorn

    from doodle.serve.app import create_app
    from doodle.serve.inference import Engine, load_engine
    from doodle.serve.server import uvicorn_config
    from doodle.serve.settings import ServeSettings

    real = load_engine(model, "onnx")

    class NoModel(Engine):
        backend = "floor"

        def forward(self, batch):
            rows = len(next(iter(batch.values())))
            return np.full((rows, len(self.classes)), -np.log(len(self.classes)), np.float32)

    engine = NoModel(real.preprocessor, real.classes, real.description)
    settings = ServeSettings(model=model, port=port)
    app = create_app(settings, engine=engine)
    uvicorn.Server(uvicorn_config(app, settings, log_level="warning", access_log=False)).run()


# -- mixed load: valid, bad and slow requests together ----------------------------------------------

VALID_SHARE, BAD_SHARE = 0.7, 0.2
"""Shares of the mixed load; the rest are drawings slow to simplify."""
SMALL = orjson.dumps({"strokes": [[[10, 60, 110], [20, 80, 20], [0, 40, 80]]], "top_k": 3})


def zigzag(n: int, step: float, height: float = 1000.0) -> list:
    """One stroke of n points whose x advances by `step` while y alternates 0 / height."""
    return [[[round(i * step, 6) for i in range(n)], [0.0 if i % 2 == 0 else height for i in range(n)]]]


def heaviest_zigzag(max_work: int, max_points: int, step: float = 1.0) -> list:
    """The longest `zigzag(n, step)` the server's simplification limits still let through."""
    from doodle.data.simplify import SimplifyLimitError, simplify_strokes

    def fits(n: int) -> bool:
        try:
            simplify_strokes([np.array(zigzag(n, step)[0]).T], max_points=max_points, max_work=max_work)
        except SimplifyLimitError:
            return False
        return True

    lo, hi = 2, 20_000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return zigzag(lo, step)


def bad_payloads() -> list[tuple[str, bytes, str]]:
    """(name, body, content type) of requests the server must refuse with a 4xx."""
    j = "application/json"
    deep = b'{"strokes": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    return [
        ("malformed JSON", b'{"strokes": [[[1, 2], [3, 4]]', j), ("not JSON", b"\xff\xfe\x00garbage", j),
        ("nested 50,000 deep", deep, j),
        ("a 5,000-digit number", b'{"strokes": [[[' + b"9" * 5000 + b", 1], [2, 3]]]}", j),
        ("NaN", b'{"strokes": [[[NaN, 1], [2, 3]]]}', j),
        ("a string coordinate", b'{"strokes": [[["1", 2], [3, 4]]]}', j),
        ("ragged x/y", b'{"strokes": [[[1, 2], [3]]]}', j), ("no strokes", b'{"strokes": []}', j),
        ("mixed timed and untimed", b'{"strokes": [[[1, 2], [3, 4], [0, 9]], [[1], [2]]]}', j),
        ("top_k 0", SMALL.replace(b'"top_k":3', b'"top_k":0'), j),
        ("top_k a string", SMALL.replace(b'"top_k":3', b'"top_k":"3"'), j),
        ("an extra field", SMALL[:-1] + b',"colour":"red"}', j), ("wrong content type", SMALL, "text/plain"),
        ("an empty body", b"", j), ("absurd magnitude", b'{"strokes": [[[1e300, 2], [3, 4]]]}', j),
        ("too many points", orjson.dumps({"strokes": [[list(range(20_001)), list(range(20_001))]]}), j),
        ("a body over the limit", b"[" + b"1," * 600_000, j),
    ]


def slow_payloads() -> list[tuple[str, bytes, str]]:
    """Drawings slow to simplify: the costliest within the default limits, and two far over them."""
    from doodle.serve.settings import ServeSettings

    limits, j = ServeSettings(), "application/json"
    worst = heaviest_zigzag(limits.max_simplify_work, limits.max_simplify_points)
    return [("costliest zigzag within the limits", orjson.dumps({"strokes": worst}), j),
            ("zigzag of 255,002 resampled points", orjson.dumps({"strokes": zigzag(20_000, 1.0)}), j),
            ("zigzag of 5.1 million resampled points", orjson.dumps({"strokes": zigzag(20_000, 0.01)}), j)]


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes,
                   content_type: str) -> tuple[int, bool]:
    """POST one body; (status, whether the answer closes the connection). ConnectionError when the
    server closed the connection without an answer."""
    writer.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                 % (content_type.encode(), len(body), body))
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed without an answer")
    length, closes = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        closes = closes or (name.lower() == b"connection" and b"close" in value.lower())
    await reader.readexactly(length)
    return int(status_line.split()[1]), closes


class Tally:
    """What the mixed load saw."""

    def __init__(self):
        self.statuses: dict[int, int] = {}
        self.latency: dict[str, list[float]] = {"valid": [], "bad": [], "slow": []}
        self.dropped = 0
        self.reopened = 0

    def add(self, kind: str, status: int, seconds: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latency[kind].append(seconds)


async def mixed_load(port: int, valid: list[bytes], concurrency: int, seconds: float, seed: int) -> Tally:
    """`concurrency` keep-alive clients sending valid, bad and slow requests in a seeded order."""
    bad, slow, tally = bad_payloads(), slow_payloads(), Tally()
    stop = time.perf_counter() + seconds

    def pick(rng: np.random.Generator) -> tuple[str, bytes, str]:
        roll = rng.random()
        if roll < VALID_SHARE:
            return "valid", valid[int(rng.integers(len(valid)))], "application/json"
        group, kind = (bad, "bad") if roll < VALID_SHARE + BAD_SHARE else (slow, "slow")
        _, body, content_type = group[int(rng.integers(len(group)))]
        return kind, body, content_type

    async def client(index: int) -> None:
        rng, conn = np.random.default_rng(seed + index), None
        while time.perf_counter() < stop:
            kind, body, content_type = pick(rng)
            conn = conn or await asyncio.open_connection("127.0.0.1", port)
            start = time.perf_counter()
            try:
                status, closes = await exchange(*conn, body, content_type)
            except (ConnectionError, asyncio.IncompleteReadError):
                tally.dropped += 1
                conn[1].close()
                conn = None
                continue
            tally.add(kind, status, time.perf_counter() - start)
            if closes:
                tally.reopened += 1
                conn[1].close()
                conn = None
        if conn:
            conn[1].close()

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return tally


def report_mixed(tally: Tally, concurrency: int, wall: float) -> None:
    total = sum(tally.statuses.values())
    shown = ", ".join(f"{code}: {n}" for code, n in sorted(tally.statuses.items()))
    print(f"concurrency {concurrency}: {total} requests in {wall:.1f} s ({total / wall:.1f}/s); statuses {shown}")
    print(f"  5xx: {sum(n for code, n in tally.statuses.items() if code >= 500)}; dropped connections: "
          f"{tally.dropped}; reopened connections: {tally.reopened} (after answers saying connection: close)")
    for kind in ("valid", "bad", "slow"):
        ms = np.array(tally.latency[kind]) * 1000
        if len(ms):
            p50, p99 = np.percentile(ms, [50, 99])
            print(f"  {kind:5} requests: {len(ms):6d}  p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  max {ms.max():8.2f} ms")
    sys.stdout.flush()


def tiny_run(out: Path) -> Path:
    """out/best.pt: a resnet10t at 32 px (Google's simplification on) with its initial weights."""
    from dataclasses import asdict

    import torch

    from doodle.models import ModelConfig, create_model
    from doodle.preprocess import InputConfig
    from doodle.runs.checkpoint import atomic_save, make_checkpoint

    inputs, config = InputConfig(encoding="order-speed-accel", size=32, simplify=True), ModelConfig("cnn", "resnet10t")
    torch.manual_seed(0)
    model = create_model(config, inputs, 4).eval()
    atomic_save(make_checkpoint(model_config=asdict(config), input_config=asdict(inputs), input_kind="image",
                                classes=["camera", "eye", "headphones", "television"], config={},
                                model_state=model.state_dict()), out / "best.pt")
    return out


def run_mixed(args: argparse.Namespace) -> None:
    """The mixed load against `doodle serve` (ONNX Runtime) at each concurrency."""
    from doodle.runs.checkpoint import read_checkpoint, resolve_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="doodle-bench-mixed-"))
    try:
        run = str(tiny_run(tmp)) if args.run == "tiny" else args.run
        valid = load_bodies(args.data, read_checkpoint(resolve_checkpoint(run))["classes"], args.drawings)
        print(f"mixed load on {'an untrained tiny model' if args.run == 'tiny' else run}: {len(valid)} valid drawings "
              f"({'raw from ' + str(args.data) if args.data.is_dir() else 'random scribbles'}), "
              f"{len(bad_payloads())} kinds of bad payload, {len(slow_payloads())} slow drawings; shares "
              f"{VALID_SHARE:.0%} / {BAD_SHARE:.0%} / {1 - VALID_SHARE - BAD_SHARE:.0%}; {os.cpu_count()} CPU cores; "
              f"{args.seconds:g} s per concurrency", flush=True)
        port = free_port()
        with open(tmp / "server.log", "wb") as log:
            proc = start_server(run, "onnx", port, args.server_args.split(), log=log)
            try:
                asyncio.run(load(port, valid, 2, 1.0))  # warm-up: JIT, allocator, ORT arenas
                for conc in args.concurrency:
                    start = time.perf_counter()
                    tally = asyncio.run(mixed_load(port, valid, conc, args.seconds, seed=conc))
                    report_mixed(tally, conc, time.perf_counter() - start)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        lines = (tmp / "server.log").read_text(errors="replace").splitlines()
        print(f"server log: {len(lines)} lines, {sum('Traceback' in line for line in lines)} tracebacks")
        for line in lines[:5]:
            print(f"  {line[:200]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


KINDS = ("raw", "untimed", "simplified")


def kind_bodies(data: Path, classes: list[str], n: int) -> dict[str, list[bytes]]:
    """Bodies of the three kinds of input a client may post: raw drawings with timing, the same
    without `t`, and Google's simplified drawings (from the `simplified` folder beside `data`)."""
    raw = load_bodies(data, classes, n)
    untimed = [orjson.dumps({"strokes": [s[:2] for s in orjson.loads(b)["strokes"]], "top_k": 3}) for b in raw]
    simplified = load_bodies(data.parent / "simplified", classes, n)
    return {"raw": raw, "untimed": untimed, "simplified": simplified}


def model_classes(model: str) -> list[str]:
    """The classes of an export folder (its preprocessing.json), a run folder or a checkpoint."""
    spec = Path(model) / "preprocessing.json"
    if spec.is_file():
        return orjson.loads(spec.read_bytes())["classes"]
    from doodle.runs.checkpoint import read_checkpoint, resolve_checkpoint

    return read_checkpoint(resolve_checkpoint(model))["classes"]


def timed_post(port: int, body: bytes) -> float:
    """Seconds for one POST /predict on a fresh connection (checked to be a 200)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body,
                                 headers={"content-type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()
        assert resp.status == 200
    return time.perf_counter() - start


def cold_start(model: str, bodies: dict[str, list[bytes]], starts: int, extra: list[str]) -> None:
    """`starts` fresh `doodle serve` processes: the seconds until /healthz says ready, the first
    guess of each kind of input (the kinds in a rotating order, so each goes first once in three),
    and the median of the next ten guesses of each kind."""
    ready, first, later = [], {k: [] for k in KINDS}, {k: [] for k in KINDS}
    for i in range(starts):
        port, order = free_port(), KINDS[i % 3:] + KINDS[:i % 3]
        begun = time.perf_counter()
        proc = start_server(model, "onnx", port, extra)
        ready.append(time.perf_counter() - begun)
        try:
            for kind in order:
                first[kind].append(timed_post(port, bodies[kind][0]) * 1000)
            for kind in order:
                later[kind] += [timed_post(port, b) * 1000 for b in bodies[kind][1:11]]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"cold starts of `doodle serve {model}`: {starts}; ready after median {np.median(ready):.1f} s "
          f"(max {max(ready):.1f} s)")
    print(f"{'input':11} {'first p50 ms':>12} {'first max ms':>12} {'later p50 ms':>12}")
    for kind in KINDS:
        print(f"{kind:11} {np.median(first[kind]):12.1f} {max(first[kind]):12.1f} {np.median(later[kind]):12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder or checkpoint (the configs/cpu.yaml model; with --cold also an "
                        "export folder); with --mixed, `tiny` "
                        "for an untrained tiny model made on the spot")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "quickdraw" / "raw",
                        help="folder of raw ndjson files (default ../shared/quickdraw/raw)")
    parser.add_argument("--backends", nargs="+", default=["floor", "onnx", "onnx-int8", "torch"],
                        choices=["floor", "onnx", "onnx-int8", "torch"],
                        help="floor: the app with a model that answers at once (HTTP + preprocessing alone)")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per concurrency")
    parser.add_argument("--drawings", type=int, default=400, help="distinct drawings cycled through")
    parser.add_argument("--server-args", default="", help="extra `doodle serve` flags, e.g. '--max-batch 1'")
    parser.add_argument("--val", type=Path, help="STORE/val of the run's store: onnx-int8 calibrates on STORE/train "
                        "and prints float32 and int8 MAP@3 on this split (needed for onnx-int8)")
    parser.add_argument("--mixed", action="store_true",
                        help="mixed load: valid, bad and slow requests together (see the module docstring)")
    parser.add_argument("--cold", type=int, metavar="N", default=0,
                        help="instead: N fresh servers, the time to ready and each kind of input's first guess")
    parser.add_argument("--floor-server", type=int, metavar="PORT", help=argparse.SUPPRESS)  # internal: run `floor`
    args = parser.parse_args()
    if args.floor_server is not None:
        serve_floor(args.run, args.floor_server)
        return
    if args.cold:
        bodies = kind_bodies(args.data, model_classes(args.run), args.drawings)
        cold_start(args.run, bodies, args.cold, args.server_args.split())
        return
    if args.mixed:
        run_mixed(args)
        return
    if "onnx-int8" in args.backends and args.val is None:
        parser.error("onnx-int8 needs --val STORE/val (calibrated on STORE/train, scored on the split)")

    from doodle.runs.checkpoint import read_checkpoint, resolve_checkpoint

    classes = read_checkpoint(resolve_checkpoint(args.run))["classes"]
    bodies = load_bodies(args.data, classes, args.drawings)
    print(f"{len(bodies)} real raw drawings ({np.mean([len(b) for b in bodies]) / 1024:.1f} KiB JSON each) "
          f"from {args.data}; {os.cpu_count()} CPU cores; {args.seconds:g} s per point; server flags: "
          f"{args.server_args or '(defaults)'}")
    print(f"{'backend':8} {'conc':>4} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    results = {}
    for backend in args.backends:
        port = free_port()
        model = args.run
        if backend == "onnx-int8":
            from doodle.infer.export import export_onnx

            model = tempfile.mkdtemp(prefix="doodle-bench-int8-")
            # calibrated on the store's train split, scored by the export on its val split
            result = export_onnx(args.run, model, check_sources=[args.data], quantize="int8",
                                 calibration_store=args.val.parent, score_n=0)
            print(f"int8 export: {result.agreement}\n{result.quantization}", flush=True)
        proc = start_server(model, backend.split("-")[0], port, args.server_args.split())
        try:
            asyncio.run(load(port, bodies, 4, 2.0))  # warm-up: JIT, allocator, ORT arenas
            for conc in args.concurrency:
                lat, wall = asyncio.run(load(port, bodies, conc, args.seconds))
                ms = np.array(lat) * 1000
                p50, p90, p99 = np.percentile(ms, [50, 90, 99])
                results[backend, conc] = (p50, p99)
                print(f"{backend:8} {conc:4d} {len(ms):8d} {len(ms) / wall:8.1f} {p50:8.2f} {p90:8.2f} {p99:8.2f}",
                      flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if model != args.run:
                shutil.rmtree(model, ignore_errors=True)
    for backend in ("onnx", "onnx-int8"):
        if (backend, TARGET_CONCURRENCY) in results:
            p50, p99 = results[backend, TARGET_CONCURRENCY]
            ok = p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS
            print(f"goal ({backend}, concurrency {TARGET_CONCURRENCY}): p50 {p50:.2f} ms <= {TARGET_P50_MS:g} and "
                  f"p99 {p99:.2f} ms <= {TARGET_P99_MS:g}: {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
