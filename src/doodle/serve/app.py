"""The FastAPI app: the model loaded once at start-up (lifespan), a thin layer over `inference`.

    GET  /          the drawing page (live guesses, undo/clear, game mode)
    POST /predict   {"strokes": [[[x...], [y...], [t...]], ...], "top_k": 3} -> {"predictions": [...]}
    GET  /classes   the classes in label order
    GET  /healthz   liveness, readiness (503 until warmed up), the model served, the limits
    GET  /docs      OpenAPI docs (/openapi.json; Swagger UI served from here, `doodle.serve.docs`)
    GET  /favicon.ico

Bad input never reaches a 5xx: bodies over `max_body_bytes` are refused with 413 before parsing
(by Content-Length, or by reading a chunked body up to the limit before the app sees it), wrong types, shapes and
non-finite numbers get 422 from the schema, and everything the schema cannot express (ragged x/y/t
lists, mixed timed and untimed strokes, too many strokes or points, absurd magnitudes, top_k over
the limit) gets 422 from the inference layer, always as {"detail": "<one sentence>", "errors": [...]}.
An empty drawing (no strokes) is a 422 too: there is nothing to guess. So is JSON nested deeper
than the parser allows or an integer of more digits than Python converts, and a drawing whose
simplification would take more than the settings' work limits (`max_simplify_points`, checked in
O(n) before any work, and `max_simplify_work`). An exception nobody expected becomes a JSON 500
and one log line (`Guard`), on a connection that stays open; no answer names a file on the server.
Slow clients are bounded by the HTTP protocol of `doodle.serve.server` (header and body deadlines,
a connection limit).

Inference runs on `workers` threads (default one, with an ONNX Runtime intra-op thread per core)
that micro-batch the requests waiting (`inference.Batcher`): the event loop keeps accepting
connections while the cores run the model, and a busy server spends less time per drawing. Drawings
costlier to simplify than any real one are simplified on a thread of their own first, so they
delay each other, not the others.

At start-up the server warms up in the background (`Batcher.warm`: every numba kernel and the model
at every batch size run once, seconds when the kernels are compiled or loaded); /healthz answers
503 with `ready: false` until then, and a /predict sent meanwhile waits for it, so the first guess a
user sees is as fast as later ones.
"""

from __future__ import annotations

import asyncio
import email.message
import gc
import json
import logging
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from doodle.data.drawing import Limits
from doodle.serve.docs import add_docs, docs_urls, offline_assets
from doodle.serve.inference import Batcher, Engine, InputError, SimplifyBudget, load_engine, to_drawing
from doodle.serve.schemas import ClassesResponse, ErrorResponse, Health, PredictRequest, PredictResponse
from doodle.serve.settings import ServeSettings
from doodle.version import __version__

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
MAX_LISTED_ERRORS = 5
ERRORS = {413: {"model": ErrorResponse, "description": "body too large"},
          422: {"model": ErrorResponse, "description": "malformed or out-of-limit drawing"},
          500: {"model": ErrorResponse, "description": "the server failed (logged)"}}
INTERNAL_ERROR = "the server failed to answer this request (the error is logged)"
MAX_LOGGED_CHARS = 300


def one_line(err: BaseException) -> str:
    """`err` as one short log line: its type and message, newlines folded."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:MAX_LOGGED_CHARS]}" if text else type(err).__name__


class Guard:
    """ASGI middleware, the outermost of the app's own: an exception escaping the app becomes a
    JSON 500 and one log line, a client gone before its request was read one log line, never a
    traceback. Starlette's handler for Exception answers 500 but re-raises, and uvicorn then logs
    the traceback and drops the connection: here it stays open for the client's next request."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except ClientDisconnect:
            log.info("%s %s: the client went away before sending the whole request", scope["method"], scope["path"])
        except Exception as err:  # noqa: BLE001 - the point: logged in one line, answered in JSON
            log.error("%s %s failed: %s", scope["method"], scope["path"], one_line(err))
            if not started:
                await _send_error(send, 500, INTERNAL_ERROR, close=False)


