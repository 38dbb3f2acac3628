"""Job functions for the launcher tests (importable by worker processes as tests.job_helpers:...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def record_call(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """Leaves a marker file per call, so a test can count how often each job really ran."""
    marker = Path(args["dir"]) / f"{args['name']}.{len(list(Path(args['dir']).glob(args['name'] + '.*')))}"
    marker.write_text("ran")
    return {"value": args["x"] * 10 + seed}
