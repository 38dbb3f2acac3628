"""Plain helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

TINY_SEED = 0


def tiny_run_args(out: Path, family: str = "cartpole", *extra: str) -> list[str]:
    """argv of a tiny-budget run (seconds) into ``out``."""
    return ["run", family, "--preset", "tiny", "--seed", str(TINY_SEED), "--out", str(out), *extra]


def assert_one_line_error(rc: int, err: str, *fragments: str) -> str:
    """The CLI contract for user errors: exit status 2 and exactly one stderr line `policygradex: error: ...`."""
    assert rc == 2, f"expected exit code 2, got {rc}; stderr: {err!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got {len(lines)}: {err!r}"
    assert lines[0].startswith("policygradex: error: "), lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def child_pids(pid: int) -> set[int]:
    """The direct children of process ``pid`` (Linux /proc); empty once it has ended."""
    try:
        return {int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()}
    except OSError:
        return set()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (Linux /proc): neither gone nor a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def stability_against_ground_truth(cli: Callable[..., tuple[int, str, str]],
                                   run: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """`ground-truth` on ``run`` (its first 40 subsets, 128 steps per task) and then `stability --resamples 2`, which
    scores its estimates against it; returns stability.json's ``vs_ground_truth``, ground_truth.json and stability's
    stdout."""
    rc, _, err = cli("ground-truth", run, "--steps-per-task", "128", "--max-subsets", "40", "--eval-episodes", "1",
                     "--backend", "sequential")
    assert rc == 0, err
    rc, out, err = cli("stability", run, "--resamples", "2", "--backend", "sequential")
    assert rc == 0, err
    vs = json.loads((run / "stability" / "stability.json").read_text())["vs_ground_truth"]
    return vs, json.loads((run / "ground_truth" / "ground_truth.json").read_text()), out
