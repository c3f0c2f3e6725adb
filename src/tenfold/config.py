"""Settings: typed, frozen, validated when built; read once.

Sources, later wins: defaults < TOML file (``--config tenfold.toml``) <
environment (``TENFOLD_*``, passed in as a mapping, never read at import) <
command-line flags. Example file::

    [server]
    host = "127.0.0.1"
    port = 8000
    max_body_bytes = 10485760     # 10 MiB
    request_timeout_ms = 30000
    # worker_hang_timeout_s = 60   # default: request timeout + 30 s; 0: no watchdog
    cache_url = "memory://"       # or "redis://127.0.0.1:6379/0"; "" turns caching off
    result_cache_ttl_s = 300
    price_per_hour_usd = 1.006    # cost figures in /v1/stats
    # api_key_file = "keys.txt"   # auth on: lines KEY or TENANT KEY (tenfold.server.auth)
    # rate_limit_rps = 50         # per tenant (needs auth); rate_limit_burst = 100
    # rate_limit_url = "redis://127.0.0.1:6379/0"   # shared by replicas; default memory://

    [models.embed]
    target = "embed"              # or "mypackage.models:MyModel"
    workers = 2                   # default: one per core (max 4) on CPU, 1 with a GPU
    max_batch_size = 32
    batch_timeout_ms = 10
    # latency_budget_ms = 250     # adaptive batching
    [models.embed.options]        # keyword options for the model class

Environment variables: ``TENFOLD_HOST``, ``TENFOLD_PORT``,
``TENFOLD_MAX_BODY_BYTES``, ``TENFOLD_REQUEST_TIMEOUT_MS``,
``TENFOLD_WORKER_HANG_TIMEOUT_S``, ``TENFOLD_CACHE_URL``,
``TENFOLD_RESULT_CACHE_TTL_S``, ``TENFOLD_PRICE_PER_HOUR_USD``,
``TENFOLD_API_KEY_FILE``, ``TENFOLD_API_KEYS`` (comma-separated keys),
``TENFOLD_RATE_LIMIT_RPS``, ``TENFOLD_RATE_LIMIT_BURST``, ``TENFOLD_RATE_LIMIT_URL``,
``TENFOLD_SHUTDOWN_GRACE_S``, and, for every
model, ``TENFOLD_WORKERS``, ``TENFOLD_MAX_BATCH_SIZE``,
``TENFOLD_BATCH_TIMEOUT_MS``, ``TENFOLD_LATENCY_BUDGET_MS``.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from tenfold.model import resolve_target
from tenfold.ratelimit.policy import RateLimit
from tenfold.server.auth import ApiKey, load_keys


def default_workers() -> int:
    """Worker processes per model when not set (``workers = 0``, the default).

    With an NVIDIA GPU visible: one (it owns the device). On CPU: one per core, up to 4,
    each with an equal share of the cores: for small models, processes in parallel beat
    one process whose intra-op threads synchronise on every layer (measured here: 2
    single-thread workers serve MiniLM ~14% faster than 1 two-thread worker)."""
    if Path("/dev/nvidia0").exists() or os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


@dataclass(frozen=True, slots=True)
class ModelSettings:
    target: str
    workers: int = 0  # 0: default_workers()
    max_batch_size: int | None = None
    batch_timeout_ms: float | None = None
    latency_budget_ms: float | None = None
    length_aware: bool = True
    max_queue_items: int = 10_000
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        resolve_target(self.target)  # fails early with a clear message
        if self.workers == 0:
            object.__setattr__(self, "workers", default_workers())
        if self.workers < 1:
            raise ValueError("workers must be at least 1 (or 0 for the default)")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    models: tuple[ModelSettings, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 10 * 1024 * 1024
    request_timeout_ms: float = 30_000.0
    #: A batch running longer is taken as hung: its worker is killed (its items answer
    #: 500 worker_crashed) and replaced. None: request_timeout_ms + 30 s; 0: never. Raise
    #: it if clients ask for a longer ``timeout_ms`` than the slowest batch can take.
    worker_hang_timeout_s: float | None = None
    #: Result/embedding cache backend (``memory://``, ``redis://host:port/db``); None: off.
    cache_url: str | None = "memory://"
    result_cache_ttl_s: float = 300.0
    #: Price of one accelerator (worker) hour, for the cost figures in /v1/stats.
    price_per_hour_usd: float = 1.006
    #: Where ``tenfold index build`` wrote the vector indexes served at /v1/indexes.
    index_dir: str = "indexes"
    #: The durable job queue behind /v1/models/{model}/jobs (None: no job API).
    queue_url: str | None = "sqlite:///tenfold-data/queue.db"
    #: Synchronous predict goes through the queue too (``tenfold serve --queue URL``).
    predict_via_queue: bool = False
    #: Run the models in this server's worker processes; False: only remote
    #: ``tenfold worker`` processes serve the queue (needs predict_via_queue).
    local_workers: bool = True
    max_queue_depth: int = 10_000
    #: POST queue alerts (JSON) here as well as to the log and GET /v1/alerts.
    alert_webhook_url: str | None = None
    #: Serve the queue's jobs with ``tenfold worker`` processes scaled on its depth
    #: (``tenfold serve --autoscale``) instead of this server's own workers.
    autoscale: bool = False
    #: TOML file whose ``[autoscale]`` table sets the rules; None: the seed rules.
    autoscale_config: str | None = None
    #: API keys, one per line (``KEY`` or ``TENANT KEY``); with any key, auth is on.
    api_key_file: str | None = None
    #: Every configured key (the file's and ``TENFOLD_API_KEYS``), as digests only:
    #: filled by :func:`load_settings`, never printed.
    api_keys: tuple[ApiKey, ...] = field(default=(), repr=False)
    #: Requests per second each tenant may make on average (0: no limit; needs auth),
    #: up to ``rate_limit_burst`` at once (0: one second's worth).
    rate_limit_rps: float = 0.0
    rate_limit_burst: int = 0
    #: Where the limiter counts: ``memory://`` (this process) or ``redis://...`` (shared by
    #: every replica: an in-process limit multiplies by the replica count).
    rate_limit_url: str = "memory://"
    #: After SIGTERM: how long running requests may take before they are cut off
    #: (answered 503). Queued items are answered 503 at once.
    shutdown_grace_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("no model to serve: give MODULE:CLASS or --example embed|classify")
        if not 0 < self.port < 65536 and self.port != 0:
            raise ValueError("port must be in 1..65535")
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        if self.request_timeout_ms <= 0:
            raise ValueError("request_timeout_ms must be positive")
        if self.worker_hang_timeout_s is not None and self.worker_hang_timeout_s < 0:
            raise ValueError("worker_hang_timeout_s must be >= 0 (0: no hang watchdog)")
        if not self.local_workers and not (self.queue_url and self.predict_via_queue):
            raise ValueError("--no-local-workers needs --queue URL (remote workers serve it)")
        if self.autoscale and not self.queue_url:
            raise ValueError("--autoscale scales workers on the durable queue: it needs a queue")
        if self.autoscale and len(self.models) != 1:
            raise ValueError("--autoscale serves exactly one model (its workers run one)")
        if self.result_cache_ttl_s <= 0:
            raise ValueError("result_cache_ttl_s must be positive")
        if not (math.isfinite(self.shutdown_grace_s) and self.shutdown_grace_s >= 0):
            raise ValueError("shutdown_grace_s must be >= 0")
        if not (math.isfinite(self.rate_limit_rps) and self.rate_limit_rps >= 0):
            raise ValueError("rate_limit_rps must be >= 0 (0: no limit)")
        if self.rate_limit_burst < 0:
            raise ValueError("rate_limit_burst must be >= 0 (0: one second's worth)")
        if self.rate_limit_rps and not self.api_keys:
            raise ValueError(
                "rate limits are per tenant, and tenants are API keys: give --api-key-file "
                "or TENFOLD_API_KEYS with --rate-limit-rps"
            )

    @property
    def rate_limit(self) -> RateLimit | None:
        """Each tenant's limit (the burst defaulted); None: no limit."""
        if not self.rate_limit_rps:
            return None
        return RateLimit.of(self.rate_limit_rps, self.rate_limit_burst)


