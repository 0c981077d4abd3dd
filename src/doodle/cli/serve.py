"""`doodle serve`: the live app (drawing page, game, HTTP API) for an export or a training run."""

from __future__ import annotations

import argparse

from doodle.cli.options import existing_path

EXAMPLES = """\
examples:
  doodle serve runs/resnet18                    # exports to ONNX at start-up, http://127.0.0.1:8000/
  doodle serve export/resnet18 --port 8080      # a `doodle export` folder
  doodle serve runs/resnet18 --backend torch    # eager PyTorch instead of ONNX Runtime

Open the printed URL to draw (live top-3 guesses, undo, clear, a 20-second game). The API:
POST /predict {"strokes": [[[x...], [y...], [t...]], ...], "top_k": 3}, GET /classes, GET /healthz
(503 with "ready": false while the server warms up, a few seconds after start), docs at /docs.
Every flag can also come from the environment: DOODLE_HOST, DOODLE_PORT, DOODLE_BACKEND,
DOODLE_THREADS, DOODLE_WORKERS, DOODLE_MAX_BATCH; and the limits, shown by /healthz:
DOODLE_MAX_BODY_BYTES, DOODLE_MAX_STROKES, DOODLE_MAX_POINTS, DOODLE_MAX_TOP_K, DOODLE_MAX_SIMPLIFY_POINTS,
DOODLE_MAX_SIMPLIFY_WORK, DOODLE_HEADER_TIMEOUT, DOODLE_BODY_TIMEOUT (seconds), DOODLE_MAX_HEADER_BYTES,
DOODLE_MAX_CONNECTIONS.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve the drawing app and the HTTP API for a model",
        description="Serve a model (an ONNX export folder, a run folder or a checkpoint) over HTTP with "
        "FastAPI + uvicorn: a drawing page with live guesses and a game mode, and a JSON API.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="RUN_OR_EXPORT", type=existing_path,
                   help="export folder, run folder or checkpoint file")
    p.add_argument("--host", default=None, help="interface (default 127.0.0.1, DOODLE_HOST)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000, DOODLE_PORT)")
    p.add_argument("--checkpoint", default=None, metavar="best|last|ema|PATH",
                   help="checkpoint of a run: best (default), last, averaged, ema (the EMA weights at the end "
                   "of training), or a file")
    p.add_argument("--backend", choices=["onnx", "torch"], default=None, help="inference backend (default onnx)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per inference call (default: cores)")
    p.add_argument("--workers", type=int, default=None, help="inference threads, each micro-batching (default 1)")
    p.add_argument("--max-batch", type=int, default=None, help="most queued requests batched into one call (8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from doodle.serve.server import serve_model
    from doodle.serve.settings import ServeSettings

    settings = ServeSettings.from_env(model=args.model, host=args.host, port=args.port, checkpoint=args.checkpoint,
                                      backend=args.backend, threads=args.threads, workers=args.workers,
                                      max_batch=args.max_batch)

    def announce(engine) -> None:
        print(f"doodle: serving {settings.model} ({engine.backend}, {len(engine.classes)} classes) at "
              f"http://{settings.host}:{settings.port}/  (API docs: /docs; Ctrl+C stops)", flush=True)

    serve_model(settings, "warning" if logging.getLogger().level >= logging.WARNING else "info", announce)
    return 0
