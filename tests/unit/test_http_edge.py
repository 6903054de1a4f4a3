"""The HTTP edge, without a database: what every service refuses before a handler runs (and
so before anything reaches PostgreSQL), the body limit, the answers to outages and to an
interrupted COMMIT, and the OpenAPI document that promises all of it."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import asyncpg
import httpx
import pytest
from examples.shop import inventory, orchestrator, order, payment
from fastapi import APIRouter, FastAPI

from sagakit import http
from sagakit.db import Connection, MigrationSet
from sagakit.runtime import Service
from sagakit.runtime.host import create_app

SPECS = {
    s.name: s for s in (order.service, inventory.service, payment.service, orchestrator.service)
}


def client(app: FastAPI, *, raise_errors: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_errors)
    return httpx.AsyncClient(transport=transport, base_url="http://edge")


@pytest.fixture(scope="module")
def apps() -> dict[str, FastAPI]:
    """The real services' apps; the lifespan (database, broker) never runs."""
    return {name: create_app(spec) for name, spec in SPECS.items()}


ORDER = {"customer_id": "c1", "product_id": "p1", "quantity": 2}


def refused(r: httpx.Response, *loc: str | int) -> None:
    """A 422 in FastAPI's validation shape, naming ``loc``."""
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert isinstance(errors, list) and errors
    assert any(tuple(e["loc"])[: len(loc)] == loc for e in errors), errors
    for e in errors:
        assert {"loc", "msg", "type"} <= e.keys()


# -- text ------------------------------------------------------------------------------------

BAD_TEXT = ["a\x00b", "\x00", "tab\there", "line\nbreak", "\x1b[31m", "del\x7f", "c1\x85"]


@pytest.mark.parametrize("bad", BAD_TEXT, ids=repr)
@pytest.mark.parametrize("field", ["customer_id", "product_id"])
async def test_control_characters_in_body_fields_are_422(
    apps: dict[str, FastAPI], field: str, bad: str
) -> None:
    async with client(apps["order"]) as c:
        r = await c.post("/orders", json={**ORDER, field: bad})
    refused(r, "body", field)


async def test_a_lone_surrogate_is_422_and_the_answer_still_renders(
    apps: dict[str, FastAPI],
) -> None:
    """JSON may escape a surrogate that UTF-8 (and so PostgreSQL) cannot hold; the 422
    echoes it, escaped, instead of failing to encode it."""
    body = b'{"customer_id": "\\ud800", "product_id": "p", "quantity": 1}'
    async with client(apps["order"]) as c:
        r = await c.post("/orders", content=body, headers={"content-type": "application/json"})
    refused(r, "body", "customer_id")
    assert r.content.isascii()


def test_safe_text_takes_any_printable_text_and_nothing_else() -> None:
    class Note(http.StrictBody):
        text: http.SafeText

    assert Note(text="").text == ""
    assert Note(text="naïve 東京 ✓ \u2028").text.startswith("naïve")
    for bad in BAD_TEXT:
        with pytest.raises(ValueError, match="control character"):
            Note(text=bad)
    with pytest.raises(ValueError, match="at most 1000"):
        Note(text="x" * 1001)


PATHS = [
    ("order", "GET", "/orders/{}"),
    ("order", "GET", "/catalog/{}"),
    ("inventory", "GET", "/products/{}"),
    ("inventory", "PUT", "/products/{}"),
    ("payment", "GET", "/customers/{}"),
    ("payment", "PUT", "/customers/{}"),
    ("orchestrator", "GET", "/sagas/{}"),
]
BODIES = {"/products/{}": {"stock": 1, "price_cents": 1}, "/customers/{}": {"balance_cents": 1}}


@pytest.mark.parametrize("bad", ["%00", "a%00", "%0A", "%7F", "%C2%9F"])
@pytest.mark.parametrize(("service", "method", "path"), PATHS)
async def test_control_characters_in_path_ids_are_422(
    apps: dict[str, FastAPI], service: str, method: str, path: str, bad: str
) -> None:
    async with client(apps[service]) as c:
        r = await c.request(method, path.format(bad), json=BODIES.get(path))
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][0] == "path"