_MODEL_ENV = {
    "TENFOLD_WORKERS": ("workers", int),
    "TENFOLD_MAX_BATCH_SIZE": ("max_batch_size", int),
    "TENFOLD_BATCH_TIMEOUT_MS": ("batch_timeout_ms", float),
    "TENFOLD_LATENCY_BUDGET_MS": ("latency_budget_ms", float),
}
_SERVER_ENV = {
    "TENFOLD_HOST": ("host", str),
    "TENFOLD_PORT": ("port", int),
    "TENFOLD_MAX_BODY_BYTES": ("max_body_bytes", int),
    "TENFOLD_REQUEST_TIMEOUT_MS": ("request_timeout_ms", float),
    "TENFOLD_WORKER_HANG_TIMEOUT_S": ("worker_hang_timeout_s", float),
    "TENFOLD_CACHE_URL": ("cache_url", str),
    "TENFOLD_RESULT_CACHE_TTL_S": ("result_cache_ttl_s", float),
    "TENFOLD_PRICE_PER_HOUR_USD": ("price_per_hour_usd", float),
    "TENFOLD_INDEX_DIR": ("index_dir", str),
    "TENFOLD_QUEUE_URL": ("queue_url", str),
    "TENFOLD_ALERT_WEBHOOK_URL": ("alert_webhook_url", str),
    "TENFOLD_API_KEY_FILE": ("api_key_file", str),
    "TENFOLD_RATE_LIMIT_RPS": ("rate_limit_rps", float),
    "TENFOLD_RATE_LIMIT_BURST": ("rate_limit_burst", int),
    "TENFOLD_RATE_LIMIT_URL": ("rate_limit_url", str),
    "TENFOLD_SHUTDOWN_GRACE_S": ("shutdown_grace_s", float),
}


