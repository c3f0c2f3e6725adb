"""The features command line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tenfold.features.cli import app


def test_materialize_with_a_missing_entities_file_is_one_error_line(tmp_path: Path):
    missing = tmp_path / "missing.txt"
    result = CliRunner().invoke(
        app,
        [
            "materialize",
            "tenfold.features.example:user_features",
            "--source",
            f"sqlite:///{tmp_path}/features.db",
            "--entities",
            str(missing),
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error:" in result.output and "missing.txt" in result.output
    assert "Traceback" not in result.output