async def test_an_overlong_path_id_is_422(apps: dict[str, FastAPI]) -> None:
    async with client(apps["inventory"]) as c:
        r = await c.get(f"/products/{'x' * 201}")
    refused(r, "path", "product_id")


async def test_a_bad_cursor_is_a_422_of_the_documented_shape(apps: dict[str, FastAPI]) -> None:
    bad = [
        "garbage",
        "2024-01-01T00:00:00+00:00|o",
        "12345678901234567|o",
        "1|",
        "1|a\x00",
        "1|a\n",
    ]
    async with client(apps["order"]) as c:
        for after in bad:
            refused(await c.get("/orders", params={"after": after}), "query", "after")


def test_every_string_of_the_documented_cursor_form_is_a_cursor() -> None:
    pattern = order.api._CURSOR
    for cursor in ["0|o", "-9999999999999999|o", "9999999999999999|" + "é" * 200, "1|a|b"]:
        assert re.fullmatch(pattern, cursor)
        at, oid = order.api._cursor(cursor)
        assert at.tzinfo is not None and oid == cursor.split("|", 1)[1]


# -- numbers ---------------------------------------------------------------------------------

NOT_INTEGERS = [True, False, "5", 2.5, None, [5], {"n": 5}]


@pytest.mark.parametrize("value", NOT_INTEGERS, ids=repr)
async def test_integers_are_strict(apps: dict[str, FastAPI], value: object) -> None:
    async with client(apps["order"]) as c:
        refused(await c.post("/orders", json={**ORDER, "quantity": value}), "body", "quantity")
    async with client(apps["inventory"]) as c:
        r = await c.put("/products/p", json={"stock": value, "price_cents": 1})
        refused(r, "body", "stock")
    async with client(apps["payment"]) as c:
        r = await c.put("/customers/c", json={"balance_cents": value})
        refused(r, "body", "balance_cents")


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
async def test_numbers_that_are_no_integers_at_all_are_422(
    apps: dict[str, FastAPI], raw: bytes
) -> None:
    body = b'{"customer_id": "c", "product_id": "p", "quantity": ' + raw + b"}"
    async with client(apps["order"]) as c:
        r = await c.post("/orders", content=body, headers={"content-type": "application/json"})
    refused(r, "body", "quantity")


def test_an_integer_written_as_a_float_is_an_integer() -> None:
    """JSON Schema counts 5.0 as an integer; so do the services."""
    assert order.api.OrderIn.model_validate({**ORDER, "quantity": 5.0}).quantity == 5
    assert inventory.api.ProductIn.model_validate({"stock": 1e3, "price_cents": 0}).stock == 1000


async def test_unknown_fields_are_refused(apps: dict[str, FastAPI]) -> None:
    async with client(apps["order"]) as c:
        refused(await c.post("/orders", json={**ORDER, "extra": 1}), "body", "extra")


async def test_405_lists_every_method_of_the_path(apps: dict[str, FastAPI]) -> None:
    async with client(apps["inventory"]) as c:
        r = await c.request("OPTIONS", "/products/p")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, PUT"
    assert r.json() == {"detail": "Method Not Allowed"}


# -- idempotency keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [b"", b" ", b"a b", b"tab\tkey", b"del\x7f", b"caf\xe9", b"k" * 201],
    ids=repr,
)
async def test_bad_idempotency_keys_are_422(apps: dict[str, FastAPI], key: bytes) -> None:
    async with client(apps["order"]) as c:
        r = await c.post("/orders", json=ORDER, headers=[(b"idempotency-key", key)])
    refused(r, "header", "idempotency-key")


async def test_nul_in_a_header_is_422() -> None:
    """HTTP servers refuse NUL in a header; the edge does not count on it."""
    app = create_app(order.service)
    scope = asgi_scope("POST", "/orders", [(b"idempotency-key", b"a\x00b")])
    status, body = await call(app, scope, [json.dumps(ORDER).encode()])
    assert status == 422, body
    assert json.loads(body)["detail"][0]["loc"] == ["header", "idempotency-key"]


# -- body size -------------------------------------------------------------------------------

LIMITED = create_app(order.service)
LIMIT = http.DEFAULT_MAX_BODY_BYTES


