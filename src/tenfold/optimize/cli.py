"""``tenfold optimize``: build faster variants of a model and measure them.

::

    tenfold optimize --example embed --out opt/
    tenfold optimize mypkg.models:Embedder --calibration cal.jsonl --out opt/ \\
        --variants onnx-fp32,onnx-int8 --batch-size 32 --min-cosine 0.98
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    rich_markup_mode=None,
    help="Build optimized variants (ONNX, int8, fp16, bf16) and measure them.",
)


def _load_metric(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise typer.BadParameter("--metric must be MODULE:FUNCTION")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise typer.BadParameter(f"cannot load metric {spec!r}: {exc}") from exc


def set_threads(threads: int) -> None:
    """Intra-op threads of torch; the ONNX Runtime variants are measured with as many."""
    import torch

    torch.set_num_threads(threads)


@app.command()
def optimize(
    target: str = typer.Argument(None, help="MODULE:CLASS of the model to optimize."),
    example: str = typer.Option(None, "--example", help="A bundled example: embed or classify."),
    out: Path = typer.Option(..., "--out", help="Directory for the variants and the report."),
    calibration: Path = typer.Option(
        None, "--calibration", help="JSONL of inputs (optional for the bundled examples)."
    ),
    variants: str = typer.Option(
        "onnx-fp32,onnx-int8,torch-int8,fp16,bf16", "--variants", help="Comma-separated."
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    min_cosine: float = typer.Option(0.98, "--min-cosine", help="Gate for embeddings."),
    max_accuracy_drop: float = typer.Option(
        0.01, "--max-accuracy-drop", help="Gate for classifiers."
    ),
    metric: str = typer.Option(
        None, "--metric", help="MODULE:FUNCTION(reference, outputs) -> float, higher is better."
    ),
    min_metric: float = typer.Option(0.99, "--min-metric", help="Gate for --metric."),
    samples: int = typer.Option(128, "--samples", min=2, help="Calibration inputs used."),
    slice_s: float = typer.Option(
        1.0, "--slice-s", help="Seconds per variant per measuring round (3 rounds)."
    ),
    threads: int = typer.Option(
        None, "--threads", min=1, help="Threads for torch and ONNX Runtime (default: torch's)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Build variants the hardware cannot run natively too."
    ),
) -> None:
    """Build each variant, measure speed, size and quality, and recommend one."""
    from rich.console import Console

    from tenfold.optimize.errors import OptimizeError
    from tenfold.optimize.optimizer import OptimizeConfig
    from tenfold.optimize.optimizer import optimize as run_optimize
    from tenfold.optimize.quality import Gate
    from tenfold.optimize.variants import VariantName

    if (target is None) == (example is None):
        raise typer.BadParameter("give exactly one of MODULE:CLASS or --example NAME")
    try:
        config = OptimizeConfig(
            out_dir=out,
            variants=tuple(VariantName.parse_list(variants)),
            batch_size=batch_size,
            gate=Gate(
                min_cosine=min_cosine, max_accuracy_drop=max_accuracy_drop, min_metric=min_metric
            ),
            calibration=calibration,
            samples=samples,
            slice_s=slice_s,
            force=force,
            metric=_load_metric(metric) if metric else None,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if threads is not None:
        set_threads(threads)
    console = Console(stderr=True)
    try:
        with console.status("starting") as status:

            def progress(message: str) -> None:
                console.log(message)
                status.update(message)

            report = run_optimize(target or example, config, progress=progress)
    except OptimizeError as exc:
        # soft_wrap: one line whatever the terminal width.
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc
    Console().print(report.rich_table())
    console.print(f"report: {out / 'report.md'}, {out / 'report.json'}")


if __name__ == "__main__":
    app()