class BodyLimit:
    """ASGI middleware: 413 for request bodies over `limit` bytes, before anything parses them.

    The connection stays open when the rest of the body is cheap to skip (the HTTP parser drops a
    body nobody reads, within the protocol's body deadline): announced up to `DISCARD_FACTOR` times
    the limit, or chunked. A client that sends its whole body before reading the answer (most do)
    then reads the 413 instead of a reset connection, and can go on. Beyond that it is closed.
    """

    DISCARD_FACTOR = 4

    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                announced = int(length)
            except ValueError:
                await _send_error(send, 400, f"Content-Length {length.decode('latin-1')!r} is not a number")
                return
            if announced > self.limit:
                await _send_error(send, 413, f"body of {announced} bytes is over the limit of {self.limit} bytes",
                                  close=announced > self.DISCARD_FACTOR * self.limit)
                return
            await self.app(scope, receive, send)  # the server enforces the announced length
            return
        # no Content-Length (chunked): read the body here, up to the limit, and replay it
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                await _send_error(send, 413, f"body is over the limit of {self.limit} bytes", close=False)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_error(send: Any, status: int, detail: str, close: bool = True) -> None:
    """A JSON error answer; `close` for a request whose body is left unread."""
    body = json.dumps({"detail": detail, "errors": []}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"connection", b"close")] if close else headers})
    await send({"type": "http.response.body", "body": body})


def _where(loc: tuple) -> str:
    """("body", "strokes", 0, 1, 2) -> "strokes[0][1][2]"."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_message(errors: list[dict]) -> tuple[str, list[str]]:
    """A readable sentence and one line per problem from pydantic/FastAPI errors."""
    lines = []
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            lines.append(f"the body is not valid JSON{': ' + str(reason) if reason else ''}")
        else:
            lines.append(f"{_where(tuple(err.get('loc', ())))}: {err.get('msg', 'invalid')}")
    shown = lines[:MAX_LISTED_ERRORS]
    more = f" (and {len(lines) - len(shown)} more)" if len(lines) > len(shown) else ""
    return "invalid request: " + "; ".join(shown) + more, lines


PREDICT_BODY_DOC = {"required": True, "content": {"application/json": {"schema": PredictRequest.model_json_schema()}}}
"""The /predict request body in the OpenAPI docs (the route parses the body itself, below)."""


def parse_predict_body(raw: bytes, content_type: str | None) -> PredictRequest:
    """The /predict body, validated; RequestValidationError (422) otherwise.

    Valid JSON bodies take pydantic's one-pass JSON validation (about 4x faster than FastAPI's
    `json.loads` then validation, a tenth of a request's cost on 2 cores); anything it refuses is
    parsed again the way FastAPI parses a body parameter (content type, empty body, JSON errors),
    so error messages are exactly those of a `body: PredictRequest` parameter.
    """
    is_json = True
    if content_type and content_type != "application/json":  # the common case needs no header parsing
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        is_json = message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))
    if raw and is_json:
        try:
            return PredictRequest.model_validate_json(raw)
        except ValidationError:
            pass  # the slower path below names the problem as FastAPI would
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    body = _loads(raw) if is_json else raw
    try:
        return PredictRequest.model_validate(body)
    except RecursionError:
        raise _json_invalid(0, "it is nested too deeply") from None
    except ValidationError as err:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in err.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _loads(raw: bytes) -> Any:
    """`json.loads` as FastAPI parses a body, its every failure a RequestValidationError: besides
    syntax errors, nesting deeper than the recursion limit and integers over Python's 4,300 digits."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise _json_invalid(err.pos, err.msg) from None
    except UnicodeDecodeError as err:
        raise _json_invalid(0, str(err)) from None
    except RecursionError:
        raise _json_invalid(0, "it is nested too deeply") from None
    except ValueError:  # int() of more digits than Python converts
        raise _json_invalid(0, f"a number has more than {sys.get_int_max_str_digits()} digits") from None


def _json_invalid(pos: int, reason: str) -> RequestValidationError:
    return RequestValidationError([{"type": "json_invalid", "loc": ("body", pos), "msg": "JSON decode error",
                                    "input": {}, "ctx": {"error": reason}}])


def _freeze_garbage() -> None:
    """Move every object alive now out of the garbage collector's sight: the ~60,000 objects the
    model, its libraries and the compiled kernels leave would make every full collection a ~40 ms
    pause of the event loop; frozen, a collection sees only requests' objects."""
    gc.collect()
    gc.freeze()


async def _warm_up(batcher: Batcher, ready: asyncio.Event) -> None:
    """Run every compiled path once (`Batcher.warm`), then say ready. A warm-up that fails is
    logged in one line and the server serves all the same (the requests then show the fault)."""
    started = time.perf_counter()
    try:
        await anyio.to_thread.run_sync(batcher.warm)
        _freeze_garbage()  # what compiling the kernels left behind
        log.info("warmed up in %.1f s: ready", time.perf_counter() - started)
    except Exception as err:  # noqa: BLE001 - the point: one line, and the server still answers
        log.error("the warm-up failed: %s", one_line(err))
    finally:
        ready.set()


