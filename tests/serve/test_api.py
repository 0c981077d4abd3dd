"""The HTTP API on a real (small, trained) model: answers, docs, and every malformed input we could
think of getting a 4xx with a readable message, never a 5xx."""

from __future__ import annotations

import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .serve_helpers import CLASSES, SMALL_LIMITS, raw_drawings

CAT = [[[10, 60, 110, 60, 10], [20, 80, 20, 0, 20], [0, 40, 80, 120, 160]], [[30, 90], [60, 60], [300, 340]]]


def post(client, body, **kw):
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post("/predict", content=content, headers={"content-type": "application/json", **kw})


def assert_4xx(response, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    for needle in needles:
        assert needle.lower() in body["detail"].lower(), body["detail"]


def test_predict_a_real_drawing(client, quickdraw):
    record = raw_drawings(quickdraw, ["eye"])[0]
    r = post(client, {"strokes": record["drawing"], "top_k": 3})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 3 and len({p["word"] for p in preds}) == 3
    assert all(p["word"] in CLASSES for p in preds)
    probs = [p["probability"] for p in preds]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert preds[0]["word"] == "eye"


@pytest.mark.parametrize("k, expected", [(1, 1), (3, 3), (4, 4), (10, 4)])
def test_top_k(client, k, expected):
    r = post(client, {"strokes": CAT, "top_k": k})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == expected  # never more than the classes


def test_default_top_k_and_untimed_strokes(client):
    r = post(client, {"strokes": [s[:2] for s in CAT]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3


@pytest.mark.parametrize("strokes", [
    [[[5], [5]]],                                    # a single dot
    [[[5, 5, 5], [7, 7, 7]], [[5], [7]]],            # every point identical
    [[[-500, 800], [-300, 20]]],                      # negative canvas coordinates
    [[[0, 90000], [0, 45000], [0, 10]]],              # a huge canvas
    [[[0, 0.001], [0, 0.002]]],                       # a tiny one
    [[[1, 2], [1, 2], [5, 3]]],                       # time running backwards
])
def test_odd_but_valid_drawings_are_answered(client, strokes):
    r = post(client, {"strokes": strokes})
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 3


@pytest.mark.parametrize("body, needle", [
    ({"strokes": []}, "no strokes"),
    ({}, "strokes: field required"),
    ({"strokes": "abc"}, "strokes"),
    ({"strokes": 5}, "strokes"),
    ({"strokes": {"x": [1]}}, "strokes"),
    ({"strokes": [[[1, 2]]]}, "strokes[0]"),                          # x only
    ({"strokes": [[[1], [2], [3], [4]]]}, "strokes[0]"),              # four lists
    ({"strokes": [[[1, 2], [3]]]}, "different lengths"),
    ({"strokes": [[[1, 2], [3, 4], [0]]]}, "different lengths"),      # t shorter
    ({"strokes": [[[], []]]}, "no points"),
    ({"strokes": [[[1, 2], [3, 4], [0, 9]], [[1], [2]]]}, "coordinate lists"),  # timed and untimed mixed
    ({"strokes": [[["1", 2], [3, 4]]]}, "strokes[0][0][0]: input should be a valid number"),
    ({"strokes": [[[True, 2], [3, 4]]]}, "valid number"),
    ({"strokes": [[[None, 2], [3, 4]]]}, "valid number"),
    ({"strokes": [[[[1], 2], [3, 4]]]}, "valid number"),
    ({"strokes": [[[1e300, 2], [3, 4]]]}, "exceeds"),
    ({"strokes": [[[1, 2], [3, 4], [0, 1e15]]]}, "time exceeds"),
    ({"strokes": CAT, "top_k": 0}, "top_k"),
    ({"strokes": CAT, "top_k": -2}, "top_k"),
    ({"strokes": CAT, "top_k": "3"}, "top_k"),
    ({"strokes": CAT, "top_k": 2.5}, "top_k"),
    ({"strokes": CAT, "top_k": True}, "top_k"),
    ({"strokes": CAT, "top_k": 11}, "limit is 10"),
    ({"strokes": CAT, "topk": 3}, "topk: extra inputs are not permitted"),
    ([CAT], "valid dictionary"),
    ("strokes", "valid dictionary"),
    (None, "valid dictionary"),
])
def test_malformed_json_gets_422(client, body, needle):
    assert_4xx(post(client, body), 422, needle)


@pytest.mark.parametrize("raw, needle", [
    (b'{"strokes": [[[NaN, 1], [2, 3]]]}', "finite"),
    (b'{"strokes": [[[Infinity, 1], [2, 3]]]}', "finite"),
    (b'{"strokes": [[[1, 2], [3, -Infinity]]]}', "finite"),
    (b'{"strokes": [[[1, 2], [3, 4]]', "not valid json"),
    (b"{", "not valid json"),
    (b"\xff\xfe\x00garbage", "not valid json"),
    (b"", "field required"),
    (b"   ", "not valid json"),
])
def test_broken_bodies_get_422(client, raw, needle):
    assert_4xx(post(client, raw), 422, needle)


def test_wrong_content_type_gets_422(client):
    r = client.post("/predict", content=orjson.dumps({"strokes": CAT}), headers={"content-type": "text/plain"})
    assert_4xx(r, 422, "valid dictionary")


def test_too_many_strokes_and_points(client):
    many = [[[i, i + 1], [0, 1]] for i in range(SMALL_LIMITS["max_strokes"] + 1)]
    assert_4xx(post(client, {"strokes": many}), 422, "51 strokes", "limit 50")
    long = [[list(range(2500)), list(range(2500))], [list(range(2000)), list(range(2000))]]
    assert_4xx(post(client, {"strokes": long}), 422, "more than 4000 points")


def test_body_over_the_limit_gets_413_before_parsing(client):
    big = b'{"strokes": [[[' + b"1," * 150_000 + b"1], [1]]]}"
    assert_4xx(post(client, big), 413, "over the limit of 200000 bytes")


def test_chunked_body_over_the_limit_gets_413(client):
    def chunks():
        yield b'{"strokes": [[['
        for _ in range(100):
            yield b"1," * 2_000
        yield b"1], [1]]]}"

    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert_4xx(r, 413, "over the limit")


def test_other_endpoints(client):
    assert client.get("/classes").json() == {"classes": CLASSES}
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["classes"] == len(CLASSES)
    assert health["model"]["backend"] == "onnx" and health["model"]["input_config"]["size"] == 32
    assert health["limits"]["max_strokes"] == SMALL_LIMITS["max_strokes"]
    spec = client.get("/openapi.json").json()
    assert "PredictResponse" in spec["components"]["schemas"]
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"strokes", "top_k"} and body["required"] == ["strokes"]
    assert health["ready"] is True
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    links = re.findall(r'(?:src|href)="([^"]*)"', docs.text)
    assert len(links) >= 3 and all(link.startswith("/") and not link.startswith("//") for link in links), links
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get(f"/docs-assets/{asset}").status_code == 200
    assert client.get("/redoc").status_code == 404  # ReDoc's bundle loads its logo from a CDN
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/static/app.js" in page.text
    assert '<link rel="icon" type="image/svg+xml" href="/favicon.ico">' in page.text
    for asset in ("app.js", "style.css", "favicon.svg"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert client.get("/predict").status_code == 405
    assert client.get("/nothing-here").status_code == 404


def test_bad_content_length_header_gets_400(live_server):
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 12abc\r\n\r\n{}")
        answer = s.recv(4096)
    assert answer.split(b"\r\n")[0].split()[1] in (b"400", b"413"), answer  # uvicorn itself may refuse it


def test_concurrent_requests_get_their_own_answers(live_server, quickdraw):
    """32 requests at once (micro-batched on the server) get exactly the answers of one-by-one calls."""
    records = raw_drawings(quickdraw, CLASSES)[:48]
    with httpx.Client(base_url=live_server.url, timeout=60) as c:
        one_by_one = [c.post("/predict", json={"strokes": r["drawing"], "top_k": 4}).json() for r in records]

    def ask(record):
        with httpx.Client(base_url=live_server.url, timeout=60) as c:
            return c.post("/predict", json={"strokes": record["drawing"], "top_k": 4}).json()

    with ThreadPoolExecutor(32) as pool:
        together = list(pool.map(ask, records))
    for a, b in zip(one_by_one, together, strict=True):
        assert [p["word"] for p in a["predictions"]] == [p["word"] for p in b["predictions"]]
        for p, q in zip(a["predictions"], b["predictions"], strict=True):
            assert p["probability"] == pytest.approx(q["probability"], abs=1e-4)


numbers = st.one_of(st.integers(-10**7, 10**7), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, -1, 1e-300, 1e300]))
json_values = st.recursive(st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=5)),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=30)
strokes = st.lists(st.lists(st.lists(numbers, min_size=0, max_size=6), min_size=1, max_size=4), max_size=5)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, st.fixed_dictionaries({"strokes": strokes}),
                      st.fixed_dictionaries({"strokes": strokes, "top_k": json_values})))
def test_fuzzed_bodies_never_get_a_5xx(client, body):
    """Random JSON and random near-miss stroke lists: a 200 with guesses or a 4xx with a message."""
    r = client.post("/predict", content=json.dumps(body, allow_nan=True), headers={"content-type": "application/json"})
    assert r.status_code < 500, (body, r.text)
    if r.status_code == 200:
        assert 1 <= len(r.json()["predictions"]) <= len(CLASSES)
    else:
        assert r.status_code in (413, 422) and r.json()["detail"]
