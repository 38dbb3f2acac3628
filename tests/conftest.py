"""Shared fixtures: one tiny end-to-end run per session, and a helper to call the CLI in-process."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so that `tests.plugin_families:...` imports as a user family would
    sys.path.insert(0, str(ROOT))

from policygradex.cli.main import main
from policygradex.common.threads import thread_limit

from .helpers import tiny_run_args  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> object:
    """Library functions called directly run with one torch / BLAS thread, as every command does: two threads on a
    loaded 2-core machine spin against each other (MAML's toy test: 1.6 s on one thread, 29 s on two)."""
    with thread_limit(1):
        yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished `policygradex run cartpole --preset tiny` directory. Read-only: copy it before mutating."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    rc = main(tiny_run_args(out))
    assert rc == 0, "the tiny cartpole run failed"
    return out


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str]]:
    """Call `policygradex ARGS` in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "240")  # rich wraps at the terminal width: keep every line whole

    def call(*argv: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return call
