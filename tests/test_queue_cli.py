"""``jobs submit|status|cancel|requeue-dead|stats`` against a real SQLite queue."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tenfold.queue.cli import app


def test_jobs_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path}/q.db"
    out = runner.invoke(app, ["jobs", "submit", "echo", "--input", "[1, 2]", "--queue", url])
    assert out.exit_code == 0, out.output
    job = json.loads(out.output)
    assert job["status"] == "queued" and job["model"] == "echo"

    again = runner.invoke(
        app, ["jobs", "submit", "echo", "--input", "3", "--queue", url, "--idempotency-key", "k"]
    )
    same = runner.invoke(
        app, ["jobs", "submit", "echo", "--input", "3", "--queue", url, "--idempotency-key", "k"]
    )
    assert json.loads(again.output)["id"] == json.loads(same.output)["id"]

    status = runner.invoke(app, ["jobs", "status", job["id"], "--queue", url])
    assert status.exit_code == 0 and json.loads(status.output)["id"] == job["id"]

    cancelled = runner.invoke(app, ["jobs", "cancel", job["id"], "--queue", url])
    assert cancelled.exit_code == 0 and json.loads(cancelled.output)["cancelled"] is True
    twice = runner.invoke(app, ["jobs", "cancel", job["id"], "--queue", url])
    assert twice.exit_code == 1

    missing = runner.invoke(app, ["jobs", "status", "nope", "--queue", url])
    assert missing.exit_code == 1

    requeued = runner.invoke(app, ["jobs", "requeue-dead", "echo", "--queue", url])
    assert json.loads(requeued.output) == {"requeued": 0, "model": "echo"}

    stats = runner.invoke(app, ["jobs", "stats", "--queue", url])
    assert [s["model"] for s in json.loads(stats.output)] == ["echo"]
    assert json.loads(stats.output)[0]["queued"] == 1