def _env(environ: Mapping[str, str], table: Mapping[str, tuple[str, type]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, (key, kind) in table.items():
        if var in environ and environ[var] != "":
            try:
                out[key] = kind(environ[var])
            except ValueError as exc:
                raise ValueError(f"{var}={environ[var]!r} is not a valid {kind.__name__}") from exc
    return out


def read_variant(directory: str | Path) -> tuple[str, dict[str, Any]]:
    """``(target, options)`` from a variant directory's ``variant.json`` (``tenfold optimize``)."""
    path = Path(directory) / "variant.json"
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ValueError(
            f"{path} not found: is {directory} a variant built by tenfold optimize?"
        ) from exc
    return str(spec["target"]), dict(spec.get("options", {}))


def load_settings(
    *,
    targets: list[str] | None = None,
    config_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    server_flags: Mapping[str, Any] | None = None,
    model_flags: Mapping[str, Any] | None = None,
    variant: str | None = None,
) -> ServerSettings:
    """Merge defaults, the TOML file, the environment and flags (``None`` flags are unset)."""
    environ = environ or {}
    doc: dict[str, Any] = {}
    if config_path is not None:
        with open(config_path, "rb") as fh:
            doc = tomllib.load(fh)
    server: dict[str, Any] = dict(doc.get("server", {}))
    server.update(_env(environ, _SERVER_ENV))
    server.update({k: v for k, v in (server_flags or {}).items() if v is not None})
    for key in ("cache_url", "queue_url", "api_key_file"):
        if server.get(key) == "":
            server[key] = None
    if "api_keys" in server:
        raise ValueError(
            "[server] api_keys: keys do not belong in a config file; "
            "use api_key_file or TENFOLD_API_KEYS"
        )
    server["api_keys"] = load_keys(server.get("api_key_file"), environ.get("TENFOLD_API_KEYS"))

    file_models: dict[str, dict[str, Any]] = {
        name: dict(spec) for name, spec in doc.get("models", {}).items()
    }
    specs: list[dict[str, Any]] = []
    if targets:
        for target in targets:
            spec = dict(file_models.get(target, {}))
            spec["target"] = spec.get("target", target)
            specs.append(spec)
    else:
        for name, spec in file_models.items():
            spec.setdefault("target", name)
            specs.append(spec)
    if variant is not None:
        if len(specs) != 1:
            raise ValueError("--variant applies to exactly one model")
        target, options = read_variant(variant)
        specs[0]["target"] = target
        specs[0]["options"] = {**specs[0].get("options", {}), **options}

    overrides = _env(environ, _MODEL_ENV)
    overrides.update({k: v for k, v in (model_flags or {}).items() if v is not None})
    models = tuple(
        replace(_build(ModelSettings, spec, f"model {spec.get('target')!r}"), **overrides)
        for spec in specs
    )
    return _build(ServerSettings, {"models": models, **server}, "[server]")


_T = TypeVar("_T")


def _build(cls: type[_T], values: dict[str, Any], where: str) -> _T:
    """``cls(**values)``, with a config mistake (an unknown key, a value of the wrong type)
    as a ValueError naming it, not a TypeError from deep inside."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    try:
        return cls(**values)
    except TypeError as exc:
        raise ValueError(f"{where}: a setting has the wrong type ({exc})") from exc
