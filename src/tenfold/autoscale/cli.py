"""Command line: ``autoscale``, ``simulate`` and ``deploy k8s``.

Run standalone with ``python -m tenfold.autoscale.cli --help``; the main ``tenfold``
CLI registers the same commands (``app.registered_commands`` and ``deploy_app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tenfold.autoscale.config import AutoscaleConfig, ConfigError, load_config

app = typer.Typer(
    rich_markup_mode=None,
    help="Autoscaling on queue depth, queue alerts, Kubernetes export, traffic simulator.",
    no_args_is_help=True,
    add_completion=False,
)
deploy_app = typer.Typer(
    rich_markup_mode=None, help="Export deployment manifests.", no_args_is_help=True
)
app.add_typer(deploy_app, name="deploy")
console = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="tenfold.toml with an [autoscale] table")
]


def _config(path: Path | None) -> AutoscaleConfig:
    try:
        return load_config(path)
    except (ConfigError, OSError) as exc:
        console.print(f"[red]config error:[/] {exc}")
        raise typer.Exit(2) from exc


@deploy_app.command("k8s")
def deploy_k8s(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the YAML into")],
    config: ConfigOpt = None,
) -> None:
    """Deployments (API, workers), a Service, a KEDA ScaledObject and alert rules."""
    from tenfold.autoscale.k8s import ExportError, export, has_credentials, queue_secret_name

    cfg = _config(config)
    try:
        written = export(cfg, out)
    except ExportError as exc:
        console.print(f"[red]cannot export:[/] {exc}")
        raise typer.Exit(2) from exc
    for path in written:
        console.print(f"wrote {path}")
    if has_credentials(cfg):
        # The manifests read the queue URL and password from a Secret; never write it here.
        console.print(
            f"the queue URL has a password: create the Secret {queue_secret_name(cfg)!r} "
            "first, e.g. kubectl create secret generic "
            f"{queue_secret_name(cfg)} --from-literal=url='<queue url with prefix>' "
            "--from-literal=username=<user> --from-literal=password=<password>"
        )


@app.command()
def simulate(
    trace: Annotated[
        str,
        typer.Option(
            "--trace", help="CSV t_s,qps, or a bundled name: steady, daily_cycle, spike_10x"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output directory")],
    profile: Annotated[
        Path | None, typer.Option("--profile", help="profile.json (tenfold profile)")
    ] = None,
    worker_rps: Annotated[
        float | None, typer.Option("--worker-rps", help="Constant items/s per worker")
    ] = None,
    config: ConfigOpt = None,
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write timeline.png")] = True,
) -> None:
    """Replay a traffic trace through the scaling rules and alerts; write timeline and summary."""
    from tenfold.autoscale.service import ProfileError, ServiceModel
    from tenfold.autoscale.simulate import simulate as run_simulation
    from tenfold.autoscale.simulate import write_outputs
    from tenfold.autoscale.traces import TraceError, example_trace_path, load_trace

    if (profile is None) == (worker_rps is None):
        console.print("[red]give exactly one of --profile or --worker-rps[/]")
        raise typer.Exit(2)
    cfg = _config(config)
    trace_path = Path(trace)
    if not trace_path.exists():
        try:
            trace_path = example_trace_path(trace)
        except FileNotFoundError as exc:
            console.print(f"[red]no trace file or bundled trace named {trace!r}[/]")
            raise typer.Exit(2) from exc
    try:
        loaded = load_trace(trace_path)
        service = (
            ServiceModel.from_profile(profile, cfg.simulate.batch_size)
            if profile is not None
            else ServiceModel.constant(float(worker_rps or 0.0))
        )
    except (TraceError, ProfileError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    result = run_simulation(loaded, service, cfg)
    for path in write_outputs(result, out, plot=plot):
        console.print(f"wrote {path}")
    _print_summary(result.summary.to_dict())


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(show_header=False)
    for key in (
        "service",
        "wait_p50_s",
        "wait_p99_s",
        "slo_wait_s",
        "slo_minutes_violated",
        "worker_hours",
        "static_peak_workers",
        "static_peak_worker_hours",
        "worker_hours_vs_static",
        "peak_workers",
        "alerts_fired",
    ):
        table.add_row(key, str(summary[key]))
    Console().print(table)


def standalone_worker_argv(target: str, queue: str, name: str, cfg: Any) -> list[str]:
    """``tenfold autoscale``'s default worker: serves the queue the scaler watches
    (``name``), and finishes its batch before the supervisor's SIGKILL."""
    from tenfold.autoscale.scaler import worker_command
    from tenfold.autoscale.supervisor import worker_grace_s

    grace = worker_grace_s(cfg.local.grace_s)
    return worker_command(target, queue, "--queue-name", name, "--grace-s", f"{grace:g}")


@app.command()
def autoscale(
    target: Annotated[str, typer.Argument(help="MODULE:CLASS the workers run")],
    queue: Annotated[str, typer.Option("--queue", help="Queue URL (sqlite:///... or redis://...)")],
    model: Annotated[
        str | None, typer.Option("--model", help="Queue (model) name [config queue.model]")
    ] = None,
    config: ConfigOpt = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="POST alert transitions here")
    ] = None,
) -> None:
    """Run local worker processes, scaled on the queue's depth by the configured rules."""
    from tenfold.autoscale.scaler import LocalScaler
    from tenfold.autoscale.sinks import AlertSink, LogSink, WebhookSink
    from tenfold.autoscale.supervisor import WorkerSupervisor

    try:
        from tenfold.queue import from_url
    except ImportError as exc:
        console.print("[red]the queue package (tenfold.queue) is not available[/]")
        raise typer.Exit(2) from exc

    cfg = _config(config)
    name = model or cfg.queue.model
    argv = list(cfg.local.worker_argv) or standalone_worker_argv(target, queue, name, cfg)
    sinks: list[AlertSink] = [LogSink()]
    hook = webhook or cfg.alert_webhook_url
    if hook:
        sinks.append(WebhookSink(hook))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    supervisor = WorkerSupervisor(argv, grace_s=cfg.local.grace_s)
    scaler = LocalScaler(cfg, supervisor, sinks=sinks)

    async def main() -> None:
        backend = from_url(queue)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        async def read_stats() -> Any:
            return await backend.stats(name)

        try:
            await scaler.run(read_stats, stop)
        finally:
            with contextlib.suppress(Exception):
                await backend.close()

    console.print(
        f"autoscaling {target} on {queue} (queue {name!r}): "
        f"min {cfg.scaling.min_workers}, max {cfg.scaling.max_workers}"
    )
    asyncio.run(main())


if __name__ == "__main__":
    app()
