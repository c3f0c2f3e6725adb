"""``tenfold profile`` and ``tenfold plan`` (also ``python -m tenfold.planner.cli``).

    tenfold profile --example embed --batch-sizes 1,2,4,8,16,32,64 --seconds 2
    tenfold plan --profile profile.json --qps 1000 --p99-ms 100 --cache-hit-rate 0.4 \\
        --gpu a10g [--spot] [--scales] [--json]
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from tenfold.planner.catalog import Catalog, CatalogError, load_catalog
from tenfold.planner.memory import GIB, activation_bytes_per_item, memory_advice
from tenfold.planner.plan import (
    PlanRequest,
    PlanRow,
    batch_table,
    comparisons,
    ladder,
    plan,
    translate,
)
from tenfold.planner.profile import Profile, ProfileError, load_profile, save_profile
from tenfold.planner.profiler import (
    EventKind,
    ProfileEvent,
    ProfilerError,
    parse_batch_sizes,
    run_profile,
)
from tenfold.planner.report import batch_table_view, plan_table_view, save_png, usd
from tenfold.planner.sizing import BudgetInfeasible, PlanInfeasible

#: g5.xlarge on demand, the seed batching table's price.
DEFAULT_PRICE_PER_HOUR_USD = 1.006

app = typer.Typer(
    rich_markup_mode=None,
    help="Measure a model's batch curve and plan replicas, batch size and cost.",
    no_args_is_help=True,
    add_completion=False,
)


def _fail(console: Console, message: str) -> typer.Exit:
    # soft_wrap: one line whatever the terminal width, so it greps and pastes whole.
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _check_writable(path: Path, flag: str) -> None:
    """Raise ``ValueError`` unless ``path`` can be written (checked before a long sweep)."""
    parent = path.parent
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a directory, not a file")
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(path if path.exists() else parent, os.W_OK):
        raise ValueError(f"{flag} {path} is not writable")


def _check_amount(flag: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{flag} must be a finite number >= 0, got {value:g}")


@app.command("profile")
def profile_cmd(
    target: Annotated[
        str | None, typer.Argument(help="Model as MODULE:CLASS, or an example: embed, classify.")
    ] = None,
    example: Annotated[
        str | None, typer.Option("--example", help="Profile a bundled example: embed or classify.")
    ] = None,
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Comma-separated batch sizes to sweep.")
    ] = "1,2,4,8,16,32,64",
    seconds: Annotated[
        float, typer.Option("--seconds", help="Seconds of measurement per batch size.")
    ] = 2.0,
    out: Annotated[Path, typer.Option("--out", help="Where to write the profile.")] = Path(
        "profile.json"
    ),
    png: Annotated[
        Path | None, typer.Option("--png", help="Where to save the latency/throughput plot.")
    ] = Path("profile.png"),
    inputs: Annotated[
        Path | None,
        typer.Option(
            "--inputs", help="JSON lines of calibration inputs (required for your models)."
        ),
    ] = None,
    price_per_hour: Annotated[
        float, typer.Option("--price-per-hour", help="$/hour of this device, for the cost column.")
    ] = DEFAULT_PRICE_PER_HOUR_USD,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated inputs.")] = 0,
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="CPU threads for the model (default: the library's)."),
    ] = None,
    min_batches: Annotated[
        int, typer.Option("--min-batches", help="Batches measured at least, per batch size.")
    ] = 5,
) -> None:
    """Run the model in a worker process and measure latency and throughput per batch size."""
    console = Console()
    if (target is None) == (example is None):
        raise _fail(console, "give a model as MODULE:CLASS, or --example embed|classify")
    chosen = example if example is not None else target
    assert chosen is not None
    try:
        sizes = parse_batch_sizes(batch_sizes)
        _check_writable(out, "--out")
        if png is not None:
            _check_writable(png, "--png")
    except ValueError as exc:
        raise _fail(console, str(exc)) from exc
    total = len(sizes)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"loading {chosen}", total=total)
        done = 0

        def on_event(ev: ProfileEvent) -> None:
            nonlocal done
            if ev.kind is EventKind.LOADED:
                progress.update(task, description=ev.message)
            elif ev.kind is EventKind.PROGRESS:
                progress.update(
                    task, completed=done + ev.fraction, description=f"batch size {ev.batch_size}"
                )
            elif ev.kind is EventKind.POINT:
                done += 1
                progress.update(task, completed=done)

        try:
            result = run_profile(
                chosen,
                batch_sizes=sizes,
                seconds=seconds,
                inputs_path=inputs,
                seed=seed,
                min_batches=min_batches,
                threads=threads,
                on_event=on_event,
            )
        except (ProfilerError, ValueError) as exc:
            raise _fail(console, str(exc)) from exc
    save_profile(result, out)
    title = f"{result.model} ({result.version}) on {result.device}"
    console.print(
        batch_table_view(
            batch_table(result, price_per_hour), title=title, price_per_hour_usd=price_per_hour
        )
    )
    console.print(f"profile written to {out}")
    if png is not None:
        save_png(result, png)
        console.print(f"plot saved to {png}")


@app.command("plan")
def plan_cmd(
    profile_path: Annotated[
        Path, typer.Option("--profile", help="profile.json written by `tenfold profile`.")
    ],
    p99_ms: Annotated[float, typer.Option("--p99-ms", help="Latency budget: p99 in ms.")],
    qps: Annotated[
        float | None, typer.Option("--qps", help="Requests per second to plan for.")
    ] = None,
    cache_hit_rate: Annotated[
        float, typer.Option("--cache-hit-rate", help="Share of requests the cache answers.")
    ] = 0.0,
    gpu: Annotated[str, typer.Option("--gpu", help="Catalog key of the GPU to plan on.")] = "a10g",
    spot: Annotated[
        bool, typer.Option("--spot", help="Price at spot instead of on demand.")
    ] = False,
    scales: Annotated[
        bool, typer.Option("--scales", help="Also plan the ladder 10 .. 100,000 QPS.")
    ] = False,
    replicas: Annotated[
        int | None, typer.Option("--replicas", help="Price this fixed fleet instead of sizing.")
    ] = None,
    price_per_hour: Annotated[
        float | None,
        typer.Option("--price-per-hour", help="$/hour per replica; overrides the catalog."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    catalog_path: Annotated[
        Path | None, typer.Option("--catalog", help="A GPU catalog TOML to use instead.")
    ] = None,
    profile_gpu: Annotated[
        str | None,
        typer.Option(
            "--profile-gpu", help="Catalog key of the device the profile was measured on."
        ),
    ] = None,
    target_utilization: Annotated[
        float, typer.Option("--target-utilization", help="Busy share to size replicas for.")
    ] = 0.7,
    dp_efficiency: Annotated[
        float, typer.Option("--dp-efficiency", help="Throughput kept per added replica.")
    ] = 0.95,
    min_replicas: Annotated[
        int, typer.Option("--min-replicas", help="Replicas kept even with no traffic.")
    ] = 1,
    serving_overhead_ms: Annotated[
        float,
        typer.Option(
            "--serving-overhead-ms",
            help="Time serving adds to each batch beyond the profiled model time (HTTP, IPC).",
        ),
    ] = 3.0,
    weights_gib: Annotated[
        float | None, typer.Option("--weights-gib", help="Model weights in GiB (memory advice).")
    ] = None,
    activation_mib_per_item: Annotated[
        float | None,
        typer.Option("--activation-mib-per-item", help="Activation memory per item in MiB."),
    ] = None,
) -> None:
    """Pick batch size, timeout and replicas for a load and a p99 budget; price them."""
    console = Console()
    try:
        prof = load_profile(profile_path)
        catalog = load_catalog(catalog_path)
        target = catalog.get(gpu)
        source = catalog.get(profile_gpu) if profile_gpu else None
        if qps is None and not scales:
            raise ValueError("give --qps, or --scales for the whole ladder")
        _check_amount("--weights-gib", weights_gib)
        _check_amount("--activation-mib-per-item", activation_mib_per_item)
        price = price_per_hour if price_per_hour is not None else target.price_per_hour(spot=spot)
        request = PlanRequest(
            qps=qps if qps is not None else 0.0,
            p99_budget_ms=p99_ms,
            price_per_hour_usd=price,
            cache_hit_rate=cache_hit_rate,
            target_utilization=target_utilization,
            dp_efficiency=dp_efficiency,
            min_replicas=min_replicas,
            replicas=replicas,
            serving_overhead_ms=serving_overhead_ms,
        )
    except (ProfileError, CatalogError, ValueError) as exc:
        raise _fail(console, str(exc)) from exc
    moved = translate(prof, target, catalog, source)
    points = moved.points
    notes = [moved.note]
    if price_per_hour is not None:
        notes.append(f"price ${price:g}/hour given on the command line, not from the catalog")
    doc: dict[str, Any] = {
        "model": prof.model,
        "version": prof.version,
        "profile_device": prof.device,
        "gpu": target.key,
        "gpu_name": target.name,
        "spot": spot,
        "price_per_hour_usd": price,
        "prices_as_of": catalog.prices_as_of,
        "speed_factor": moved.speed_factor,
        "serving_overhead_ms": serving_overhead_ms,
        "qps": qps,
        "cache_hit_rate": cache_hit_rate,
        "p99_budget_ms": p99_ms,
    }
    main = None
    comp_rows: list[PlanRow] = []
    if qps is not None:
        try:
            main = plan(points, request)
        except BudgetInfeasible as exc:
            _infeasible(console, as_json, doc, str(exc), min_p99_ms=exc.min_p99_ms)
        except PlanInfeasible as exc:
            _infeasible(console, as_json, doc, str(exc))
        assert main is not None
        comp_rows = comparisons(points, request)
        row = main.to_dict()  # non-finite figures as null
        doc |= {
            "replicas": main.replicas,
            "batch_size": main.batch_size,
            "batch_timeout_ms": row["batch_timeout_ms"],
            "utilization": main.utilization,
            "monthly_cost_usd": main.monthly_cost_usd,
            "cost_per_1k_requests_usd": main.cost_per_1k_requests_usd,
            "predicted_p99_ms": row["predicted_p99_ms"],
            "comparisons": [r.to_dict() for r in comp_rows],
        }
        if main.replicas == 0:
            notes.append(
                "no replica is kept with no traffic (--min-replicas 0): the first request "
                "waits for one to start, which the profile does not measure, so no p99 "
                "is predicted"
            )
    ladder_rows = ladder(points, request) if scales else []
    if scales:
        doc["scales"] = [r.to_dict() for r in ladder_rows]
    advice = _memory(prof, catalog, target.key, weights_gib, activation_mib_per_item, main, notes)
    doc["memory"] = advice
    doc["notes"] = notes
    if as_json:
        print(json.dumps(doc, indent=2, allow_nan=False))
        return
    _print_plan(console, prof, catalog, target.key, price, spot, request, doc)
    if main is not None:
        console.print(plan_table_view([main, *comp_rows], title="Plan and comparisons"))
    if ladder_rows:
        console.print(plan_table_view(ladder_rows, title=f"Scale ladder (p99 <= {p99_ms:g} ms)"))
    _print_notes(console, doc)


def _infeasible(
    console: Console, as_json: bool, doc: dict[str, Any], message: str, **extra: Any
) -> None:
    if as_json:
        print(json.dumps(doc | {"error": message} | extra, indent=2, allow_nan=False))
        raise typer.Exit(1)
    raise _fail(console, message)


def _memory(
    prof: Profile,
    catalog: Catalog,
    gpu_key: str,
    weights_gib: float | None,
    activation_mib: float | None,
    main: PlanRow | None,
    notes: list[str],
) -> dict[str, Any] | None:
    weights = weights_gib * GIB if weights_gib is not None else prof.weights_bytes
    if weights is None:
        notes.append("memory advice needs the model size: pass --weights-gib")
        return None
    per_item = (
        activation_mib * 2**20 if activation_mib is not None else activation_bytes_per_item(prof)
    )
    if per_item is None:
        per_item = 0.0
        notes.append("activation memory unknown (no per-batch memory in the profile): taken as 0")
    batch = main.batch_size if main is not None else prof.points[-1].batch_size
    advice = memory_advice(
        weights_bytes=weights,
        activation_bytes_per_item=per_item,
        batch_size=batch,
        gpu=catalog.get(gpu_key),
        catalog=catalog,
    )
    return asdict(advice)


def _print_plan(
    console: Console,
    prof: Profile,
    catalog: Catalog,
    gpu_key: str,
    price: float,
    spot: bool,
    request: PlanRequest,
    doc: dict[str, Any],
) -> None:
    gpu = catalog.get(gpu_key)
    console.print(
        f"[bold]{prof.model}[/] ({prof.version}) on [bold]{gpu.name}[/], "
        f"{'spot' if spot else 'on demand'} ${price:g}/hour per replica "
        f"[dim](prices as of {catalog.prices_as_of}; a month = 720 h)[/]",
        highlight=False,
    )
    if "replicas" in doc:
        p99 = doc["predicted_p99_ms"]
        console.print(
            f"Plan for {request.qps:,.0f} QPS, {request.cache_hit_rate:.0%} cache hits, "
            f"p99 <= {request.p99_budget_ms:g} ms: [bold]batch size {doc['batch_size']}, "
            f"timeout {doc['batch_timeout_ms']:.1f} ms, {doc['replicas']} replica(s)[/], "
            f"{usd(doc['monthly_cost_usd'])}/month, {usd(doc['cost_per_1k_requests_usd'])} per "
            "1K requests, predicted p99 "
            + (f"{p99:.1f} ms" if p99 is not None else "n/a (no replica: cold start)"),
            highlight=False,
        )


def _print_notes(console: Console, doc: dict[str, Any]) -> None:
    if doc["memory"] is not None:
        console.print(f"Memory: {doc['memory']['message']}", highlight=False)
    for note in doc["notes"]:
        console.print(f"[dim]note: {note}[/]", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
