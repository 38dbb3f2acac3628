"""``policygradex.run`` / ``train`` / ``evaluate`` / ``load_policy``: the command line's jobs from Python.

``run`` takes the options of ``policygradex run`` as keyword arguments (``steps_per_task=20_000`` for
``--steps-per-task 20000``, ``task_id=True`` for ``--task-id``, a tuple for a comma-separated list) and parses them
with the same parser, so that every default, preset and check is the command line's. Progress goes to stderr, as
the commands'; nothing is printed on stdout.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from policygradex.analysis.evaluate_policy import EvaluateConfig, evaluate_policy
from policygradex.analysis.train import TrainConfig, train_policies
from policygradex.cli.options import config_from_args, default_out, launcher_config
from policygradex.cli.parser import build_parser
from policygradex.pipeline.group_record import Confidence
from policygradex.pipeline.rundir import RunDir, load_run
from policygradex.pipeline.runner import run_pipeline
from policygradex.rl.saved_policy import SavedPolicy, load_policy


@dataclass(frozen=True)
class Result:
    """A finished ``policygradex run``: its groups, affinity and confidence, and where its files are."""

    out: Path
    """The run directory."""
    family: str
    """The family's name."""
    task_names: list[str]
    """Task i's name (row and column i of ``affinity``)."""
    groups: list[list[str]]
    """Each group's task names."""
    group_indices: list[list[int]]
    """Each group's task indices."""
    affinity: np.ndarray = field(repr=False)
    """The n x n task affinity U that was clustered."""
    confidence: Confidence | None = field(repr=False)
    """How sure the groups are (bootstrap Jaccard per group, the verdict, the words); None for a run without it."""

    @property
    def paths(self) -> dict[str, Path]:
        """The run's main files: groups.json, affinity.npy / .csv, report.md, affinity.png, config.json."""
        rd = RunDir(self.out)
        return {"groups": rd.groups, "affinity": rd.affinity, "affinity_csv": rd.affinity_csv,
                "report": self.out / "report.md", "heatmap": self.out / "affinity.png", "config": rd.config}


def load_result(out: str | Path) -> Result:
    """The :class:`Result` of a finished run directory."""
    out = Path(out)
    record, groups, affinity = load_run(out)
    return Result(out=out, family=record["family"]["name"], task_names=[t["name"] for t in record["family"]["tasks"]],
                  groups=[list(g) for g in groups.names], group_indices=groups.index_lists(),
                  affinity=affinity, confidence=groups.confidence)


def _argv(options: dict[str, Any]) -> list[str]:
    """Keyword options as command-line flags: ``name_x=v`` -> ``--name-x v``; True / False -> ``--flag`` /
    ``--no-flag``; a list or tuple -> comma-separated; None -> left out."""
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            argv += [flag, ",".join(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def run(family: str, k: int | None = None, preset: str = "default", out: str | Path | None = None,
        **options: Any) -> Result:
    """Run (or resume) every stage on ``family``, as ``policygradex run FAMILY --preset PRESET [--k K] [--out OUT]``
    with ``options`` as further flags; returns the :class:`Result`. ``out`` defaults to ``runs/FAMILY-seedS``."""
    parser = build_parser()
    known = set(vars(parser.parse_args(["run", family])))
    unknown = sorted(set(options) - known - {"command", "family"})
    if unknown:
        raise TypeError(f"run() got unexpected options {unknown}; they are the flags of `policygradex run --help` "
                        "with _ for - (e.g. steps_per_task=20000)")
    argv = ["run", family, "--preset", preset, *(["--k", str(k)] if k is not None else []),
            *(["--out", str(out)] if out is not None else []), *_argv(options)]
    args = parser.parse_args(argv)
    path = default_out(args)
    run_pipeline(config_from_args(args), path, Console(stderr=True), threads=args.threads,
                 launcher=launcher_config(args))
    return load_result(path)


@dataclass(frozen=True)
class TrainedPolicy:
    """One saved policy of :func:`train`."""

    group: int
    """Its group, from 1."""
    seed_index: int
    """Which of the group's seeds (from 0)."""
    tasks: list[str]
    """The tasks it was trained on."""
    path: Path
    """Its policy.pt (with card.md, card.json, curve.csv and curve.png beside it)."""
    per_task: dict[str, dict[str, Any]] = field(repr=False)
    """Each task's evaluation: ``return`` (mean), ``return_std`` and the family's metrics."""

    def load(self) -> SavedPolicy:
        return load_policy(self.path)


@dataclass(frozen=True)
class Policies:
    """The policies :func:`train` saved, one per group and seed."""

    out: Path
    """Their directory (policies.json and train.md index them)."""
    policies: list[TrainedPolicy]

    def load(self, group: int = 1, seed_index: int = 0) -> SavedPolicy:
        """The policy of group ``group`` (from 1) and seed ``seed_index``."""
        for p in self.policies:
            if p.group == group and p.seed_index == seed_index:
                return p.load()
        raise KeyError(f"no policy for group {group}, seed {seed_index}; there are "
                       f"{sorted({(p.group, p.seed_index) for p in self.policies})}")


def train(result_or_dir: Result | str | Path, network: str | None = None, steps_per_task: int | None = None,
          seeds: int = 1, groups: str | Path | None = None, eval_episodes: int | None = None,
          deterministic: bool = True, out: str | Path | None = None, seed: int = 0, backend: str = "process",
          workers: int | None = None, ray_address: str | None = None) -> Policies:
    """Train and save one policy per group (``policygradex train``): the run's groups, or those of ``groups`` (a
    JSON file); see :class:`policygradex.analysis.train.TrainConfig` for the options."""
    run_dir = result_or_dir.out if isinstance(result_or_dir, Result) else Path(result_or_dir)
    tc = TrainConfig(groups_file=None if groups is None else str(groups), network=network,
                     steps_per_task=steps_per_task, seeds=seeds, eval_episodes=eval_episodes,
                     deterministic=deterministic, out=None if out is None else str(out), seed=seed)
    launcher = launcher_config(argparse.Namespace(backend=backend, workers=workers, ray_address=ray_address))
    record = train_policies(run_dir, tc, launcher, Console(stderr=True))
    return Policies(out=Path(record["out"]),
                    policies=[TrainedPolicy(p["group"], p["seed_index"], p["tasks"], Path(p["path"]), p["per_task"])
                              for p in record["policies"]])


def evaluate(policy: str | Path, episodes: int = 10, tasks: tuple[str | int, ...] = (), deterministic: bool = True,
             seed: int = 0, video: str | Path | None = None) -> dict[str, Any]:
    """Per-task returns of a saved policy (``policygradex evaluate``): ``record["per_task"][NAME]["return"]`` and
    ``["return_std"]``, and the family's metrics; ``video``: record one episode per task into that directory."""
    ec = EvaluateConfig(episodes=episodes, tasks=tuple(str(t) for t in tasks), deterministic=deterministic, seed=seed,
                        video=None if video is None else str(video))
    return evaluate_policy(Path(policy), ec)
