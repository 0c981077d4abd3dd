"""Fuzzing a real server: every kind of bad payload we could think of, then random mutations of a
valid one (hypothesis, derandomized), sent over reused keep-alive connections with valid requests
in between. No answer is ever a 5xx, every valid request gets its 200, and a connection is only
ever reopened after an answer that announced `connection: close`."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doodle.serve.settings import ServeSettings

from .serve_helpers import BRIEF_ZIGZAG, STEEP_ZIGZAG, VALID, KeepAlive, LiveServer, heaviest_zigzag

SEED = 20240601
LIMITS = ServeSettings()
GOOD = orjson.dumps(VALID)
STROKE = VALID["strokes"][1]


@dataclass
class Case:
    """One request: a body (or chunks), its content type and any other header, method and path."""

    name: str
    body: bytes | None = None
    content_type: str | None = "application/json"
    chunks: list[bytes] | None = None
    method: str = "POST"
    path: str = "/predict"
    headers: dict = field(default_factory=dict)
    refused_unread: bool = False
    """The server refuses it without reading it (a body far over the limit): its answer may be
    lost to a reset while the client is still sending; only the next request must not suffer."""

    def send(self, client: KeepAlive):
        headers = {"Content-Type": self.content_type} if self.content_type else {}
        return client.request(self.method, self.path, self.body, {**headers, **self.headers}, chunks=self.chunks)


def js(obj) -> bytes:
    """JSON as Python writes it (NaN and Infinity literals allowed)."""
    import json

    return json.dumps(obj, allow_nan=True).encode()


def with_top_k(value: bytes) -> bytes:
    return GOOD.replace(b'"top_k":3', b'"top_k":' + value)


def cases() -> list[Case]:
    """The bad (and odd) payloads, each named."""
    rng = random.Random(SEED)
    many_strokes = [[[i, i + 1], [0, 1]] for i in range(LIMITS.max_strokes + 1)]
    many_points = [[list(range(LIMITS.max_points + 1)), list(range(LIMITS.max_points + 1))]]
    noise = bytes(rng.randrange(256) for _ in range(2_000))
    out = [
        # malformed JSON
        Case("an open brace", b"{"), Case("unclosed lists", GOOD[:-5]), Case("a trailing comma", GOOD[:-1] + b",}"),
        Case("single quotes", GOOD.replace(b'"', b"'")), Case("a bare word", b"strokes"), Case("nul", b"nul"),
        Case("two documents", GOOD + GOOD), Case("a comment", b"/* hi */" + GOOD), Case("random bytes", noise),
        Case("a lone surrogate key", b'{"\\ud800": 1, "strokes": [[[1, 2], [3, 4]]]}'),
        Case("a NUL inside a string", b'{"strokes\\u0000": 1}'),
        # valid JSON, wrong shape or type
        Case("a list", js([VALID])), Case("null", b"null"), Case("a number", b"12"), Case("a string", b'"x"'),
        Case("strokes a string", js({"strokes": "abc"})), Case("strokes a number", js({"strokes": 5})),
        Case("strokes an object", js({"strokes": {"x": [1]}})), Case("strokes of dicts", js({"strokes": [{"x": 1}]})),
        Case("a string coordinate", js({"strokes": [[["1", 2], [3, 4]]]})),
        Case("a bool coordinate", js({"strokes": [[[True, 2], [3, 4]]]})),
        Case("a null coordinate", js({"strokes": [[[None, 2], [3, 4]]]})),
        Case("a list coordinate", js({"strokes": [[[[1], 2], [3, 4]]]})),
        Case("x only", js({"strokes": [[[1, 2]]]})), Case("four lists", js({"strokes": [[[1], [2], [3], [4]]]})),
        # deep nesting and huge numbers
        Case("nested 100,000 deep", b'{"strokes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        Case("nested 1,000 deep", b'{"strokes": ' + b"[" * 1_000 + b"]" * 1_000 + b"}"),
        Case("objects nested 10,000 deep", b'{"a": ' * 10_000 + b"1" + b"}" * 10_000),
        Case("a 5,000-digit coordinate", b'{"strokes": [[[' + b"9" * 5_000 + b", 1], [2, 3]]]}"),
        Case("a 5,000-digit top_k", with_top_k(b"9" * 5_000)), Case("a 4,000-digit top_k", with_top_k(b"9" * 4_000)),
        Case("a 300-digit coordinate", b'{"strokes": [[[' + b"9" * 300 + b", 1], [2, 3]]]}"),
        Case("1e999", b'{"strokes": [[[1e999, 1], [2, 3]]]}'), Case("-1e999", b'{"strokes": [[[1, 1], [2, -1e999]]]}'),
        # non-finite literals
        Case("NaN", js({"strokes": [[[float("nan"), 1], [2, 3]]]})),
        Case("Infinity", js({"strokes": [[[float("inf"), 1], [2, 3]]]})),
        Case("-Infinity time", js({"strokes": [[[1, 2], [3, 4], [0, float("-inf")]]]})),
        # shapes the schema cannot express
        Case("ragged x/y", js({"strokes": [[[1, 2], [3]]]})),
        Case("ragged t", js({"strokes": [[[1, 2], [3, 4], [0]]]})),
        Case("mixed timed and untimed", js({"strokes": [[[1, 2], [3, 4], [0, 9]], [[1], [2]]]})),
        Case("no strokes", js({"strokes": []})), Case("an empty stroke", js({"strokes": [[[], []]]})),
        Case("too many strokes", js({"strokes": many_strokes})), Case("too many points", js({"strokes": many_points})),
        Case("absurd magnitude", js({"strokes": [[[1e300, 2], [3, 4]]]})),
        Case("just over the magnitude", js({"strokes": [[[1e6 + 1, 2], [3, 4]]]})),
        Case("absurd time", js({"strokes": [[[1, 2], [3, 4], [0, 1e15]]]})),
        Case("the zigzag resampling to 255,002 points", js({"strokes": BRIEF_ZIGZAG})),
        Case("the steep zigzag", js({"strokes": STEEP_ZIGZAG})),
        # top_k
        *(Case(f"top_k {v.decode()}", with_top_k(v)) for v in
          (b"0", b"-2", b"-99999999999999999999", b"21", b"2.5", b"1e2", b'"3"', b"true", b"null", b"[3]", b"{}")),
        # content type, encodings, body framing
        Case("text/plain", GOOD, "text/plain"), Case("form encoded", GOOD, "application/x-www-form-urlencoded"),
        Case("multipart", GOOD, "multipart/form-data; boundary=x"), Case("no content type", GOOD, None),
        Case("a content type of junk", GOOD, ";;;==="),
        Case("latin-1 charset", GOOD, "application/json; charset=latin-1"),
        Case("vendor +json", GOOD, "application/vnd.doodle+json"),
        Case("an empty body", b""), Case("a blank body", b"   \r\n"), Case("non-UTF-8 bytes", b"\xff\xfe\x00garbage"),
        Case("latin-1 text", '{"strokes": "café"}'.encode("latin-1")),
        Case("a UTF-8 BOM", b"\xef\xbb\xbf" + GOOD), Case("UTF-16", GOOD.decode().encode("utf-16")),
        Case("a body over the limit", b'{"strokes": [[[' + b"1," * (LIMITS.max_body_bytes // 2) + b"1], [1]]]}"),
        Case("a chunked body", chunks=[GOOD[:7], GOOD[7:20], GOOD[20:]]),
        Case("a chunked body of bad JSON", chunks=[b'{"strokes": ', b"[[[1, 2], "]),
        Case("a chunked body over the limit", chunks=[b"[" + b"1," * 100_000] * 6),
        Case("a body far over the limit", b"[" + b"1," * (3 * LIMITS.max_body_bytes), refused_unread=True),
        # keys
        Case("duplicate keys", b'{"strokes": [[[1, 2], [3, 4]]], "strokes": [[[5, 6], [7, 8]]]}'),
        Case("an extra field", js({**VALID, "colour": "red"})),
        Case("a misspelt field", js({"strokez": VALID["strokes"]})),
        # other routes and methods
        Case("GET /predict", GOOD, method="GET"), Case("PUT /predict", GOOD, method="PUT"),
        Case("POST /healthz", GOOD, path="/healthz"), Case("POST to nowhere", GOOD, path="/nowhere"),
        Case("a path with dots", None, method="GET", path="/static/../../../etc/passwd"),
        Case("a query string", GOOD, path="/predict?top_k=abc&x=%ff"),
    ]
    return out


def test_there_are_enough_kinds():
    assert len(cases()) >= 40 and len({c.name for c in cases()}) == len(cases())


@pytest.fixture(scope="module")
def server(bare_engine, untrained_model):
    from doodle.serve.app import create_app

    with LiveServer(create_app(ServeSettings(model=str(untrained_model)), bare_engine)) as live:
        yield live


def check(client: KeepAlive, case: Case, problems: list[str]) -> None:
    """Send `case` then a valid request on the same connection; note what went wrong."""
    try:
        bad = case.send(client)
    except OSError as err:  # a connection dropped without an answer saying so
        client.conn.close()
        if case.refused_unread:
            client.announced += 1  # the 413 says `connection: close`, if the client gets to read it
        else:
            problems.append(f"{case.name}: {type(err).__name__}: {err}")
        bad = None
    try:
        good = client.post(GOOD)
    except OSError as err:
        problems.append(f"{case.name}, then a valid request: {type(err).__name__}: {err}")
        client.conn.close()
        return
    if bad is not None and bad.status >= 500:
        problems.append(f"{case.name}: {bad.status} {bad.body[:200]!r}")
    elif bad is not None and bad.status >= 400 and bad.headers.get("content-type") == "application/json" \
            and not bad.json()["detail"]:
        problems.append(f"{case.name}: {bad.status} without a detail")
    if good.status != 200:
        problems.append(f"{case.name}, then a valid request: {good.status} {good.body[:200]!r}")


def test_bad_payloads_over_reused_connections(server):
    """Three clients at once, each sending every kind in its own seeded order, a valid request
    after each one."""
    heavy = Case("the costliest zigzag within the limits",
                 js({"strokes": heaviest_zigzag(LIMITS.max_simplify_work, LIMITS.max_simplify_points)}))
    kinds = [*cases(), heavy]

    def run(seed: int) -> tuple[list[str], KeepAlive]:
        order = kinds[:]
        random.Random(SEED + seed).shuffle(order)
        client, problems = KeepAlive(server.port), []
        for case in order:
            check(client, case, problems)
        return problems, client

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, range(3)))
    problems = [p for found, _ in results for p in found]
    assert not problems, "\n".join(problems)
    for _, client in results:
        assert client.silent_drops == 0 and client.announced < 10, (client.opened, client.announced)


def test_healthz_and_docs_still_answer(server):
    client = KeepAlive(server.port)
    for path in ("/healthz", "/classes", "/openapi.json"):
        assert client.request("GET", path).status == 200


# -- random mutations --------------------------------------------------------------------------------


def mutate_bytes(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 replace, 1 insert, 2 delete, 3 duplicate a slice."""
    out = bytearray(data)
    for kind, pos, value in edits:
        at = pos % (len(out) + 1)
        if kind == 0 and out:
            out[at % len(out)] = value
        elif kind == 1:
            out.insert(at, value)
        elif kind == 2 and out:
            del out[at % len(out)]
        elif kind == 3:
            out[at:at] = out[at : at + value % 64]
    return bytes(out)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.text(max_size=4),
                      st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, -1, 1e-300, 1e300, 2**63]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                          max_leaves=20)


