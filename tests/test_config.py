"""Settings: defaults < TOML < environment < flags; validated when built."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenfold.cli import app
from tenfold.config import ModelSettings, ServerSettings, default_workers, load_settings

TOML = """
[server]
port = 9000
max_body_bytes = 2048
cache_url = ""

[models.embed]
target = "embed"
workers = 2
max_batch_size = 16
batch_timeout_ms = 4

[models.embed.options]
flavour = "x"
"""


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "tenfold.toml"
    cfg.write_text(TOML)
    s = load_settings(config_path=cfg)
    assert (s.host, s.port, s.max_body_bytes, s.cache_url) == ("127.0.0.1", 9000, 2048, None)
    (m,) = s.models
    assert (m.target, m.workers, m.max_batch_size, m.batch_timeout_ms) == ("embed", 2, 16, 4)
    assert m.options == {"flavour": "x"}
    env = {
        "TENFOLD_PORT": "9100",
        "TENFOLD_MAX_BATCH_SIZE": "8",
        "TENFOLD_LATENCY_BUDGET_MS": "250",
    }
    s = load_settings(config_path=cfg, environ=env)
    assert s.port == 9100 and s.models[0].max_batch_size == 8
    assert s.models[0].latency_budget_ms == 250
    s = load_settings(
        config_path=cfg,
        environ=env,
        server_flags={"port": 9200, "host": None},
        model_flags={"max_batch_size": 4, "workers": None},
    )
    assert s.port == 9200 and s.models[0].max_batch_size == 4 and s.models[0].workers == 2


def test_targets_on_the_command_line_pick_from_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "tenfold.toml"
    cfg.write_text(TOML)
    s = load_settings(targets=["embed", "classify"], config_path=cfg)
    assert [m.target for m in s.models] == ["embed", "classify"]
    assert s.models[0].workers == 2 and s.models[1].workers == default_workers()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TENFOLD_PORT": "eighty"}, "TENFOLD_PORT='eighty' is not a valid int"),
        ({"TENFOLD_WORKERS": "-1"}, "workers must be at least 1"),
        ({"TENFOLD_MAX_BATCH_SIZE": "nope"}, "not a valid int"),
    ],
)
def test_bad_environment_values_say_what_is_wrong(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(targets=["embed"], environ=env)


def test_invalid_settings_are_refused_when_built() -> None:
    with pytest.raises(ValueError, match="no model to serve"):
        ServerSettings(models=())
    with pytest.raises(ValueError, match="MODULE:CLASS"):
        ModelSettings(target="not-a-target")
    one = (ModelSettings(target="classify", workers=1),)
    with pytest.raises(ValueError, match=r"--autoscale .* needs a queue"):
        ServerSettings(models=one, queue_url=None, autoscale=True)
    with pytest.raises(ValueError, match="--autoscale serves exactly one model"):
        ServerSettings(models=one * 2, autoscale=True)


def test_autoscaled_worker_command_carries_the_model_settings() -> None:
    from tenfold.server.autoscaling import worker_argv

    model = ModelSettings(
        target="classify", workers=1, max_batch_size=8, options={"threshold": 0.5}
    )
    argv = worker_argv(model, "sqlite:///q.db", "iris", kill_after_s=60)
    assert argv[1:] == [
        "-m",
        "tenfold.queue.cli",
        "worker",
        "classify",
        "--queue",
        "sqlite:///q.db",
        "--queue-name",
        "iris",
        "--grace-s",
        "50",  # finishes its batch inside the supervisor's 60 s before SIGKILL
        "--max-batch-size",
        "8",
        "--options",
        '{"threshold": 0.5}',
    ]


def test_variant_directory_sets_target_and_options(tmp_path: Path) -> None:
    (tmp_path / "variant.json").write_text(
        json.dumps({"target": "tests_models:Thing", "options": {"path": "m.onnx"}})
    )
    s = load_settings(targets=["embed"], variant=str(tmp_path))
    assert s.models[0].target == "tests_models:Thing"
    assert s.models[0].options == {"path": "m.onnx"}
    with pytest.raises(ValueError, match=r"variant\.json"):
        load_settings(targets=["embed"], variant=str(tmp_path / "missing"))


def test_cli_help_and_clear_errors() -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0 and "serve" in out.output
    out = runner.invoke(app, ["serve", "nonsense"])
    assert out.exit_code == 2
    out = runner.invoke(app, ["serve"])
    assert out.exit_code == 2
    out = runner.invoke(app, ["serve", "no_such_module_xyz:Model"])
    assert out.exit_code == 2


def test_public_surface_is_pinned() -> None:
    import tenfold

    assert sorted(tenfold.__all__) == [
        "Client",
        "ItemError",
        "Model",
        "TenfoldError",
        "__version__",
    ]
    from tenfold.queue.client import Client

    assert tenfold.Client is Client


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ("[server]\nbogus = 1\n[models.embed]\n", r"\[server\]: unknown setting\(s\) bogus"),
        ("[models.embed]\nworkerz = 1\n", r"model 'embed': unknown setting\(s\) workerz"),
        ('[server]\nport = "abc"\n[models.embed]\n', r"\[server\]: a setting has the wrong type"),
    ],
)
def test_config_file_mistakes_are_named(tmp_path: Path, toml: str, match: str) -> None:
    cfg = tmp_path / "tenfold.toml"
    cfg.write_text(toml)
    with pytest.raises(ValueError, match=match):
        load_settings(config_path=cfg)


def test_every_command_finds_models_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `tenfold worker mypkg.models:Embedder` from the project directory, as `serve` does (the
    # console script, unlike `python -m`, does not put the current directory on the path).
    (tmp_path / "cwdmodels.py").write_text(
        "from tenfold import Model\n\n"
        "class Echo(Model[str, str]):\n"
        '    name = "echo"\n'
        "    def predict(self, batch):\n"
        "        return batch\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in sys.path if p not in ("", str(tmp_path))])
    out = CliRunner().invoke(
        app, ["worker", "cwdmodels:Echo", "--queue", f"sqlite:///{tmp_path}/q.db", "--help"]
    )
    assert out.exit_code == 0, out.output
    from tenfold.model import load_model_class

    assert load_model_class("cwdmodels:Echo").name == "echo"


def test_the_ready_line_pastes_for_examples_and_their_variants() -> None:
    from tenfold.cli import _curl_line
    from tenfold.examples.classify import Classify
    from tenfold.optimize.serving import OnnxEmbed

    line = _curl_line("0.0.0.0", 8000, "embed", OnnxEmbed)  # tenfold serve --variant DIR
    assert "http://127.0.0.1:8000/v1/models/embed/predict" in line
    assert '\'{"input": "The quick brown fox"}\'' in line
    assert '"sepal_length": 5.1' in _curl_line("127.0.0.1", 8001, "classify", Classify)
    assert "authorization: Bearer $TENFOLD_KEY" in _curl_line("h", 1, "m", Classify, auth=True)
    assert '{"input": ...}' in _curl_line("h", 1, "m", ModelSettings)
