"""API keys: every route but the health checks needs one; tenants do not share what they
must not (result cache, embedding ids, idempotency keys). In-process (ASGI) with real
worker processes, and once end to end through ``tenfold serve`` and ``tenfold.Client``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from serve_support import served
from tenfold.config import ModelSettings, ServerSettings, load_settings
from tenfold.errors import Unauthorized
from tenfold.server.app import create_app
from tenfold.server.auth import ApiKey, Keyring, load_keys, parse_key_file
from test_api import computed, running

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef00"
ANON = "env-key-0123456789abcdef00"
KEY_FILE = f"# tenants and their keys\nalice {ALICE}\n\nbob {BOB}   # the second tenant\n"


def as_(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


# -- keys: parsing and matching ---------------------------------------------------------


def test_key_file_lines_tenants_and_comments() -> None:
    keys = parse_key_file(KEY_FILE + f"{ANON}\n", "keys.txt")
    assert [k.tenant for k in keys[:2]] == ["alice", "bob"]
    assert keys[2].tenant.startswith("key-") and len(keys[2].tenant) == 16
    assert ANON not in repr(keys) and ALICE not in repr(keys)  # only digests are kept


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("short\n", "shorter than 16"),
        (f"al/ice {ALICE}\n", "tenant name 'al/ice'"),
        (f"alice {ALICE} extra\n", "line 1: expected KEY or TENANT KEY"),
        (f"alice {ALICE}\nbob {ALICE}\n", "configured twice"),
        ("# only a comment\n", "holds no key"),
        (f"alice {ALICE}\u00e9\n", "non-ASCII"),
    ],
)
def test_key_file_mistakes_are_named(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=says):
        load_keys(path, None)


def test_missing_key_file_and_bad_env_key_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"API key file .*nope\.txt"):
        load_keys(tmp_path / "nope.txt", None)
    with pytest.raises(ValueError, match="TENFOLD_API_KEYS entry 2"):
        load_keys(None, f"{ANON}, tiny")
    assert load_keys(None, None) == ()


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_keys_variable_set_but_empty_refuses_to_start(value: str) -> None:
    # e.g. a Secret made with `--from-literal=keys=$K1,$K2` and the variables unset: auth
    # must not silently go off.
    with pytest.raises(ValueError, match="TENFOLD_API_KEYS is set but holds no key"):
        load_keys(None, value)


def test_a_hash_inside_a_key_is_part_of_it() -> None:
    key = "abcdefghijklmnopqr#stuvwxyz0123"
    ring = Keyring(parse_key_file(f"alice {key}  # a comment\n#{ALICE}\n", "keys.txt"))
    assert ring.tenant_for(key) == "alice"
    assert ring.tenant_for("abcdefghijklmnopqr") is None  # not a 18-character key


def test_a_named_tenant_cannot_take_an_unnamed_keys_tenant() -> None:
    anons = ApiKey.of(ANON).tenant
    with pytest.raises(ValueError, match="reserved for keys without a name"):
        parse_key_file(f"{anons} {ALICE}\n{ANON}\n", "keys.txt")
    assert ApiKey.of(ANON, anons).tenant == anons  # naming a key by its own tenant is fine


def test_keyring_finds_the_tenant_of_a_key_and_nothing_else() -> None:
    ring = Keyring([ApiKey.of(ALICE, "alice"), ApiKey.of(BOB, "bob")])
    assert ring.tenant_for(ALICE) == "alice"
    assert ring.tenant_for(BOB) == "bob"
    assert ring.tenant_for(ALICE[:-1]) is None
    assert ring.tenant_for(ALICE + "x") is None
    assert ring.tenant_for("") is None


def test_settings_merge_the_key_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(KEY_FILE)
    config = tmp_path / "tenfold.toml"
    config.write_text(f'[server]\napi_key_file = "{path}"\n')
    settings = load_settings(
        targets=["toymodels:Upper"], config_path=config, environ={"TENFOLD_API_KEYS": ANON}
    )
    assert len(settings.api_keys) == 3
    assert {k.tenant for k in settings.api_keys} >= {"alice", "bob"}
    assert ALICE not in repr(settings) and ANON not in repr(settings)
    off = load_settings(targets=["toymodels:Upper"], environ={})
    assert off.api_keys == ()
    config.write_text(f'[server]\napi_keys = ["{ALICE}"]\n')
    with pytest.raises(ValueError, match="do not belong in a config file"):
        load_settings(targets=["toymodels:Upper"], config_path=config)


# -- the API with auth on ----------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def guarded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("auth")
    upper_log, vec_log = base / "upper.log", base / "vec.log"
    (base / "keys.txt").write_text(KEY_FILE)
    settings = ServerSettings(
        models=(
            ModelSettings("toymodels:Upper", workers=1, options={"log_path": str(upper_log)}),
            ModelSettings("toymodels:Vec", workers=1, options={"log_path": str(vec_log)}),
        ),
        queue_url=f"sqlite:///{base / 'queue.db'}",
        max_body_bytes=4096,
        api_keys=load_keys(base / "keys.txt", ANON),
    )
    app = create_app(settings)
    async with running(app) as client:  # waits on /readyz, which needs no key
        yield {"client": client, "upper": upper_log, "vec": vec_log}


pytestmark_async = pytest.mark.asyncio(loop_scope="module")

GUARDED_ROUTES = [
    ("POST", "/v1/models/upper/predict", {"input": "x"}),
    ("DELETE", "/v1/models/upper/cache", None),
    ("GET", "/v1/models", None),
    ("GET", "/v1/stats", None),
    ("GET", "/metrics", None),
    ("GET", "/docs", None),
    ("GET", "/openapi.json", None),
    ("POST", "/v1/models/upper/jobs", {"input": "x"}),
    ("GET", "/v1/jobs/0190f0f0-0000-7000-8000-000000000000", None),
    ("DELETE", "/v1/jobs/0190f0f0-0000-7000-8000-000000000000", None),
    ("GET", "/v1/queues", None),
    ("GET", "/v1/alerts", None),
    ("POST", "/v1/indexes/anything/search", {"vector": [1.0]}),
    ("GET", "/no/such/route", None),
]


@pytestmark_async
@pytest.mark.parametrize(("method", "path", "body"), GUARDED_ROUTES)
async def test_every_route_but_health_needs_a_valid_key(
    guarded: dict[str, Any], method: str, path: str, body: Any
) -> None:
    c: httpx.AsyncClient = guarded["client"]
    for headers in ({}, as_("not-a-key-of-anyone-at-all"), {"authorization": f"Basic {ALICE}"}):
        r = await c.request(method, path, json=body, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["type"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = await c.request(method, path, json=body, headers=as_(ALICE))
    assert r.status_code != 401, r.text


@pytestmark_async
async def test_health_checks_stay_open_and_both_key_headers_work(guarded: dict[str, Any]) -> None:
    c: httpx.AsyncClient = guarded["client"]
    assert (await c.get("/healthz")).status_code == 200
    assert (await c.get("/readyz")).status_code == 200
    for headers in (as_(BOB), {"x-api-key": BOB}, as_(ANON), {"Authorization": f"bearer {BOB}"}):
        r = await c.post("/v1/models/upper/predict", json={"input": "hi"}, headers=headers)
        assert r.status_code == 200 and r.json()["output"] == "HI", (headers, r.text)


@pytestmark_async
async def test_no_body_is_read_for_a_caller_without_a_key(guarded: dict[str, Any]) -> None:
    c: httpx.AsyncClient = guarded["client"]
    big = {"input": "x" * 10_000}  # over max_body_bytes (4096): 413 for a keyed caller
    assert (await c.post("/v1/models/upper/predict", json=big)).status_code == 401
    r = await c.post("/v1/models/upper/predict", json=big, headers=as_(ALICE))
    assert r.status_code == 413


@pytestmark_async
async def test_result_cache_is_per_tenant(guarded: dict[str, Any]) -> None:
    c: httpx.AsyncClient = guarded["client"]
    body = {"input": "tenant scoped"}
    first = await c.post("/v1/models/upper/predict", json=body, headers=as_(ALICE))
    again = await c.post("/v1/models/upper/predict", json=body, headers=as_(ALICE))
    other = await c.post("/v1/models/upper/predict", json=body, headers=as_(BOB))
    assert [r.headers["x-tenfold-cache"] for r in (first, again, other)] == ["miss", "hit", "miss"]
    assert computed(guarded["upper"]).count("tenant scoped") == 2
    assert (await c.post("/v1/models/upper/predict", json=body, headers=as_(BOB))).headers[
        "x-tenfold-cache"
    ] == "hit"


@pytestmark_async
async def test_embedding_ids_and_content_keys_are_per_tenant(
    guarded: dict[str, Any],
) -> None:
    c: httpx.AsyncClient = guarded["client"]
    url = "/v1/models/vec/predict"
    r = await c.post(url, json={"input": "aaa", "ids": ["item-1"]}, headers=as_(ALICE))
    assert r.json()["output"] == [3.0, 3.0, 1.0]
    # Bob's "item-1" is not Alice's: he neither reads her vector nor overwrites it.
    r = await c.post(url, json={"input": "zzzz", "ids": ["item-1"]}, headers=as_(BOB))
    assert r.headers["x-tenfold-cache"] == "miss" and r.json()["output"] == [4.0, 0.0, 1.0]
    r = await c.post(url, json={"input": "zzzz", "ids": ["item-1"]}, headers=as_(ALICE))
    assert r.headers["x-tenfold-cache"] == "hit" and r.json()["output"] == [3.0, 3.0, 1.0]
    # Keyed by content too: a hit on Alice's vector would tell Bob what she embedded.
    await c.post(url, json={"input": "alice's text"}, headers=as_(ALICE))
    r = await c.post(url, json={"input": "alice's text"}, headers=as_(BOB))
    assert r.headers["x-tenfold-cache"] == "miss" and r.json()["output"] == [12.0, 1.0, 1.0]
    r = await c.post(url, json={"input": "alice's text"}, headers=as_(ALICE))
    assert r.headers["x-tenfold-cache"] == "hit"
    assert computed(guarded["vec"]).count("alice's text") == 2


@pytestmark_async
async def test_idempotency_keys_are_per_tenant(guarded: dict[str, Any]) -> None:
    c: httpx.AsyncClient = guarded["client"]
    url = "/v1/models/upper/jobs"

    async def submit(key: str, text: str) -> str:
        r = await c.post(url, json={"input": text}, headers={**as_(key), "idempotency-key": "k1"})
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    alices = await submit(ALICE, "alice's job")
    bobs = await submit(BOB, "bob's job")
    assert bobs != alices
    assert await submit(ALICE, "alice's job, sent again") == alices
    job = (await c.get(f"/v1/jobs/{bobs}", params={"wait_s": 10}, headers=as_(BOB))).json()
    assert job["status"] == "succeeded" and job["result"] == "BOB'S JOB"


@pytest.mark.slow
def test_serve_with_a_key_file_and_the_python_client(tmp_path: Path) -> None:
    from tenfold import Client

    keys = tmp_path / "keys.txt"
    keys.write_text(KEY_FILE)
    args = ["toymodels:Upper", "--workers", "1", "--api-key-file", str(keys)]
    log = tmp_path / "serve.log"
    with served(args, log) as url:
        assert "auth on: 2 API key(s), tenants alice, bob" in log.read_text()
        assert httpx.get(url + "/v1/models").status_code == 401
        with Client(url, api_key=ALICE, timeout_s=30) as client:
            assert client.predict("upper", "over http") == "OVER HTTP"
            assert client.result(client.submit("upper", "as a job")) == "AS A JOB"
        with (
            Client(url, api_key="wrong-key-0123456789abcdef") as client,
            pytest.raises(Unauthorized, match="not valid"),
        ):
            client.predict("upper", "no")
