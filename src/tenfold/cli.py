"""The ``tenfold`` command line.

``tenfold serve MODULE:CLASS`` or ``tenfold serve --example embed``; see
``tenfold --help`` and ``tenfold serve --help``. The environment is read
here, once, and handed to :func:`tenfold.config.load_settings`.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from tenfold.model import EXAMPLES

app = typer.Typer(
    rich_markup_mode=None,
    help="tenfold: serve AI models at scale (batching, caching, queues, cost planning).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True, highlight=False, soft_wrap=True)


@app.callback()
def _root() -> None:
    """tenfold: serve AI models at scale."""
    # Like uvicorn and `python -m`: a MODULE:CLASS target resolves against the current
    # directory too (every command: serve, worker, optimize, profile, index...).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _curl_line(host: str, port: int, model: str, cls: type, auth: bool = False) -> str:
    from tenfold.examples.classify import Classify
    from tenfold.examples.embed import Embed

    # Subclasses included: an optimized variant of embed (OnnxEmbed) takes the same input.
    if issubclass(cls, Embed):
        example = '{"input": "The quick brown fox"}'
    elif issubclass(cls, Classify):
        example = (
            '{"input": {"sepal_length": 5.1, "sepal_width": 3.5, '
            '"petal_length": 1.4, "petal_width": 0.2}}'
        )
    else:
        example = '{"input": ...}'
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    key = ' -H "authorization: Bearer $TENFOLD_KEY"' if auth else ""
    return (
        f"curl -s http://{shown}:{port}/v1/models/{model}/predict{key} "
        f"-H 'content-type: application/json' -d '{example}'"
    )


@app.command()
def serve(
    targets: Annotated[
        list[str] | None, typer.Argument(help="MODULE:CLASS of a tenfold.Model subclass")
    ] = None,
    example: Annotated[
        list[str] | None,
        typer.Option(help=f"Serve a bundled example: {', '.join(EXAMPLES)} (repeatable)"),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [8000]")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes per model [CPU: one per core, max 4; GPU: 1]"),
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Max items per batch [model's, else 32]")
    ] = None,
    batch_timeout_ms: Annotated[
        float | None,
        typer.Option(help="Max wait of the oldest item before a flush [model's, else 10]"),
    ] = None,
    latency_budget_ms: Annotated[
        float | None, typer.Option(help="Adaptive batching: per-request latency budget")
    ] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Request body limit [10 MiB]")] = None,
    variant: Annotated[
        str | None, typer.Option(help="Serve an optimized variant directory (tenfold optimize)")
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(help="Cache backend URL: memory:// (default) or redis://host:port/db"),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Turn every cache layer off")
    ] = False,
    price_per_hour: Annotated[
        float | None, typer.Option(help="$ per worker (accelerator) hour for cost figures")
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            help="Durable queue URL (sqlite:///path/queue.db, redis://host:port/db); predict "
            "then goes through it too. Default: an embedded SQLite queue for the job API"
        ),
    ] = None,
    no_queue: Annotated[bool, typer.Option("--no-queue", help="No job API, no queue")] = False,
    no_local_workers: Annotated[
        bool,
        typer.Option(
            "--no-local-workers", help="API only: remote `tenfold worker`s serve the --queue"
        ),
    ] = False,
    autoscale: Annotated[
        bool,
        typer.Option(
            "--autoscale",
            help="Serve queued jobs with `tenfold worker` processes scaled on queue depth "
            "(the seed rules, or [autoscale] in --config)",
        ),
    ] = False,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            help="Turn auth on: API keys, one per line (KEY or TENANT KEY); also "
            "TENFOLD_API_KEYS=k1,k2. /healthz and /readyz stay open"
        ),
    ] = None,
    rate_limit_rps: Annotated[
        float | None,
        typer.Option(help="Requests/s per tenant (API key), 429 over it [0: no limit]"),
    ] = None,
    rate_limit_burst: Annotated[
        int | None, typer.Option(help="Requests a tenant may make at once [one second's worth]")
    ] = None,
    rate_limit_url: Annotated[
        str | None,
        typer.Option(help="Where limits count: memory:// [default] or redis://host:port/db"),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file")] = None,
    log_level: Annotated[str, typer.Option(help="Log level")] = "info",
) -> None:
    """Serve models over HTTP with dynamic batching."""
    import uvicorn

    from tenfold.config import load_settings
    from tenfold.server.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(
            targets=[*(targets or []), *(example or [])],
            config_path=config,
            environ=os.environ,
            server_flags={
                "host": host,
                "port": port,
                "max_body_bytes": max_body_bytes,
                "cache_url": "" if no_cache else cache,
                "price_per_hour_usd": price_per_hour,
                "queue_url": "" if no_queue else queue,
                "predict_via_queue": True if queue else None,
                "local_workers": False if no_local_workers else None,
                "autoscale": True if autoscale else None,
                "autoscale_config": str(config) if config else None,
                "api_key_file": str(api_key_file) if api_key_file else None,
                "rate_limit_rps": rate_limit_rps,
                "rate_limit_burst": rate_limit_burst,
                "rate_limit_url": rate_limit_url,
            },
            model_flags={
                "workers": workers,
                "max_batch_size": max_batch_size,
                "batch_timeout_ms": batch_timeout_ms,
                "latency_budget_ms": latency_budget_ms,
            },
            variant=variant,
        )
    except (ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None

    state: dict[str, Any] = {"server": None, "failed": None}

    def on_ready(service: Any, index: int, info: dict[str, Any]) -> None:
        console.print(
            f"  {service.name}: worker {index + 1}/{service.settings.workers} loaded "
            f"in {info.get('load_s', 0):.1f} s (pid {info.get('pid')})"
        )
        if service.ready:
            console.print(
                f"[green]ready[/green]: {service.name} {service.version}. Try:\n  "
                + _curl_line(
                    settings.host,
                    settings.port,
                    service.name,
                    type(service.model),
                    auth=bool(settings.api_keys),
                )
            )

    def on_fatal(message: str) -> None:
        console.print(f"[red]error:[/red] {message}")
        state["failed"] = message
        if state["server"] is not None:
            state["server"].should_exit = True

    try:
        application = create_app(settings, on_ready=on_ready, on_fatal=on_fatal)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    remote = not application.state.server.runs_models
    for service in application.state.server.services.values():
        c = service.config
        mode = f"adaptive, budget {c.latency_budget_ms} ms" if c.adaptive else "fixed"
        where = (
            "no model in this process: `tenfold worker`s serve it through the queue"
            if remote
            else f"on {service.settings.workers} worker(s)"
        )
        console.print(
            f"tenfold: loading {service.name} ({service.target}, version {service.version}) "
            f"{where}; batching {mode}, "
            f"max_batch_size {c.max_batch_size}, batch_timeout_ms {c.batch_timeout_ms}"
        )
    if settings.api_keys:
        tenants = sorted({k.tenant for k in settings.api_keys})
        console.print(
            f"tenfold: auth on: {len(settings.api_keys)} API key(s), tenants {', '.join(tenants)}; "
            "/healthz and /readyz open"
        )
    if (limit := settings.rate_limit) is not None:
        counted = "this process" if settings.rate_limit_url.startswith("memory") else "Redis"
        console.print(
            f"tenfold: rate limit {limit.rate_per_s:g} requests/s per tenant, burst "
            f"{limit.burst}, counted in {counted}"
        )
    console.print(f"tenfold: listening on http://{settings.host}:{settings.port} (docs at /docs)")
    app_server = application.state.server

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            # From the signal handler onto the loop: queued items answer 503 at once.
            if app_server.loop is not None:
                app_server.loop.call_soon_threadsafe(app_server.begin_shutdown)

    server = Server(
        uvicorn.Config(
            application,
            host=settings.host,
            port=settings.port,
            log_level=log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        )
    )
    state["server"] = server
    server.run()
    if state["failed"]:
        raise typer.Exit(1)


def _needs_extra(name: str, extra: str, exc: ImportError) -> None:
    """Stand in for a command whose optional dependencies are not installed."""

    @app.command(
        name,
        help=f"(needs: pip install 'tenfold\\[{extra}]')",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def _missing() -> None:
        console.print(
            f"[red]error:[/red] `tenfold {name}` needs pip install 'tenfold\\[{extra}]' ({exc})"
        )
        raise typer.Exit(2)


def _register_subcommands() -> None:
    """The other parts' commands, under the one ``tenfold`` CLI. A part whose optional
    dependencies are missing gets a stand-in that says which extra to install."""
    try:
        from tenfold.planner import cli as planner_cli

        app.command("profile")(planner_cli.profile_cmd)
        app.command("plan")(planner_cli.plan_cmd)
    except ImportError as exc:
        _needs_extra("profile", "planner", exc)
        _needs_extra("plan", "planner", exc)
    try:
        from tenfold.autoscale import cli as autoscale_cli

        app.command("autoscale")(autoscale_cli.autoscale)
        app.command("simulate")(autoscale_cli.simulate)
        app.add_typer(autoscale_cli.deploy_app, name="deploy")
    except ImportError as exc:
        for name in ("autoscale", "simulate", "deploy"):
            _needs_extra(name, "autoscale", exc)
    try:
        from tenfold.index import cli as index_cli

        app.add_typer(index_cli.app, name="index")
    except ImportError as exc:
        _needs_extra("index", "index", exc)
    from tenfold.queue import cli as queue_cli

    app.command("worker")(queue_cli.worker_command)
    app.add_typer(queue_cli.jobs_app, name="jobs")
    try:
        from tenfold.optimize import cli as optimize_cli

        app.command("optimize")(optimize_cli.optimize)
    except ImportError as exc:
        _needs_extra("optimize", "optimize", exc)
    try:
        from tenfold.features import cli as features_cli

        app.add_typer(features_cli.app, name="features")
    except ImportError as exc:
        _needs_extra("features", "features", exc)


_register_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
