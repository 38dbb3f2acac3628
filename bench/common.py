"""What the benchmarks share: timing, the load other processes put on the machine, Markdown, provenance, and the
benchmark's run directory (a real ``run_pipeline`` run whose artifacts the gradient and surrogate benchmarks reuse).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from rich.console import Console

from policygradex.common.artifacts import load_json
from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.rundir import RunDir
from policygradex.pipeline.runner import run_pipeline

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- timing and load
def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], T], repeats: int = 1) -> tuple[list[float], T]:
    """Run fn() ``repeats`` times; return (list of seconds, last result)."""
    times: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def _busy_seconds() -> float:
    """Busy CPU seconds of the whole machine from /proc/stat; nan where unavailable."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq = (vals + [0] * 7)[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMonitor:
    """CPU used on the machine by OTHER processes while a section ran, in cores (from /proc/stat minus our own
    CPU time). The benchmark cannot stop them, so it reports them next to the timings."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_seconds(), _own_seconds()

    def other_cores(self) -> float:
        """nan for measurements shorter than 0.5 s (the kernel counts CPU time in 10 ms ticks)."""
        seconds = time.perf_counter() - self.t0
        other = _busy_seconds() - self.busy0 - (_own_seconds() - self.own0)
        return max(0.0, other / seconds) if seconds >= 0.5 else float("nan")


# ----------------------------------------------------------------------------------------------- Markdown
def fmt_load(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def fmt_s(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    if x >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2e}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- provenance
def machine_info() -> dict[str, str]:
    import scipy
    import sklearn

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch.get_num_threads()": str(torch.get_num_threads()),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }


def git_state() -> str:
    """HEAD commit and the files under src/ that differ from it (others may be editing the working tree)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    files = sorted(line[3:].strip() for line in dirty if line.strip())
    return f"HEAD {head or 'unknown'}" + (f", with uncommitted changes in {', '.join(files)}" if files else ", clean src/")


def command_line() -> str:
    exe = sys.executable
    rel = os.path.relpath(exe)
    return " ".join(shlex.quote(a) for a in [exe if rel.startswith("..") else rel, *sys.argv])


def header(title: str, args: argparse.Namespace, info: dict[str, str], wall: float, load: float,
           run_line: str, threads: str) -> list[str]:
    """The report's title and provenance: command, date, machine, source, the run used, threads and load."""
    return [
        f"# {title} ({'quick smoke mode' if args.quick else 'full'})", "",
        f"Produced by (from the repository root): `{command_line()}`", "",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {info['cpu']}, nproc={info['nproc']}, torch {info['torch']} "
        f"(torch.get_num_threads()={info['torch.get_num_threads()']}), python {info['python']}, "
        f"numpy {info['numpy']}, scipy {info['scipy']}, scikit-learn {info['scikit-learn']}",
        f"- source: {git_state()}",
        f"- family `{args.family}`, seed {args.seed}; whole benchmark wall time {wall:.0f} s",
        f"- {run_line}",
        f"- torch threads: {threads}; \"other load (cores)\": CPU time used by OTHER processes on this machine during "
        "that measurement (/proc/stat busy time minus this process's CPU time, per second of wall time; "
        f"{fmt_load(load)} cores on average over the whole benchmark). With 2 cores, anything above ~0.2 slows the "
        "measurement down, and torch's 2-thread kernels are hit hardest",
        "",
    ]


