"""``policygradex meta``: MAML on group representatives, adapted to unseen tasks, end to end at a tiny budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from policygradex.analysis.meta import medoid, representatives

from ..helpers import assert_one_line_error, child_pids, process_alive, tiny_run_args

TINY_META = ("--seeds", "2", "--unseen-tasks", "3", "--adapt-steps", "2", "--iterations", "2", "--meta-batch", "3",
             "--trajectories", "2")


def test_meta_end_to_end_with_resume(tiny_run: Path, tmp_path: Path, cli) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    rc, out, err = cli("meta", run, *TINY_META, "--backend", "sequential")
    assert rc == 0, err
    record = json.loads((run / "meta" / "meta.json").read_text())
    rows = record["rows"]
    assert list(rows) == ["policygradex", "all tasks", "random", "gradient_similarity", "multitask"]
    groups = json.loads((run / "groups.json").read_text())["group_indices"]
    names = record["task_names"]
    for s in range(2):  # one representative of each PolicyGradEx group, k random tasks, all n tasks
        reps = [names.index(t) for t in rows["policygradex"]["training_tasks"][s]]
        assert sorted(sum(1 for r in reps if r in g) for g in groups) == [1] * len(groups)
        assert len(set(rows["random"]["training_tasks"][s])) == len(groups)
    assert rows["all tasks"]["training_tasks"][0] == names
    assert rows["multitask"]["training_tasks"][0] == []
    assert len(record["unseen"]) == 3 and not set(record["unseen"]) & set(names)
    for row in rows.values():
        assert len(row["curve"]) == 3 and len(row["per_seed_after"]) == 2  # adaptation steps 0, 1, 2
        assert row["after_mean"] == np.mean(row["per_seed_after"]) and row["curve"][-1] == row["after_mean"]
        assert row["before_mean"] == row["curve"][0]
    assert rows["policygradex"]["policygradex_difference"] is None
    assert (run / "meta" / "adaptation_curves.png").read_bytes()[:4] == b"\x89PNG" and "| policygradex |" in out
    # every job is cached: the same command again trains nothing and gives the same table
    rc, out2, err = cli("meta", run, *TINY_META, "--backend", "sequential")
    assert rc == 0 and "10 cached" in err and out2 == out
    # medoid representatives by affinity are one fixed task per group for every seed
    rc, _, err = cli("meta", run, *TINY_META, "--representatives", "medoid", "--backend", "sequential")
    assert rc == 0, err
    rows = json.loads((run / "meta" / "meta.json").read_text())["rows"]
    assert rows["policygradex"]["training_tasks"][0] == rows["policygradex"]["training_tasks"][1]


def test_meta_bad_input_is_one_line(tiny_run: Path, tmp_path: Path, cli) -> None:
    rc, _, err = cli("meta", tiny_run, "--unseen-tasks", "0")
    assert_one_line_error(rc, err, "--unseen-tasks")
    rc, _, err = cli("meta", tiny_run, "--meta-batch", "0")
    assert_one_line_error(rc, err, "--meta-batch")
    rc, _, err = cli("meta", tmp_path / "nothing")
    assert_one_line_error(rc, err, "not a directory")
    assert not (tiny_run / "meta").exists()
    plugin = tmp_path / "plugin"  # a family of the user's that declares no parameter range
    assert cli(*tiny_run_args(plugin, "tests.plugin_families:good_family", "--k", "2"))[0] == 0
    rc, _, err = cli("meta", plugin)
    assert_one_line_error(rc, err, "no parameter range")


def test_representatives_by_hand() -> None:
    S = np.array([[0, 5, 1, 0], [5, 0, 4, 0], [1, 4, 0, 0], [0, 0, 0, 0]], dtype=float)
    assert medoid([0, 1, 2], S) == 1  # 5 + 4 against 5 + 1 and 1 + 4
    assert medoid([3], S) == 3
    assert representatives([[0, 1, 2], [3]], S, "medoid", seed=0) == [1, 3]
    drawn = {tuple(representatives([[0, 1, 2], [3]], S, "random", seed=s)) for s in range(20)}
    assert drawn == {(0, 3), (1, 3), (2, 3)}


def test_meta_jobs_give_the_same_result_in_this_process_and_in_a_worker(tiny_run: Path, tmp_path: Path) -> None:
    from rich.console import Console

    from policygradex.common.launcher import JobSpec, LauncherConfig, run_jobs
    from policygradex.rl.config import MAMLConfig

    config = json.loads((tiny_run / "config.json").read_text())["config"]
    maml = {**MAMLConfig(iterations=2, meta_batch=2, trajectories=2).__dict__}
    common = {"config": config, "maml": maml, "unseen_tasks": 2, "unseen_seed": 0, "adapt_steps": 2}
    specs = [JobSpec("policygradex.analysis.meta:meta_job", {**common, "task_ids": [1, 7]}, seed=3),
             JobSpec("policygradex.analysis.meta:meta_job", {**common, "init": "theta_star"}, seed=4,
                     paths={"run_dir": str(tiny_run)})]
    quiet = Console(stderr=True, quiet=True)
    here = run_jobs(specs, tmp_path / "a", LauncherConfig(backend="sequential"), quiet, "here")
    there = run_jobs(specs, tmp_path / "b", LauncherConfig(backend="process", workers=2), quiet, "there")
    for a, b in zip(here, there):
        a.pop("seconds"), b.pop("seconds")
        a.pop("train_seconds", None), b.pop("train_seconds", None)
        assert a == b


def test_kill_stops_the_worker_processes_and_keeps_finished_jobs(tiny_run: Path, tmp_path: Path) -> None:
    # SIGTERM (kill PID) is handled as Ctrl-C: the process pool's workers stop with the command (they used to run
    # on, orphaned, computing jobs nobody would collect), exit status 143
    import os
    import signal
    import subprocess
    import sys
    import time

    import pytest

    if not Path("/proc/self/task").exists():
        pytest.skip("needs Linux /proc to list child processes")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    argv = [sys.executable, "-m", "policygradex.cli.main", "meta", str(run), "--seeds", "4", "--unseen-tasks", "3",
            "--adapt-steps", "3", "--iterations", "200", "--meta-batch", "3", "--trajectories", "2", "--workers", "2"]

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children: set[int] = set()
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(children) < 2:
            time.sleep(0.5)
            children = child_pids(proc.pid) if proc.poll() is None else set()
        assert len(children) >= 2, "the pool's workers never started"
        time.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143 and "terminated" in err, err[-500:]
        deadline = time.time() + 20
        while time.time() < deadline and any(process_alive(pid) for pid in children):
            time.sleep(0.2)
        assert not any(process_alive(pid) for pid in children), "worker processes outlived the command"
    finally:  # a failing run leaves nothing behind to burn the CPU of the tests after it
        for pid in [proc.pid, *children]:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
