"""Job functions for the launcher tests (importable by worker processes as tests.job_helpers:...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def record_call(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """Leaves a marker file per call, so a test can count how often each job really ran."""
    marker = Path(args["dir"]) / f"{args['name']}.{len(list(Path(args['dir']).glob(args['name'] + '.*')))}"
    marker.write_text("ran")
    return {"value": args["x"] * 10 + seed}


def step_vector_env_until_stopped(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """Steps a subprocess vector env (forked, as the highway family's) until the process is stopped: a job that owns
    child processes of its own. Marks the moment its env is up, so a test knows when to stop it."""
    import time

    import gymnasium as gym

    env = gym.vector.AsyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2, context="fork")
    env.reset(seed=seed)
    (Path(args["dir"]) / f"started.{seed}").write_text("up")
    deadline = time.time() + args["seconds"]
    while time.time() < deadline:
        env.step(env.action_space.sample())
    env.close()
    return {"stopped": False}
