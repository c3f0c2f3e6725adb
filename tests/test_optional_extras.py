"""The embedded defaults (the README's first command installs only the `models` extra) must
not import a package of another extra: CI installs them all, so only a test that hides them
can catch a top-level `import redis` slipping into the serving path."""

from __future__ import annotations

import subprocess
import sys

from serve_support import SRC, TESTS

OTHER_EXTRAS = [
    "redis",
    "hiredis",
    "yaml",
    "matplotlib",
    "faiss",
    "psycopg",
    "onnx",
    "onnxruntime",
    "pynvml",
    "httpx",
]

SCRIPT = f"""
import sys
for name in {OTHER_EXTRAS!r}:
    sys.modules[name] = None  # import fails as if not installed
from typer.testing import CliRunner
import tenfold.cli
from tenfold.config import load_settings
from tenfold.server.app import create_app
app = create_app(load_settings(targets=["classify"], environ={{}}))
assert app.state.server.limiter is None
out = CliRunner().invoke(tenfold.cli.app, ["serve", "--help"])
assert out.exit_code == 0, out.output
print("ok")
"""


def test_serving_on_the_embedded_defaults_needs_no_other_extra() -> None:
    env = {"PYTHONPATH": f"{SRC}:{TESTS}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