def too_large(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    assert r.json() == {"detail": f"request body larger than {LIMIT} bytes"}


async def test_a_body_over_the_limit_is_413() -> None:
    big = {**ORDER, "customer_id": "c" * LIMIT}
    async with client(LIMITED) as c:
        too_large(await c.post("/orders", json=big))
        too_large(await c.put("/products/p", content=b" " * (LIMIT + 1)))  # no such route
        r = await c.post("/orders", content=b"x" * LIMIT, headers={"content-type": "text/plain"})
    assert r.status_code == 422, "at the limit the body is read (and refused on its merits)"


async def test_a_chunked_body_over_the_limit_is_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(LIMIT // 1000 + 2):
            yield b"x" * 1000

    async with client(LIMITED) as c:
        r = await c.post("/orders", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    too_large(r)


async def test_a_content_length_that_understates_is_no_way_around_the_limit() -> None:
    scope = asgi_scope("POST", "/orders", [(b"content-length", b"10")])
    status, body = await call(LIMITED, scope, [b"x" * 40_000, b"x" * 40_000])
    assert status == 413
    assert json.loads(body)["detail"].startswith("request body larger than")


async def test_the_limit_is_an_option() -> None:
    app = FastAPI()
    http.install(app, max_body_bytes=10)

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    async with client(app) as c:
        assert (await c.post("/echo", json={"a": 1})).status_code == 200
        assert (await c.post("/echo", json={"a": 123456})).status_code == 413


def asgi_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"edge"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("edge", 80),
    }


async def call(app: FastAPI, scope: dict[str, Any], chunks: list[bytes]) -> tuple[int, bytes]:
    """Drive ``app`` by hand, body in ``chunks``: no client library second-guesses what is
    sent (a header with a NUL, a Content-Length that lies)."""
    pending = list(chunks)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not pending:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


# -- outages and interrupted commits ---------------------------------------------------------


class FakeTransaction:
    def __init__(self, commit_error: BaseException | None) -> None:
        self.commit_error = commit_error
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def commit(self) -> None:
        self.calls.append("commit")
        if self.commit_error:
            raise self.commit_error

    async def rollback(self) -> None:
        self.calls.append("rollback")
        raise ConnectionResetError("a dead connection cannot roll back either")


class FakeConnection:
    def __init__(self, commit_error: BaseException | None = None) -> None:
        self.tx = FakeTransaction(commit_error)

    def transaction(self) -> FakeTransaction:
        return self.tx


def fake(conn: FakeConnection) -> Connection:
    return cast(Connection, conn)


async def test_a_failure_before_commit_is_passed_on_unchanged() -> None:
    conn = FakeConnection()
    with pytest.raises(ConnectionResetError, match="mid-statement"):
        async with http.transaction(fake(conn)):
            raise ConnectionResetError("mid-statement")
    assert conn.tx.calls == ["start", "rollback"]


@pytest.mark.parametrize(
    "lost",
    [
        ConnectionResetError("reset"),
        TimeoutError(),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_commit_without_an_answer_has_an_unknown_outcome(lost: Exception) -> None:
    conn = FakeConnection(commit_error=lost)
    with pytest.raises(http.OutcomeUnknown, match="retry with the same key") as caught:
        async with http.transaction(fake(conn), retry="retry with the same key"):
            pass
    assert caught.value.__cause__ is lost
    assert conn.tx.calls == ["start", "commit"]


async def test_a_commit_the_server_refused_is_a_known_outcome() -> None:
    refusal = asyncpg.SerializationError("could not serialize access")
    with pytest.raises(asyncpg.SerializationError):
        async with http.transaction(fake(FakeConnection(commit_error=refusal))):
            pass


routes = APIRouter()


@routes.post("/write/{kind}")
async def write(kind: str) -> None:
    raise {
        "unknown": http.OutcomeUnknown("retry with the same Idempotency-Key"),
        "refused": ConnectionRefusedError(111, "refused"),
        "pool": TimeoutError(),
        "bug": asyncpg.UndefinedColumnError('column "nope" does not exist'),
    }[kind]


@pytest.fixture(scope="module")
def failing() -> FastAPI:
    spec = Service("test", migrations=MigrationSet("test", ()), routes=routes)
    return create_app(spec)


async def test_an_interrupted_commit_is_503_outcome_unknown(failing: FastAPI) -> None:
    async with client(failing) as c:
        r = await c.post("/write/unknown")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    detail = r.json()["detail"]
    assert "outcome unknown, retry with the same Idempotency-Key" in detail
    assert "nothing was changed" not in detail


@pytest.mark.parametrize("kind", ["refused", "pool"])
async def test_an_outage_is_503_nothing_changed(failing: FastAPI, kind: str) -> None:
    async with client(failing) as c:
        r = await c.post(f"/write/{kind}")
    assert r.status_code == 503
    assert "nothing was changed" in r.json()["detail"]


async def test_a_database_error_that_is_no_outage_stays_a_500(failing: FastAPI) -> None:
    async with client(failing, raise_errors=False) as c:
        assert (await c.post("/write/bug")).status_code == 500


# -- the OpenAPI document --------------------------------------------------------------------

EXPECTED = {
    "order": {
        ("post", "/orders"): {202, 400, 409, 413, 422, 503},
        ("get", "/orders"): {200, 422, 503},
        ("get", "/orders/{order_id}"): {200, 404, 422, 503},
        ("get", "/catalog/{product_id}"): {200, 404, 422, 503},
    },
    "inventory": {
        ("put", "/products/{product_id}"): {200, 400, 413, 422, 503},
        ("get", "/products/{product_id}"): {200, 404, 422, 503},
    },
    "payment": {
        ("put", "/customers/{customer_id}"): {200, 400, 413, 422, 503},
        ("get", "/customers/{customer_id}"): {200, 404, 422, 503},
    },
    "orchestrator": {
        ("get", "/sagas"): {200, 422, 503},
        ("get", "/sagas/{saga_id}"): {200, 404, 422, 503},
    },
}


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method, path, op


@pytest.mark.parametrize("service", list(EXPECTED))
def test_the_openapi_documents_every_status_with_its_schema(
    apps: dict[str, FastAPI], service: str
) -> None:
    doc = apps[service].openapi()
    for (method, path), codes in EXPECTED[service].items():
        responses = doc["paths"][path][method]["responses"]
        assert {int(c) for c in responses} == codes, (method, path)
        for code, answer in responses.items():
            schema = answer["content"]["application/json"]["schema"]
            if code == "422":
                assert schema == {"$ref": "#/components/schemas/HTTPValidationError"}
            elif int(code) >= 400:
                assert schema == {"$ref": "#/components/schemas/Problem"}, (path, code)
            else:
                assert schema.get("$ref", "").startswith("#/components/schemas/"), (path, code)
    for method, path, op in operations(doc):  # the health and metrics routes included
        for code, answer in op["responses"].items():
            assert answer.get("content"), (method, path, code)
    assert doc["components"]["schemas"]["Problem"]["required"] == ["detail"]


@pytest.mark.parametrize("service", list(EXPECTED))
def test_ids_and_keys_are_documented_with_their_rules(
    apps: dict[str, FastAPI], service: str
) -> None:
    doc = apps[service].openapi()
    for _, _, op in operations(doc):
        for param in op.get("parameters", []):
            if param["in"] == "path":
                schema = param["schema"]
                assert (schema["minLength"], schema["maxLength"]) == (1, 200)
                assert schema["pattern"].startswith("^[^\\u0000-\\u001F")
    if service == "order":
        post = doc["paths"]["/orders"]["post"]
        (key,) = [p for p in post["parameters"] if p["in"] == "header"]
        assert key["name"] == "idempotency-key"
        assert key["schema"]["anyOf"][0]["minLength"] == 1


def test_links_lead_from_a_write_to_reading_what_it_wrote(apps: dict[str, FastAPI]) -> None:
    expected = {
        "order": ("/orders", "post", "202", "get_order"),
        "inventory": ("/products/{product_id}", "put", "200", "get_product"),
        "payment": ("/customers/{customer_id}", "put", "200", "get_customer"),
    }
    for service, (path, method, code, target) in expected.items():
        doc = apps[service].openapi()
        (link,) = doc["paths"][path][method]["responses"][code]["links"].values()
        assert link["operationId"] == target
        ids = {op.get("operationId") for _, _, op in operations(doc)}
        assert target in ids
