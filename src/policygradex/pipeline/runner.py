"""``run_pipeline``: check the configuration, open (or resume) the run directory under its lock, run the five
stages of :mod:`policygradex.pipeline.stages` in order (and, with ``--expansion-points``, the earlier points'
stages of :mod:`.expansion` before theta_star's affinity), write report.md and the plots.

``config.json`` pins the configuration: resuming with a different one is an error, except for clustering options,
which recluster without retraining. It holds the configuration the run really uses, family defaults applied
(:func:`with_family_defaults`), so every later command that rebuilds PPO from it uses the same values.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console

from policygradex.common.artifacts import atomic_write_json, load_json
from policygradex.common.errors import PolicyGradExError
from policygradex.common.launcher import LauncherConfig
from policygradex.common.threads import thread_limit
from policygradex.envs.base import TaskFamily
from policygradex.envs.registry import load_family
from policygradex.nets.base import TASK_ROUTED, check_network_name
from policygradex.pipeline.config import FeatureConfig, RunConfig
from policygradex.pipeline.expansion import stage_points
from policygradex.pipeline.group_points import stage_group_points
from policygradex.pipeline.partitions import EXACT_MAX_N
from policygradex.pipeline.gradient_statistics import statistics_refusal
from policygradex.pipeline.projection import factorised_projection
from policygradex.pipeline.report import write_report
from policygradex.pipeline.rundir import open_run_dir, run_lock
from policygradex.pipeline.stages import (
    RunState,
    make_model,
    stage_affinity,
    stage_cluster,
    stage_features,
    stage_meta_train,
    stage_surrogate,
)
from policygradex.pipeline.surrogate import resolve_surrogate
from policygradex.pipeline.transitions_budget import transitions_cap
from policygradex.rl.config import PPOConfig


def run_pipeline(cfg: RunConfig, out: Path, console: Console | None = None, threads: int = 1,
                 launcher: LauncherConfig | None = None) -> RunState:
    """Run (or resume) every stage into ``out``; returns the final state. Writes report.md and the plots.

    ``launcher``: where the feature stage's blocks of tasks run (default: one by one in this process); every backend
    writes the same files, so the groups do not depend on it.

    ``threads``: torch / BLAS threads for the whole run (:func:`~policygradex.common.threads.thread_limit`); results are
    identical for any OMP_NUM_THREADS, but not across values of ``threads`` (results/bench_threads.md)."""
    if threads < 1:
        raise PolicyGradExError(f"--threads must be >= 1, got {threads}")
    console = console or Console(stderr=True)
    family = load_family(cfg.family)
    cfg = with_family_defaults(cfg, family)
    _validate(cfg, family)
    rd = open_run_dir(out, cfg, family)
    with run_lock(rd), thread_limit(threads):
        if rd.new_record is not None:
            atomic_write_json(rd.config, rd.new_record)
        torch.manual_seed(cfg.seed)
        st = RunState(cfg, family, rd, console)
        if launcher is not None:
            st.launcher = launcher
        if rd.timings.exists():
            st.timings = {k: float(v) for k, v in load_json(rd.timings).items()}
        for stage in (stage_meta_train, stage_features, stage_surrogate, stage_points, stage_group_points,
                      stage_affinity, stage_cluster):
            stage(st)
        write_report(st)
    return st


def with_family_defaults(cfg: RunConfig, family: TaskFamily) -> RunConfig:
    """``cfg`` with the family's defaults where the run did not choose: the configuration the run records and uses.

    - ``NetworkConfig.task_id`` left at None becomes ``TaskFamily.default_task_id`` (on for ``mt10``).
    - ``TaskFamily.default_gamma`` (0.8 for ``highway``) replaces gamma when ``cfg`` keeps PPOConfig's 0.99. The
      CLI has no gamma option, so a command line always keeps it. Through the Python API an explicit 0.99 cannot
      be told from the default: for 0.99 on such a family, give a family with ``default_gamma=None``.
    - ``FeatureConfig.max_transitions_per_task`` left at None becomes 4 x N when ``target_reliability`` is on
      (:func:`.transitions_budget.transitions_cap`); without a target it has no effect and stays None.
    - ``FeatureConfig.expansion_points`` left at the default (0.5, 1) becomes (1,), theta_star alone, where an
      earlier point cannot be had or used: a meta-training too short to give the half-way point a policy of its
      own (one PPO iteration, say) has none, and
      ``--affinity per_target`` does not combine points. As with gamma, an explicit (0.5, 1) cannot be told from
      the default and resolves the same way; other lists are validated as given.

    Resolving here, before config.json is written, records the values used. Every later command that rebuilds
    PPO from config.json (``compare``, ``ground-truth``, ...) uses them, and rerunning the same command resolves
    to the same configuration, so it resumes.
    """
    if cfg.network.task_id is None:  # not chosen: the family's default (on for Meta-World)
        cfg = replace(cfg, network=replace(cfg.network, task_id=family.default_task_id))
    fc = cfg.features
    if fc.target_reliability is not None and fc.max_transitions_per_task is None:
        cfg = replace(cfg, features=replace(fc, max_transitions_per_task=transitions_cap(fc)))
    if cfg.features.expansion_points == FeatureConfig().expansion_points and (
            cfg.cluster.affinity != "subset" or _points_collapse(cfg)):
        cfg = replace(cfg, features=replace(cfg.features, expansion_points=(1.0,)))
    if family.default_gamma is None or cfg.ppo.gamma != PPOConfig().gamma:
        return cfg
    return replace(cfg, ppo=replace(cfg.ppo, gamma=family.default_gamma))


def _points_collapse(cfg: RunConfig) -> bool:
    """Whether two expansion points fall on the same policy (the same PPO iteration of the same meta-training)."""
    return len(set(cfg.earlier_points.values()) | {cfg.ppo.iterations}) < len(cfg.features.expansion_points)


def _validate(cfg: RunConfig, family: TaskFamily) -> None:
    n = family.n
    k = cfg.cluster.k
    if k is not None and not 1 <= k <= n:
        raise PolicyGradExError(f"--k {k} is out of range: family {family.name!r} has {n} tasks, so 1 <= k <= {n}")
    if cfg.cluster.k is not None and cfg.cluster.lam is not None:
        raise PolicyGradExError("give either --k or --lam, not both")
    if cfg.cluster.lam is not None and not (math.isfinite(cfg.cluster.lam) and cfg.cluster.lam >= 0):
        raise PolicyGradExError(f"--lam must be a finite number >= 0, got {cfg.cluster.lam}")
    net = cfg.network.name
    check_network_name(net)
    if net in TASK_ROUTED and not cfg.network.task_id:
        raise PolicyGradExError(f"--network {net} routes by task and needs the task id: drop --no-task-id")
    if not 0 <= cfg.seed < 2**32:
        raise PolicyGradExError(f"--seed must be an integer in [0, 2^32), got {cfg.seed}")
    if not cfg.ppo.learning_rate > 0:
        raise PolicyGradExError(f"--lr must be > 0, got {cfg.ppo.learning_rate}")
    if cfg.features.projection == "factorised":  # refused before training, not after
        factorised_projection(make_model(cfg, family), cfg.features.projection_dim, cfg.projection_seed)
    if cfg.features.store == "statistics" and (why := statistics_refusal(cfg, n)) is not None:
        raise PolicyGradExError(why)
    points = cfg.features.expansion_points
    if not points or points[-1] != 1.0 or any(not 0 < f <= 1 for f in points) or list(points) != sorted(set(points)):
        raise PolicyGradExError(f"--expansion-points must be increasing fractions in (0, 1] ending at 1 (theta_star), "
                                f"e.g. 0.5,1; got {','.join(f'{f:g}' for f in points) or 'none'}")
    if _points_collapse(cfg):
        its = ", ".join(str(i) for i in [*cfg.earlier_points.values(), cfg.ppo.iterations])
        raise PolicyGradExError(f"--expansion-points {','.join(f'{f:g}' for f in points)}: two points give the same "
                                f"policy (after {its} PPO iterations): space them further apart")
    if len(points) > 1 and cfg.cluster.affinity != "subset":
        raise PolicyGradExError("--expansion-points combines the points' --affinity subset; drop --affinity per_target")
    g = cfg.features.group_points
    if g is not None and not (0 < g <= 1):
        raise PolicyGradExError(f"--group-points must be a fraction in (0, 1] of the meta-training budget, got {g}")
    if g is not None and cfg.cluster.affinity != "subset":
        raise PolicyGradExError("--group-points combines the points' --affinity subset; drop --affinity per_target")
    if cfg.features.task_block < 1:
        raise PolicyGradExError(f"--task-block must be >= 1, got {cfg.features.task_block}")
    if cfg.ppo.tasks_per_iteration is not None and cfg.ppo.tasks_per_iteration < 1:
        raise PolicyGradExError(f"--tasks-per-iteration must be >= 0 (0: all tasks), got {cfg.ppo.tasks_per_iteration}")
    if cfg.cluster.bootstrap_method == "exact" and n > EXACT_MAX_N:
        raise PolicyGradExError(f"--bootstrap-method exact needs n <= {EXACT_MAX_N} tasks, family has {n}")
    if not cfg.surrogate.l2 >= 0:
        raise PolicyGradExError(f"--l2 must be >= 0, got {cfg.surrogate.l2}")
    a = cfg.surrogate.subset_size
    if a is not None and not 2 <= a <= n:
        raise PolicyGradExError(f"--subset-size {a} must be between 2 and the number of tasks ({n})")
    if cfg.surrogate.num_subsets is not None and cfg.surrogate.num_subsets < 1:
        raise PolicyGradExError(f"--num-subsets must be >= 1, got {cfg.surrogate.num_subsets}")
    method = resolve_surrogate(cfg.surrogate.method, n)
    if method == "closed_form" and cfg.cluster.affinity == "per_target":
        raise PolicyGradExError("--affinity per_target needs the subsets: use --surrogate exact or newton")
    if cfg.surrogate.blocks < 2:
        raise PolicyGradExError(f"surrogate.blocks must be >= 2, got {cfg.surrogate.blocks}")
    if cfg.surrogate.curvature_rows is not None and cfg.surrogate.curvature_rows < 1:
        raise PolicyGradExError(f"--curvature-rows must be >= 1, got {cfg.surrogate.curvature_rows}")
    if cfg.cluster.method in ("exact", "exhaustive") and n > EXACT_MAX_N:
        raise PolicyGradExError(f"--cluster-method {cfg.cluster.method} needs n <= {EXACT_MAX_N} tasks, family has {n}")
    if not 0.0 <= cfg.features.holdout_fraction < 1.0:
        raise PolicyGradExError(f"--holdout-fraction must be in [0, 1), got {cfg.features.holdout_fraction}")
    if cfg.features.holdout_fraction == 0.0 and cfg.surrogate.evaluation == "held_out":
        raise PolicyGradExError("--holdout-fraction 0 leaves nothing held out: raise it or use --evaluation in_sample")
    fc = cfg.features
    if fc.target_reliability is not None:
        if not 0.0 < fc.target_reliability < 1.0:
            raise PolicyGradExError(f"--target-reliability must be in (0, 1), got {fc.target_reliability}")
        if fc.max_transitions_per_task is not None and fc.max_transitions_per_task < fc.transitions_per_task:
            raise PolicyGradExError(f"--max-transitions {fc.max_transitions_per_task} is below --transitions "
                                    f"{fc.transitions_per_task}")
    for name, value in [("--steps-per-task", cfg.ppo.steps_per_task), ("--transitions", cfg.features.transitions_per_task),
                        ("--projection-dim", cfg.features.projection_dim)]:
        if value < 1:
            raise PolicyGradExError(f"{name} must be >= 1, got {value}")
