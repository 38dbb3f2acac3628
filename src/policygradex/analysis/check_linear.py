"""``policygradex check-linear RUN_DIR``: is the first-order model of log pi accurate near theta_star? (paper Table 1)

Fine-tune theta_star with PPO on ``num_subsets`` random subsets of ``subset_size`` tasks; at relative parameter
distances ||theta - theta_star|| / ||theta_star|| of 0.1%, 0.5%, 1% and 5% (of the policy parameters, the ones the
features differentiate), compare the real change of log pi(a|s) with its linearisation g^T dtheta on the subset's
transitions collected at theta_star:

    paper:   sum_t (log pi_theta - log pi_theta_star - g_t^T dtheta)^2 / sum_t (log pi_theta)^2
    change:  sum_t (log pi_theta - log pi_theta_star - g_t^T dtheta)^2 / sum_t (log pi_theta - log pi_theta_star)^2

The first is the paper's formula; the second, relative to the change itself, is stricter and is reported beside it.
g^T dtheta is computed exactly by a Jacobian-vector product (no projection involved).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from policygradex.analysis.context import (
    ensure_transitions,
    job_context,
    job_seed,
    load_context,
    load_transitions,
    ppo_dict,
    write_markdown,
)
from policygradex.common.launcher import JobSpec, LauncherConfig, run_jobs
from policygradex.common.artifacts import atomic_write_json
from policygradex.common.errors import PolicyGradExError
from policygradex.rl.config import PPOConfig
from policygradex.rl.ppo import train_ppo


@dataclass(frozen=True)
class CheckLinearConfig:
    """Options of the first-order approximation check."""

    num_subsets: int = 10
    """Random subsets fine-tuned (the paper: 10)."""
    subset_size: int = 5
    """Tasks per subset (the paper: 5; capped at the number of tasks)."""
    distances: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05)
    """Relative parameter distances at which the error is measured."""
    max_steps_per_task: int = 50_000
    """PPO budget per task; fine-tuning stops as soon as the largest distance is reached."""
    learning_rate: float | None = None
    """Fine-tuning learning rate (None: the run's meta-training rate)."""
    seed: int = 0
    """Seed of the subset sampler and of the fine-tuning jobs."""


def check_linear(run_dir: Path, cc: CheckLinearConfig, launcher: LauncherConfig, console: Console) -> dict[str, Any]:
    ctx = load_context(run_dir)
    n = ctx.family.n
    if cc.num_subsets < 1:
        raise PolicyGradExError(f"--num-subsets must be >= 1, got {cc.num_subsets}")
    if not cc.distances or min(cc.distances) <= 0:
        raise PolicyGradExError(f"--distances must be positive fractions like 0.001,0.01, got {cc.distances}")
    alpha = min(cc.subset_size, n)
    if alpha < 1:
        raise PolicyGradExError(f"--subset-size must be >= 1, got {cc.subset_size}")
    transitions = ensure_transitions(ctx, console)
    rng = np.random.default_rng(cc.seed + 11)
    subsets = [sorted(int(x) for x in rng.choice(n, alpha, replace=False)) for _ in range(cc.num_subsets)]
    ppo = ppo_dict(ctx.cfg.ppo, steps_per_task=cc.max_steps_per_task, anneal_lr=False,
                   learning_rate=cc.learning_rate or ctx.cfg.ppo.learning_rate)
    specs = [JobSpec("policygradex.analysis.check_linear:linear_check_job",
                     {"config": ctx.cfg.to_dict(), "theta_sha": ctx.theta_sha, "task_ids": s, "ppo": ppo,
                      "distances": list(cc.distances)},
                     seed=job_seed("check-linear", cc.seed, tuple(s)), label=f"subset {j}",
                     paths={"run_dir": str(ctx.rd.path), "transitions": str(transitions)})
             for j, s in enumerate(subsets)]
    results = run_jobs(specs, ctx.rd.path / "jobs", launcher, console, "first-order check (PPO fine-tuning)")
    table = []
    for tgt in sorted(cc.distances):
        rows = [r for res in results for r in res["rows"] if r["distance"] == tgt and r["reached"]]
        paper = np.array([r["rss_paper"] for r in rows])
        change = np.array([r["rss_change"] for r in rows])
        table.append({"distance": tgt, "subsets_reached": len(rows),
                      "rss_paper_mean": float(paper.mean()) if rows else None,
                      "rss_paper_std": float(paper.std()) if rows else None,
                      "rss_change_mean": float(change.mean()) if rows else None,
                      "rss_change_std": float(change.std()) if rows else None})
    out_dir = ctx.rd.path / "check_linear"
    record = {"family": ctx.family.name, "config": {**cc.__dict__, "subset_size": alpha}, "subsets": subsets, "table": table,
              "per_subset": results}
    atomic_write_json(out_dir / "check_linear.json", record)
    write_markdown(out_dir / "check_linear.md", markdown(record))
    return record


def _pm(mean: float | None, std: float | None) -> str:
    return "not reached" if mean is None else f"{100 * mean:.2f}% ± {100 * (std or 0):.2f}%"


def markdown(record: dict[str, Any]) -> str:
    cc = record["config"]
    lines = [f"# First-order approximation error: {record['family']}", "",
             f"PPO fine-tuning from theta_star on {cc['num_subsets']} random subsets of {cc['subset_size']} tasks; "
             "relative RSS of the change in log pi vs g^T dtheta at each relative distance "
             "||theta - theta_star|| / ||theta_star|| (mean ± std over subsets).", "",
             "| distance | subsets | RSS / sum (log pi)^2 (paper) | RSS / sum (d log pi)^2 |", "|---|---|---|---|"]
    for row in record["table"]:
        lines.append(f"| {100 * row['distance']:g}% | {row['subsets_reached']} | "
                     f"{_pm(row['rss_paper_mean'], row['rss_paper_std'])} | "
                     f"{_pm(row['rss_change_mean'], row['rss_change_std'])} |")
    return "\n".join(lines)


def linear_check_job(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """Fine-tune theta_star with PPO on a subset, watching ||theta - theta_star|| / ||theta_star|| after every
    optimizer step; at each target distance, measure the first-order error of log pi on the subset's transitions.

    The update direction is the real PPO one: the first snapshot past each target, its delta rescaled to exactly
    the target distance (a rescaling by at most one optimizer step's worth)."""
    from torch.func import functional_call, jvp

    cfg, family, model = job_context(args)
    ppo = PPOConfig(**args["ppo"])
    task_ids = [int(t) for t in args["task_ids"]]
    targets = sorted(float(x) for x in args["distances"])
    names = model.policy_parameter_names()
    theta_star = {k: v.detach().clone() for k, v in model.named_parameters() if k in names}
    star_norm = torch.sqrt(sum((v**2).sum() for v in theta_star.values()))
    snapshots: dict[float, dict[str, torch.Tensor]] = {}
    reached: dict[float, float] = {}

    def after_step(net: nn.Module) -> bool:
        live = dict(net.named_parameters())
        with torch.no_grad():
            delta = {k: live[k].detach() - theta_star[k] for k in names}
            dist = float(torch.sqrt(sum((d**2).sum() for d in delta.values())) / star_norm)
        for tgt in targets:
            if tgt not in snapshots and dist >= tgt:
                snapshots[tgt] = {k: d * (tgt / dist) for k, d in delta.items()}
                reached[tgt] = dist
        return len(snapshots) == len(targets)

    train_ppo(family, task_ids, cfg.network, ppo, seed, init_state=model.state_dict(), after_step=after_step)

    trans = load_transitions(Path(args["transitions"]), args["theta_sha"])
    obs = torch.cat([trans["tasks"][i]["obs"] for i in task_ids])
    act = torch.cat([trans["tasks"][i]["actions"] for i in task_ids])
    fixed = {k: v.detach() for k, v in model.named_parameters() if k not in names}

    def logp(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(model, params | fixed, (obs, act))

    rows = []
    with torch.no_grad():
        logp_star = logp(theta_star)
    for tgt in targets:
        if tgt not in snapshots:
            rows.append({"distance": tgt, "reached": False})
            continue
        delta = snapshots[tgt]
        with torch.no_grad():
            logp_theta = logp({k: theta_star[k] + delta[k] for k in names})
        _, linear = jvp(logp, (theta_star,), (delta,))
        change = logp_theta - logp_star
        resid = ((change - linear) ** 2).sum()
        rows.append({
            "distance": tgt,
            "reached": True,
            "distance_at_snapshot": reached[tgt],
            # the paper's normalisation: RSS / sum (log pi_theta)^2
            "rss_paper": float(resid / (logp_theta**2).sum()),
            # a stricter one: RSS / sum (log pi_theta - log pi_theta_star)^2
            "rss_change": float(resid / (change**2).sum().clamp_min(1e-30)),
        })
    return {"task_ids": task_ids, "rows": rows}
