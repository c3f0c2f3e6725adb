"""Rendering: rich tables for the terminal and a PNG of the batch curve.

Nothing here computes a figure; the numbers come from :mod:`tenfold.planner.plan`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from tenfold.planner.plan import BatchRow, PlanRow
from tenfold.planner.profile import Profile


def usd(value: float | None) -> str:
    """``$2,173``, ``$1.01``, ``$0.00279``: whole dollars for big sums, 3 digits for small."""
    if value is None:
        return "n/a"
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:,.2f}"
    if value == 0:
        return "$0"
    # Three significant digits in plain decimals: $0.00279, $0.0000348 (never 3.48e-05).
    return f"${value:.{max(2, 2 - math.floor(math.log10(value)))}f}"


def ms(value: float) -> str:
    """``12.0 ms``; ``overloaded`` for an unstable queue (inf); ``n/a`` for NaN (a fleet
    scaled to zero: the first request waits for a cold start, which no profile measures)."""
    if math.isnan(value):
        return "n/a (cold start)"
    return "overloaded" if not math.isfinite(value) else f"{value:.1f} ms"


def batch_table_view(rows: Sequence[BatchRow], *, title: str, price_per_hour_usd: float) -> Table:
    """The seed's batching table: batch size, latency, throughput, relative, cost per 1K."""
    t = Table(
        title=title,
        caption=f"batch latency p50/p99; $ per 1K requests at ${price_per_hour_usd:g}/hour, "
        "fully busy",
    )
    for col in ("Batch", "p50", "p99", "Items/s", "Relative", "Busy"):
        t.add_column(col, justify="right")
    t.add_column("$ per 1K req", justify="right")
    for r in rows:
        t.add_row(
            str(r.batch_size),
            ms(r.latency_p50_ms),
            ms(r.latency_p99_ms),
            f"{r.items_per_s:,.0f}",
            f"{r.relative_throughput:.2f}x",
            "-" if r.busy_fraction is None else f"{r.busy_fraction:.0%}",
            usd(r.cost_per_1k_requests_usd),
        )
    return t


def plan_table_view(rows: Sequence[PlanRow], *, title: str, first_column: str = "") -> Table:
    t = Table(title=title)
    t.add_column(first_column, justify="left")
    for col in (
        "QPS",
        "Cache hits",
        "Batch",
        "Timeout",
        "Replicas",
        "Utilization",
        "Predicted p99",
        "Monthly cost",
        "$ per 1K req",
    ):
        t.add_column(col, justify="right")
    for r in rows:
        p99 = ms(r.predicted_p99_ms) + ("" if r.meets_budget else " (misses budget)")
        t.add_row(
            r.label,
            f"{r.qps:,.0f}",
            f"{r.cache_hit_rate:.0%}",
            str(r.batch_size),
            ms(r.batch_timeout_ms),
            str(r.replicas),
            f"{r.utilization:.0%}",
            p99,
            usd(r.monthly_cost_usd),
            usd(r.cost_per_1k_requests_usd),
        )
    return t


def save_png(profile: Profile, path: str | Path) -> None:
    """Latency (p50, p99) and throughput against batch size, on one figure with two axes."""
    # The object API with an Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sizes = [p.batch_size for p in profile.points]
    fig = Figure(figsize=(7.5, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(sizes, [p.latency_p50_ms for p in profile.points], "o-", label="latency p50")
    ax.plot(sizes, [p.latency_p99_ms for p in profile.points], "o--", label="latency p99")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("batch latency (ms)")
    ax2 = ax.twinx()
    ax2.plot(
        sizes, [p.items_per_s for p in profile.points], "s-", color="tab:green", label="items/s"
    )
    ax2.set_ylabel("throughput (items/s)")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [str(line.get_label()) for line in lines], loc="upper left")
    ax.grid(True, alpha=0.3)
    fig.suptitle(f"{profile.model} ({profile.version}) on {profile.device}", fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path))
