"""Load benchmark of `doodle serve` on 127.0.0.1: latency p50/p99 and requests/s at several
concurrencies, ONNX Runtime against eager PyTorch, in one run.

    .venv/bin/python benchmarks/serve_bench.py /work/runs/cpu-q15-v3 --data ../shared/quickdraw/raw

Backends: onnx (ONNX Runtime, float32, what `doodle serve RUN` runs), onnx-int8 (the model exported
with `doodle export --quantize int8`, calibrated on the same real drawings) and torch (eager
PyTorch), plus `floor`: the same app, validation and preprocessing with a model that answers at
once (constant guesses), which measures what HTTP, the client and preprocessing cost on this
machine before any model runs. For each backend the script starts `doodle serve MODEL --backend B`
itself (a separate process, as in production), waits for /healthz, warms up, then for each
concurrency C keeps C requests in flight for `--seconds`, each POSTing a real raw drawing (strokes
with timing, as the drawing page sends them) and checking the answer is a 200 with guesses. It
prints one row per backend and concurrency and the target check (p50 <= 10 ms and p99 <= 30 ms at
concurrency 8, ONNX Runtime).

The client is a minimal HTTP/1.1 keep-alive client on asyncio streams, one connection per
concurrent request, because on a 2-core machine a heavier client (httpx) takes much of the CPU the
server needs and the numbers would measure the client.
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
    """Request bodies of real raw drawings, round-robin over the model's class files."""
    files = [data / f"{c}.ndjson" for c in classes if (data / f"{c}.ndjson").is_file()] or sorted(data.glob("*.ndjson"))
    per = [[orjson.loads(line) for line in f.read_bytes().splitlines() if line.strip()] for f in files]
    out = []
    for group in itertools.zip_longest(*per):
        out.extend(orjson.dumps({"strokes": r["drawing"], "top_k": 3}) for r in group if r is not None)
    return out[:n]


def start_server(model: str, backend: str, port: int, extra: list[str]) -> subprocess.Popen:
    if backend == "floor":
        cmd = [sys.executable, __file__, model, "--floor-server", str(port)]
    else:
        cmd = [sys.executable, "-m", "doodle", "-q", "serve", model, "--backend", backend, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
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


def export_map3(export_dir: str, split: Path, batch: int = 64) -> tuple[float, int]:
    """Val MAP@3 (and drawing count) of an ONNX export on a store split, preprocessed as served."""
    from doodle.data.formats import read
    from doodle.export import OUTPUT_NAME, load_export, ort_feed
    from doodle.metrics import map_at_3

    ex = load_export(export_dir, os.cpu_count() or 1)
    index = {c: i for i, c in enumerate(ex.classes)}
    drawings = [d for d in read(split) if d.word in index]
    scores = [
        ex.session.run([OUTPUT_NAME], ort_feed(ex.session, ex.preprocessor(drawings[k : k + batch])))[0]
        for k in range(0, len(drawings), batch)
    ]
    return map_at_3(np.concatenate(scores), np.array([index[d.word] for d in drawings])), len(drawings)


def serve_floor(model: str, port: int) -> None:
    """`doodle serve`'s app on `port` whose engine preprocesses each batch exactly as served, then
    answers constant log-probabilities instead of running the model."""
    import uvicorn

    from doodle.serve.app import create_app
    from doodle.serve.inference import Engine, load_engine
    from doodle.serve.settings import ServeSettings

    real = load_engine(model, "onnx")

    class NoModel(Engine):
        backend = "floor"

        def log_probs(self, drawings):
            self.prepare(drawings)
            return np.full((len(drawings), len(self.classes)), -np.log(len(self.classes)), np.float32)

    engine = NoModel(real.preprocessor, real.classes, real.description)
    app = create_app(ServeSettings(model=model), engine=engine)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder or checkpoint (the configs/cpu.yaml model)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "quickdraw" / "raw",
                        help="folder of raw ndjson files (default ../shared/quickdraw/raw)")
    parser.add_argument("--backends", nargs="+", default=["floor", "onnx", "onnx-int8", "torch"],
                        choices=["floor", "onnx", "onnx-int8", "torch"],
                        help="floor: the app with a model that answers at once (HTTP + preprocessing alone)")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per concurrency")
    parser.add_argument("--drawings", type=int, default=400, help="distinct drawings cycled through")
    parser.add_argument("--server-args", default="", help="extra `doodle serve` flags, e.g. '--max-batch 1'")
    parser.add_argument("--val", type=Path, help="a store split (e.g. STORE/val): print float32 and int8 MAP@3 on it")
    parser.add_argument("--floor-server", type=int, metavar="PORT", help=argparse.SUPPRESS)  # internal: run `floor`
    args = parser.parse_args()
    if args.floor_server is not None:
        serve_floor(args.run, args.floor_server)
        return

    from doodle.checkpoint import read_checkpoint, resolve_checkpoint

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
            from doodle.export import export_onnx

            model = tempfile.mkdtemp(prefix="doodle-bench-int8-")
            check = export_onnx(args.run, model, check_sources=[args.data], quantize="int8").agreement
            print(f"int8 export: {check}", flush=True)
            if args.val is not None:
                float_dir = tempfile.mkdtemp(prefix="doodle-bench-f32-")
                try:
                    export_onnx(args.run, float_dir, check=False)
                    f32, n = export_map3(float_dir, args.val)
                finally:
                    shutil.rmtree(float_dir, ignore_errors=True)
                i8, _ = export_map3(model, args.val)
                print(f"MAP@3 on {args.val} ({n} drawings): float32 {f32:.4f}, int8 {i8:.4f}", flush=True)
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
            print(f"target ({backend}, concurrency {TARGET_CONCURRENCY}): p50 {p50:.2f} ms <= {TARGET_P50_MS:g} and "
                  f"p99 {p99:.2f} ms <= {TARGET_P99_MS:g}: {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
