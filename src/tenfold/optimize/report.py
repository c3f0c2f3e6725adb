"""The optimization report: ranking, recommendation, and its three renderings
(a rich table, ``report.md``, ``report.json``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenfold.optimize.quality import Gate, Quality


@dataclass(frozen=True, slots=True)
class VariantResult:
    name: str
    speedup_batch1: float | None = None
    speedup_batch: float | None = None
    items_per_s_batch1: float | None = None
    items_per_s_batch: float | None = None
    size_bytes: int | None = None
    size_ratio: float | None = None
    quality: Quality | None = None
    passed_gate: bool = False
    skipped_reason: str | None = None
    directory: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "speedup_batch1": _round(self.speedup_batch1),
            "speedup_batch": _round(self.speedup_batch),
            "size_ratio": _round(self.size_ratio),
            "quality": self.quality.to_dict() if self.quality else None,
            "passed_gate": self.passed_gate,
            "skipped_reason": self.skipped_reason,
            "items_per_s_batch1": _round(self.items_per_s_batch1),
            "items_per_s_batch": _round(self.items_per_s_batch),
            "size_bytes": self.size_bytes,
            "directory": self.directory,
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def rank(results: Sequence[VariantResult]) -> list[VariantResult]:
    """Passing variants by speedup at the configured batch size (then batch 1), then the
    ones that failed the gate, then the skipped ones."""

    def key(r: VariantResult) -> tuple[int, float, float]:
        group = 2 if r.skipped_reason else (0 if r.passed_gate else 1)
        return (group, -(r.speedup_batch or 0.0), -(r.speedup_batch1 or 0.0))

    return sorted(results, key=key)


def recommend(ranked: Sequence[VariantResult], baseline: str) -> str:
    """The fastest variant that passes the gate; the original when none beats it."""
    for r in ranked:
        if r.passed_gate and not r.skipped_reason:
            return r.name if (r.speedup_batch or 0.0) > 1.0 else baseline
    return baseline


@dataclass(frozen=True, slots=True)
class Report:
    target: str
    hardware: str
    batch_size: int
    samples: int
    threads: int
    gate: Gate
    #: Name of the original model's entry, against which speedups are measured.
    baseline: str
    results: list[VariantResult] = field(default_factory=list)  # ranked

    @property
    def recommended(self) -> str:
        return recommend(self.results, self.baseline)

    def result(self, name: str) -> VariantResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "hardware": self.hardware,
            "batch_size": self.batch_size,
            "samples": self.samples,
            "threads": self.threads,
            "gate": {
                "min_cosine": self.gate.min_cosine,
                "max_accuracy_drop": self.gate.max_accuracy_drop,
                "min_metric": self.gate.min_metric,
            },
            "baseline": self.baseline,
            "recommended": self.recommended,
            "variants": [r.to_dict() for r in self.results],
        }

    def rows(self) -> list[list[str]]:
        """Cells of the table: variant, batch 1, batch N, size, quality, gate."""
        out = []
        for r in self.results:
            if r.skipped_reason:
                out.append([r.name, "-", "-", "-", "skipped: " + r.skipped_reason, "-"])
                continue
            out.append(
                [
                    r.name,
                    _x(r.speedup_batch1),
                    _x(r.speedup_batch),
                    _x(r.size_ratio),
                    r.quality.summary() if r.quality else "-",
                    "pass" if r.passed_gate else "FAIL",
                ]
            )
        return out

    def headers(self) -> list[str]:
        return ["variant", "batch 1", f"batch {self.batch_size}", "size", "quality", "gate"]

    def to_markdown(self) -> str:
        lines = [
            f"# tenfold optimize: {self.target}",
            "",
            f"Hardware: {self.hardware}; {self.threads} threads; {self.samples} calibration "
            f"inputs; speedups are items/s against {self.baseline} measured in the same run.",
            "",
            "| " + " | ".join(self.headers()) + " |",
            "|" + "---|" * len(self.headers()),
        ]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in self.rows()]
        lines += ["", f"Recommended: **{self.recommended}**", ""]
        return "\n".join(lines)

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(
            json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8"
        )
        (out_dir / "report.md").write_text(self.to_markdown(), encoding="utf-8")

    def rich_table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"tenfold optimize {self.target} ({self.hardware})")
        for h in self.headers():
            table.add_column(h)
        for row in self.rows():
            style = "bold green" if row[0] == self.recommended else None
            table.add_row(*row, style=style)
        table.caption = f"recommended: {self.recommended}"
        return table


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"
