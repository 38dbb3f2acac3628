"""SyncVectorEnv or AsyncVectorEnv (one subprocess per sub-env) for the highway family? Times MultiTaskVectorEnv over
the 10 tasks with each, one after the other: start-up (make every sub-env and reset) and env-steps/s under random
actions, at 1, 2 (the tiny preset) and 4 sub-envs per task (PPO's and the features' default), and the start-up of the three ways
multiprocessing starts subprocesses. Random actions crash often, so resets are part of the measurement, as in
early training.

    .venv/bin/python bench/bench_highway_vector.py --out results/bench_highway_vector.md   # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import gymnasium as gym
import numpy as np

from common import LoadMonitor, command_line, fmt_load, git_state, log, machine_info, table
from policygradex.envs.base import Task
from policygradex.envs.highway import highway
from policygradex.envs.vector import MultiTaskVectorEnv

CASES = [("sync", 1), ("fork", 1), ("sync", 2), ("fork", 2), ("sync", 4), ("fork", 4), ("forkserver", 1), ("spawn", 1)]
"""(vector env, sub-envs per task): ``sync`` is a SyncVectorEnv, the others an AsyncVectorEnv whose subprocesses
start with that multiprocessing method."""


def vector_env(kind: str) -> Callable[[Sequence[Task]], gym.vector.VectorEnv]:
    if kind == "sync":
        return lambda tasks: gym.vector.SyncVectorEnv([t.make_env for t in tasks])
    return lambda tasks: gym.vector.AsyncVectorEnv([t.make_env for t in tasks], context=kind)


def measure(kind: str, envs_per_task: int, env_steps: int, seed: int) -> tuple[float, float, float]:
    """(start-up seconds, env-steps/s, other load in cores) of one vector env over the 10 highway tasks."""
    family = replace(highway(), make_vector_env=vector_env(kind))
    monitor = LoadMonitor()
    t0 = time.perf_counter()
    venv = MultiTaskVectorEnv(family, range(family.n), envs_per_task, seed)
    try:
        venv.reset()
        startup = time.perf_counter() - t0
        rng = np.random.default_rng(seed)
        steps = env_steps // venv.num_envs
        t1 = time.perf_counter()
        for _ in range(steps):
            venv.step(rng.integers(venv.single_action_space.n, size=venv.num_envs))
        rate = steps * venv.num_envs / (time.perf_counter() - t1)
    finally:
        venv.close()
    return startup, rate, monitor.other_cores()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("results/bench_highway_vector.md"))
    ap.add_argument("--env-steps", type=int, default=800, help="env steps timed per measurement (all sub-envs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t_start = time.perf_counter()
    rows, rates = [], {}
    for kind, envs_per_task in CASES:
        log(f"{kind}, {envs_per_task} per task")
        startup, rate, load = measure(kind, envs_per_task, args.env_steps, args.seed)
        rates[kind, envs_per_task] = rate
        name = "SyncVectorEnv" if kind == "sync" else f"AsyncVectorEnv ({kind})"
        rows.append([name, str(10 * envs_per_task), f"{startup:.2f}", f"{rate:.0f}", fmt_load(load)])
    info = machine_info()
    speedups = ", ".join(f"{rates['fork', e] / rates['sync', e]:.2f}x at {10 * e} sub-envs" for e in (1, 2, 4))
    text = "\n".join([
        "# highway: SyncVectorEnv vs AsyncVectorEnv", "",
        f"Produced by (from the repository root): `{command_line()}`", "",
        f"- machine: {info['cpu']}, nproc={info['nproc']}, python {info['python']}, "
        f"highway-env {version('highway-env')}, gymnasium {gym.__version__}",
        f"- source: {git_state()}",
        f"- `MultiTaskVectorEnv` over the 10 `highway` tasks, random actions (seed {args.seed}), "
        f"{args.env_steps} env steps timed per row; start-up = make every sub-env and reset; "
        "\"other load\": CPU cores used by other processes meanwhile (a forkserver's subprocesses are not this "
        "process's children, so they count there)", "",
        table(["vector env", "sub-envs", "start-up (s)", "env-steps/s", "other load (cores)"], rows), "",
        f"AsyncVectorEnv (fork) / SyncVectorEnv, env-steps/s: {speedups}. Whole benchmark "
        f"{time.perf_counter() - t_start:.0f} s.", "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
