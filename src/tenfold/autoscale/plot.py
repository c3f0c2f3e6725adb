"""A PNG of a simulation: traffic, backlog, workers and waits on one time axis."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenfold.autoscale.simulate import SimulationResult


def plot_timeline(result: SimulationResult, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    rows = result.rows
    minutes = [r.t_s / 60.0 for r in rows]
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    axes[0].plot(minutes, [r.qps for r in rows], label="offered qps")
    axes[0].plot(minutes, [r.served for r in rows], label="served / s", alpha=0.7)
    axes[0].set_ylabel("jobs/s")
    axes[0].legend(loc="upper right")
    axes[1].plot(minutes, [r.depth for r in rows], color="tab:red")
    axes[1].set_ylabel("queue depth")
    axes[2].step(minutes, [r.workers for r in rows], where="post", label="running")
    axes[2].step(minutes, [r.desired for r in rows], where="post", label="desired", alpha=0.7)
    axes[2].set_ylabel("workers")
    axes[2].legend(loc="upper right")
    axes[3].plot(minutes, [r.oldest_age_s for r in rows], label="oldest queued age")
    axes[3].plot(minutes, [r.avg_wait_s for r in rows], label="avg wait", alpha=0.7)
    axes[3].axhline(result.summary.slo_wait_s, color="gray", linestyle="--", label="wait SLO")
    axes[3].set_ylabel("seconds")
    axes[3].set_xlabel("minutes")
    axes[3].legend(loc="upper right")
    firing = [r.t_s / 60.0 for r in rows if r.alerts]
    for ax in axes:
        for m in firing[:: max(1, len(firing) // 400)]:
            ax.axvspan(m, m + 1 / 60.0, color="orange", alpha=0.08, linewidth=0)
    s = result.summary
    fig.suptitle(
        f"p99 wait {s.wait_p99_s:g}s, SLO minutes violated {s.slo_minutes_violated}, "
        f"worker-hours {s.worker_hours:.2f} ({s.worker_hours_vs_static:.0%} of static peak)"
    )
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