def add_arguments(ap: argparse.ArgumentParser, default_out: str, threads_help: str) -> None:
    """The options every benchmark has."""
    ap.add_argument("--out", type=Path, default=Path(default_out), help=f"markdown report (default {default_out})")
    ap.add_argument("--family", default="cartpole", help="task family (default cartpole)")
    ap.add_argument("--quick", action="store_true", help="smoke mode: tiny budgets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help=threads_help)
    ap.add_argument("--run-dir", type=Path, default=None,
                    help="the benchmark's run directory (default runs/bench-FAMILY-sSEED, with -quick in --quick)")


def write_report(path: Path, text: str, t_start: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    log(f"wrote {path} ({time.perf_counter() - t_start:.0f} s)")


# ----------------------------------------------------------------------------------------------- the run
def bench_config(family: str, seed: int, quick: bool) -> RunConfig:
    """The benchmark's budget: a modest cartpole-sized run (tiny in quick mode); every other option is the default
    of ``policygradex run``."""
    steps, transitions, m, grid = (2048, 512, 20, 6) if quick else (20_000, 2048, 100, 25)
    d = RunConfig()
    return replace(d, family=family, seed=seed,
                   ppo=replace(d.ppo, steps_per_task=steps),
                   features=replace(d.features, transitions_per_task=transitions),
                   surrogate=replace(d.surrogate, num_subsets=m),
                   cluster=replace(d.cluster, lam_grid_size=grid))


def run_dir_for(args: argparse.Namespace) -> Path:
    return args.run_dir or Path("runs") / f"bench-{args.family}-s{args.seed}{'-quick' if args.quick else ''}"


def _same_config(rd: RunDir, cfg: RunConfig) -> bool:
    try:
        return RunConfig.from_dict(load_json(rd.config)["config"]) == cfg
    except (PolicyGradExError, KeyError, TypeError):
        return False


def bench_run(cfg: RunConfig, run_dir: Path, fresh: bool, threads: int = 1) -> tuple[RunDir, str]:
    """The benchmark's run directory after ``run_pipeline(cfg, run_dir, threads=threads)`` (``policygradex run``'s
    default is 1 thread), which resumes a run already there: a finished one is only loaded. ``fresh``: first delete
    a previous benchmark run there (one with this same configuration; another run is left alone, and refused), so
    that every stage is computed. Returns it and a line for the report saying which."""
    rd = RunDir(run_dir)
    if fresh and rd.config.exists():
        if not _same_config(rd, cfg):
            raise SystemExit(f"{run_dir} holds a run with another configuration: give another --run-dir")
        log(f"deleting the previous benchmark run {run_dir}")
        shutil.rmtree(run_dir)
    log(f"run_pipeline into {run_dir} (threads={threads})")
    t0 = time.perf_counter()
    st = run_pipeline(cfg, run_dir, Console(stderr=True), threads=threads)
    seconds = time.perf_counter() - t0
    if all(v == "loaded" for v in st.status.values()):
        return rd, f"run directory `{run_dir}`: a finished `run_pipeline` run at the benchmark's budget, reused"
    return rd, (f"run directory `{run_dir}`: `run_pipeline(threads={threads})` at the benchmark's budget, computed "
                f"({', '.join(s for s, v in st.status.items() if v == 'computed')}) by this command in {seconds:.0f} s")


def run_model_and_transitions(run_dir: Path) -> tuple[RunConfig, "TaskFamily", torch.nn.Module, list]:
    """A finished run's configuration, family, theta_star and the feature stage's transitions (re-collected)."""
    from policygradex.common.artifacts import load_torch
    from policygradex.envs.registry import load_family
    from policygradex.pipeline.features import run_transitions
    from policygradex.pipeline.stages import make_model

    rd = RunDir(run_dir)
    cfg = RunConfig.from_dict(load_json(rd.config)["config"])
    family = load_family(cfg.family)
    model = make_model(cfg, family)
    model.load_state_dict(load_torch(rd.theta_star)["state_dict"])
    return cfg, family, model, run_transitions(cfg, family, model)


CLI = [sys.executable, "-c", "import sys; from policygradex.cli.main import main; sys.exit(main(sys.argv[1:]))"]
"""``policygradex`` in this interpreter, with this interpreter's sys.path (so PYTHONPATH picks the source tree)."""


def run_fresh(args: list[str], out: Path) -> float:
    """``policygradex run ARGS --out OUT`` from nothing (an earlier OUT is deleted), output discarded; its wall
    seconds. Raises when the run fails."""
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    with open(os.devnull, "w") as sink:
        subprocess.run([*CLI, "run", *args, "--out", str(out)], stdout=sink, stderr=sink, check=True)
    return time.perf_counter() - t0