def replace_at(obj, path: list[int], value):
    """`obj` with the node reached by following `path` (indices modulo each container's size) replaced."""
    if not path or not isinstance(obj, list | dict) or not obj:
        return value
    if isinstance(obj, dict):
        key = sorted(obj)[path[0] % len(obj)]
        return {**obj, key: replace_at(obj[key], path[1:], value)}
    i = path[0] % len(obj)
    return [*obj[:i], replace_at(obj[i], path[1:], value), *obj[i + 1 :]]


edit = st.tuples(st.integers(0, 3), st.integers(0, 10**6), st.integers(0, 255))
mutation = st.one_of(
    st.lists(edit, min_size=1, max_size=8).map(lambda edits: mutate_bytes(GOOD, edits)),
    st.tuples(st.lists(st.integers(0, 50), max_size=6), json_value).map(
        lambda pv: js(replace_at(VALID, pv[0], pv[1]))),
)


@pytest.fixture(scope="module")
def fuzz_client(server):
    client = KeepAlive(server.port)
    yield client
    assert client.silent_drops == 0
    client.close()


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=mutation)
def test_random_mutations_of_a_valid_payload(fuzz_client, payload):
    problems: list[str] = []
    check(fuzz_client, Case(f"mutation {payload[:120]!r}", payload), problems)
    assert not problems, problems
