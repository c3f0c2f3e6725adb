"""API keys: who may call the HTTP API, and under which tenant.

Off by default (no keys configured: every route is open, as before). With keys, every
route but the health checks (``/healthz``, ``/readyz``) needs one, including
``/metrics``, ``/docs`` and ``/openapi.json`` and paths that do not exist (an open
route is what vLLM's ``--api-key`` was criticised for), sent as
``Authorization: Bearer KEY`` (or ``X-API-Key: KEY``). A missing or wrong key is
``401 {"error": {"type": "unauthorized", ...}}`` with ``WWW-Authenticate: Bearer``,
answered before the body is read.

Each key belongs to a **tenant**: the name given in the key file, else ``key-`` and
12 hex digits of the key's SHA-256. The tenant scopes what one caller could otherwise
see or spoil of another's: result-cache keys, embedding-cache ``ids`` and job
idempotency keys. Only the SHA-256 digest of each key is kept in memory; a presented
key is hashed and compared with every digest by :func:`hmac.compare_digest`, so the
time taken says nothing about which key (or which prefix) came close.

Key sources, all merged: ``--api-key-file PATH`` / ``TENFOLD_API_KEY_FILE`` /
``[server] api_key_file`` (one key per line: ``KEY`` or ``TENANT KEY``; ``#`` at the start
of a line or after a space starts a comment) and ``TENFOLD_API_KEYS`` (keys separated by
commas; set but holding no key is an error, not auth off). Keys are never flags: a command
line is visible to every user of the machine in ``ps``.

Starlette's :class:`~starlette.middleware.authentication.AuthenticationMiddleware`
runs the check; this module is the backend it calls.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Scope

from tenfold.errors import Unauthorized

#: Routes a load balancer or kubelet probes without credentials.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
MIN_KEY_CHARS = 16
_TENANT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DERIVED_TENANT = re.compile(r"key-[0-9a-f]{12}")
#: A ``#`` that starts a comment: at the start of a line or after whitespace (a key may hold one).
_COMMENT = re.compile(r"(?:^|\s)#")


@dataclass(frozen=True, slots=True)
class ApiKey:
    tenant: str
    digest: bytes = field(repr=False)

    @classmethod
    def of(cls, key: str, tenant: str | None = None, *, where: str = "") -> ApiKey:
        at = f" ({where})" if where else ""
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(
                f"API key{at} is shorter than {MIN_KEY_CHARS} characters: use a random one, "
                "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if any(c.isspace() or c == "," for c in key) or not key.isprintable() or not key.isascii():
            # Not ASCII: a header arrives as latin-1, so such a key could never match.
            raise ValueError(
                f"API key{at} holds whitespace, a comma, control or non-ASCII characters"
            )
        digest = hashlib.sha256(key.encode()).digest()
        derived = "key-" + digest.hex()[:12]
        if tenant is None:
            tenant = derived
        elif not _TENANT.fullmatch(tenant):
            raise ValueError(
                f"tenant name {tenant!r}{at} must be 1-64 of A-Z a-z 0-9 _ . - "
                "(it becomes part of cache and idempotency keys)"
            )
        elif _DERIVED_TENANT.fullmatch(tenant) and tenant != derived:
            # It would share caches and idempotency keys with the unnamed key it names.
            raise ValueError(f"tenant name {tenant!r}{at} is reserved for keys without a name")
        return cls(tenant, digest)


def parse_key_file(text: str, source: str) -> list[ApiKey]:
    """Keys of a key file: each line ``KEY`` or ``TENANT KEY``; ``#`` comments, blank lines."""
    keys: list[ApiKey] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.split(raw, maxsplit=1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{source} line {number}"
        if len(parts) == 1:
            keys.append(ApiKey.of(parts[0], where=where))
        elif len(parts) == 2:
            keys.append(ApiKey.of(parts[1], parts[0], where=where))
        else:
            raise ValueError(f"{where}: expected KEY or TENANT KEY, got {len(parts)} words")
    return keys


def load_keys(file: str | Path | None, env_value: str | None) -> tuple[ApiKey, ...]:
    """Every configured key (file, then ``TENFOLD_API_KEYS``); ValueError names a mistake."""
    keys: list[ApiKey] = []
    if file is not None:
        path = Path(file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"API key file {path}: {exc.strerror or exc}") from exc
        keys += parse_key_file(text, str(path))
        if not keys:
            raise ValueError(f"API key file {path} holds no key (auth would be off)")
    if env_value is not None:
        texts = [k.strip() for k in env_value.split(",")]
        if not any(texts):
            # e.g. a Secret made with unset shell variables: refuse rather than serve open.
            raise ValueError("TENFOLD_API_KEYS is set but holds no key (auth would be off)")
        for i, text in enumerate(texts):
            if text:
                keys.append(ApiKey.of(text, where=f"TENFOLD_API_KEYS entry {i + 1}"))
    seen: set[bytes] = set()
    for key in keys:
        if key.digest in seen:
            raise ValueError(f"the same API key is configured twice (tenant {key.tenant})")
        seen.add(key.digest)
    return tuple(keys)


class Keyring:
    """Presented key -> tenant, in time independent of which key matched."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple(keys)
        if not self._keys:
            raise ValueError("a keyring needs at least one key")

    def tenant_for(self, presented: str) -> str | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: str | None = None
        for key in self._keys:  # no early exit: every digest is compared
            if hmac.compare_digest(digest, key.digest):
                found = key.tenant
        return found


def presented_key(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    api_key = conn.headers.get("x-api-key")
    return api_key.strip() if api_key and api_key.strip() else None


class ApiKeyBackend(AuthenticationBackend):
    def __init__(self, keyring: Keyring, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.keyring = keyring
        self.open_paths = open_paths

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        if conn.scope["path"] in self.open_paths:
            return None
        key = presented_key(conn)
        if key is None:
            raise AuthenticationError(
                "this API needs a key: send the header 'Authorization: Bearer KEY'"
            )
        tenant = self.keyring.tenant_for(key)
        if tenant is None:
            raise AuthenticationError("the API key is not valid")
        return AuthCredentials(["authenticated"]), SimpleUser(tenant)


def unauthorized(_: HTTPConnection, exc: AuthenticationError) -> Response:
    from tenfold.server.errors import error_response

    response = error_response(Unauthorized(str(exc)))
    response.headers["WWW-Authenticate"] = 'Bearer realm="tenfold"'
    return response


def tenant_of(scope: Scope) -> str | None:
    """The caller's tenant (from an ASGI scope, ``request.scope``); None when auth is off
    (or on an open route)."""
    user = scope.get("user")
    return user.username if isinstance(user, SimpleUser) else None