def create_app(settings: ServeSettings | None = None, engine: Engine | None = None) -> FastAPI:
    """The app serving `settings.model` (loaded at start-up), or an already loaded `engine`."""
    settings = settings or ServeSettings.from_env()
    limits = Limits(max_strokes=settings.max_strokes, max_points=settings.max_points)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        own = engine is None
        app.state.engine = engine or await anyio.to_thread.run_sync(
            lambda: load_engine(settings.model, settings.backend, settings.checkpoint, settings.inference_threads))
        budget = SimplifyBudget(max_points=settings.max_simplify_points, max_work=settings.max_simplify_work)
        app.state.batcher = Batcher(app.state.engine, settings.workers, settings.max_batch, budget)
        app.state.ready = asyncio.Event()
        _freeze_garbage()
        log.info("serving %s (%s, %d classes)", app.state.engine.description.get("name"), app.state.engine.backend,
                 len(app.state.engine.classes))
        # warmed in the background: the port answers at once, /healthz says 503 until ready
        warming = asyncio.get_running_loop().create_task(_warm_up(app.state.batcher, app.state.ready))
        try:
            yield
        finally:
            warming.cancel()
            gc.unfreeze()
            app.state.batcher.close()
            if own:
                app.state.engine.close()

    assets = offline_assets()
    app = FastAPI(title="doodle", version=__version__, lifespan=lifespan, **docs_urls(assets),
                  description="Guess Quick, Draw! doodles: POST strokes, get the top guesses.")
    add_docs(app, assets, favicon_url="/favicon.ico")
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Guard)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, lines = validation_message(list(exc.errors()))
        return JSONResponse({"detail": detail, "errors": lines}, status_code=422)

    @app.exception_handler(InputError)
    async def on_input(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": f"invalid request: {exc}", "errors": [str(exc)]}, status_code=422)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        # 404, 405, ...: the same body as every other error
        return JSONResponse({"detail": str(exc.detail), "errors": []}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS, summary="Guess a drawing",
              openapi_extra={"requestBody": PREDICT_BODY_DOC})
    async def predict(request: Request) -> Response:
        """The model's `top_k` guesses for one drawing, best first, after exactly the training
        preprocessing (Google's simplification when the model was trained with it, then the model's
        encoding and size)."""
        body = parse_predict_body(await request.body(), request.headers.get("content-type"))
        if not request.app.state.ready.is_set():
            await request.app.state.ready.wait()  # a request during the warm-up waits for it
        eng: Engine = request.app.state.engine
        if body.top_k > settings.max_top_k:
            shown = body.top_k if body.top_k < 10**9 else f"a {len(str(body.top_k))}-digit number"
            raise InputError(f"top_k is {shown}, the limit is {settings.max_top_k}")
        drawing = to_drawing(body.strokes, limits)
        k = min(body.top_k, len(eng.classes))
        guesses = await request.app.state.batcher.guesses(drawing, k)
        content = {"predictions": [{"word": g.word, "probability": g.probability} for g in guesses]}
        return Response(orjson.dumps(content), media_type="application/json")

    @app.get("/classes", response_model=ClassesResponse, summary="The classes the model knows")
    async def classes(request: Request) -> ClassesResponse:
        return ClassesResponse(classes=request.app.state.engine.classes)

    @app.get("/healthz", response_model=Health, summary="Liveness, readiness and the model served",
              responses={503: {"model": Health, "description": "still warming up (ready: false)"}})
    async def healthz(request: Request) -> Response:
        """200 once the server is warmed up (every compiled path run once, so the first guess is
        as fast as later ones), 503 with `ready: false` before."""
        eng: Engine = request.app.state.engine
        ready = request.app.state.ready.is_set()
        health = Health(status="ok" if ready else "warming", ready=ready, classes=len(eng.classes),
                        model=eng.description, limits=settings.limits)
        return Response(orjson.dumps(health.model_dump()), status_code=200 if ready else 503,
                        media_type="application/json")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    @app.get("/favicon.svg", include_in_schema=False)
    async def favicon() -> FileResponse:
        # an SVG under both names: browsers ask for /favicon.ico on their own, and take SVG there
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                            headers={"cache-control": "public, max-age=86400"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
