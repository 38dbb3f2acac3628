"""``policygradex hessian RUN_DIR``: Hessian trace, generalization gap and the bound of Theorem 1 over training.

Trained configurations (each a job of the launcher, so they run in parallel, are cached and resume):
single-task training (the first task of the first PolicyGradEx group), multitask training on all tasks, training
on each PolicyGradEx group (the paper's Figure 2a), and training on a random subset of each size alpha (Figure 2b).

Every ``every`` PPO iterations, with theta_t the policy that collected rollout B_t and theta_{t+1} the policy
after the update on it:

- train loss: the clipped PPO loss of theta_{t+1} on B_t (advantages standardised over the batch);
- test loss: the same loss of theta_{t+1} on B'_t, a fresh, independent rollout of theta_t on the same tasks
  (same distribution, unseen by the update); generalization error = test - train;
- tr(H): Hutch++ (or Hutchinson) estimate of the trace of the Hessian of the train loss at theta_{t+1}, with its
  standard error; optionally the top eigenvalue by Lanczos at the last measurement;
- the bound of Theorem 1, L <= (1 + e) L^ + (1 + e) sqrt(C H / n) + e, at its leading order (e -> 0, which
  the theorem allows as n grows; e = O(n^{-3/4} log(1/delta)) is not made explicit by the paper), so the
  gap bound is sqrt(C * H / n) with H = tr(H^+) measured (the theorem truncates negative curvature; stochastic
  Lanczos quadrature, since tr(H) itself can be negative), n = the transitions in B_t, and C = the range
  (max - min) of the per-transition loss on B_t, the loss shifted to [0, C] as the theorem assumes. The bound is
  non-vacuous when it is below C, the trivial bound of a loss in [0, C].
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.console import Console
from scipy.stats import spearmanr

from .artifacts import atomic_write_json, load_json
from .config import PPOConfig
from .errors import PolicyGradExError
from .evaluation import job_context, job_seed, load_context, ppo_dict, write_markdown
from .families import MultiTaskVectorEnv
from .hessian import (Batch, clipped_losses, hutchinson, hutchpp, make_hvp, positive_trace, ppo_loss_fn,
                      top_eigenvalue)
from .launcher import JobSpec, LauncherConfig, run_jobs
from .ppo import Rollout, add_advantages, collect_rollout, train_ppo
from .report import save_figure


@dataclass(frozen=True)
class HessianConfig:
    """Options of the generalization analysis."""

    iterations: int = 100
    """PPO iterations per configuration (the paper: 100)."""
    envs_per_task: int = 4
    """Sub-environments per task."""
    num_steps: int = 512
    """Steps per sub-environment per iteration: 4 x 512 = 2048 steps per task per iteration, as in the paper."""
    every: int = 10
    """Measure every this many iterations (and at the last one)."""
    probes: int = 60
    """Hessian-vector products per trace estimate."""
    estimator: Literal["hutchpp", "hutchinson"] = "hutchpp"
    """Trace estimator."""
    slq_probes: int = 6
    """Probes of the stochastic Lanczos quadrature for tr(H^+) (the bound's H)."""
    slq_steps: int = 10
    """Lanczos steps per probe for tr(H^+)."""
    eigenvalue: bool = True
    """Also the top Hessian eigenvalue (Lanczos) at the last measurement."""
    alphas: tuple[int, ...] = (1, 2, 3, 5, 10)
    """Subset sizes for the alpha sweep (capped at n; one random subset each)."""
    init: Literal["scratch", "theta_star"] = "scratch"
    """Start from a fresh initialisation (the paper's "initial policy") or from theta_star."""
    seed: int = 0
    """Seed of the subsets and of the training jobs."""


def _batch(rollout: Rollout) -> Batch:
    mask = rollout.valid.reshape(-1)
    adv = rollout.advantages.reshape(-1)[mask]
    return Batch(rollout.obs.reshape(-1, rollout.obs.shape[-1])[mask],
                 rollout.actions.reshape(-1, *rollout.actions.shape[2:])[mask],
                 rollout.logprobs.reshape(-1)[mask], (adv - adv.mean()) / (adv.std() + 1e-8))


def _losses(model: torch.nn.Module, batch: Batch, clip: float) -> torch.Tensor:
    with torch.no_grad():
        return clipped_losses(model(batch.obs, batch.actions), batch.logp_old, batch.advantages, clip)


def hessian_job(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train on ``task_ids`` and measure train/test loss, Hessian trace and bound along the way."""
    cfg, family, model = job_context(args)
    ppo = PPOConfig(**args["ppo"])
    task_ids = [int(t) for t in args["task_ids"]]
    iterations = max(1, ppo.steps_per_task // (ppo.envs_per_task * ppo.num_steps))
    every, probes = int(args["every"]), int(args["probes"])
    estimator = hutchpp if args["estimator"] == "hutchpp" else hutchinson
    init = model.state_dict() if args.get("init") == "theta_star" else None
    test_env = MultiTaskVectorEnv(family, task_ids, ppo.envs_per_task, seed + 104_729)
    state: dict[str, Any] = {"iteration": 0, "test_obs": test_env.reset()}
    rows: list[dict[str, Any]] = []

    def before_update(live: torch.nn.Module, rollout: Rollout) -> None:
        state["iteration"] += 1
        it = state["iteration"]
        state["pending"] = None
        if it % every and it != iterations:
            return
        fresh, state["test_obs"] = collect_rollout(test_env, live, state["test_obs"], ppo.num_steps)
        add_advantages(fresh, ppo.gamma, ppo.gae_lambda)
        state["pending"] = (it, _batch(rollout), _batch(fresh))
        state["model"] = live

    def on_iteration(it: int, total: int, row: dict[str, Any]) -> None:
        if state.get("pending") is None:
            return
        it, train, test = state["pending"]
        live = state["model"]
        train_losses = _losses(live, train, ppo.clip_coef)
        test_losses = _losses(live, test, ppo.clip_coef)
        loss, theta = ppo_loss_fn(live, train, ppo.clip_coef)
        hvp = make_hvp(loss, theta)
        est = estimator(hvp, theta.numel(), probes, seed=seed + it)
        pos = positive_trace(hvp, theta.numel(), int(args["slq_probes"]), int(args["slq_steps"]), seed=seed + it)
        C = float(train_losses.max() - train_losses.min())
        n = len(train)
        out = {"iteration": it, "env_steps_per_task": it * ppo.envs_per_task * ppo.num_steps,
               "mean_return": row["mean_return"], "train_loss": float(train_losses.mean()),
               "test_loss": float(test_losses.mean()), "gap": float(test_losses.mean() - train_losses.mean()),
               "trace": est.trace, "trace_stderr": est.stderr,
               "trace_positive": pos.trace, "trace_positive_stderr": pos.stderr, "n": n, "C": C,
               "bound": float(np.sqrt(C * max(pos.trace, 0.0) / n))}
        if args.get("eigenvalue") and it == iterations:
            out["top_eigenvalue"] = top_eigenvalue(hvp, theta.numel(), tol=1e-4, maxiter=300)
        rows.append(out)

    train_ppo(family, task_ids, cfg.network, ppo, seed, init_state=init, on_iteration=on_iteration,
              before_update=before_update)
    test_env.close()
    return {"task_ids": task_ids, "rows": rows}


def _final(rows: list[dict[str, Any]], key: str, last: int = 3) -> float:
    vals = [r[key] for r in rows[-last:] if r.get(key) is not None]
    return float(np.mean(vals)) if vals else float("nan")


def hessian_analysis(run_dir: Path, hc: HessianConfig, launcher: LauncherConfig, console: Console) -> dict[str, Any]:
    ctx = load_context(run_dir, need=("groups",))
    n, names = ctx.family.n, ctx.names
    if min(hc.iterations, hc.every, hc.envs_per_task, hc.slq_probes, hc.slq_steps) < 1 or hc.num_steps < 2 or hc.probes < 3:
        raise PolicyGradExError("--iterations, --every, --envs-per-task, --slq-probes, --slq-steps must be >= 1, "
                                "--num-steps >= 2 and --probes >= 3")
    if not hc.alphas or min(hc.alphas) < 1:
        raise PolicyGradExError(f"--alphas must be positive subset sizes, got {hc.alphas}")
    groups = load_json(ctx.rd.groups)["group_indices"]
    configs: dict[str, list[int]] = {f"single ({names[groups[0][0]]})": [groups[0][0]], "multitask (all)": list(range(n))}
    for g, members in enumerate(groups):
        configs[f"group {g + 1}"] = sorted(members)
    rng = np.random.default_rng(hc.seed + 23)
    alpha_configs: dict[int, list[int]] = {}
    for a in sorted({min(a, n) for a in hc.alphas}):
        alpha_configs[a] = sorted(int(x) for x in rng.choice(n, a, replace=False))
    # constant learning rate: with annealing the last updates vanish and so, trivially, does the gap
    ppo = ppo_dict(ctx.cfg.ppo, envs_per_task=hc.envs_per_task, num_steps=hc.num_steps, anneal_lr=False,
                   steps_per_task=hc.iterations * hc.envs_per_task * hc.num_steps)
    common = {"run_dir": str(ctx.rd.path), "config": ctx.cfg.to_dict(), "ppo": ppo, "init": hc.init,
              "every": hc.every, "probes": hc.probes, "estimator": hc.estimator, "eigenvalue": hc.eigenvalue,
              "slq_probes": hc.slq_probes, "slq_steps": hc.slq_steps}
    all_sets = list(configs.values()) + list(alpha_configs.values())
    specs = [JobSpec("policygradex.generalization:hessian_job", {**common, "task_ids": s},
                     seed=job_seed("hessian", hc.seed, tuple(s)), label=",".join(names[i] for i in s)) for s in all_sets]
    results = run_jobs(specs, ctx.rd.path / "jobs", launcher, console, "hessian: train and measure")
    by_set = {tuple(r["task_ids"]): r["rows"] for r in results}
    summary = []
    for label, s in list(configs.items()) + [(f"alpha={a}", s) for a, s in alpha_configs.items()]:
        rows = by_set[tuple(s)]
        summary.append({"config": label, "tasks": [names[i] for i in s], "alpha": len(s),
                        "trace": _final(rows, "trace"), "trace_stderr": _final(rows, "trace_stderr"),
                        "trace_positive": _final(rows, "trace_positive"),
                        "trace_positive_stderr": _final(rows, "trace_positive_stderr"),
                        "gap": _final(rows, "gap"), "bound": _final(rows, "bound"), "C": _final(rows, "C"),
                        "train_loss": _final(rows, "train_loss"), "test_loss": _final(rows, "test_loss"),
                        "top_eigenvalue": rows[-1].get("top_eigenvalue"), "n": rows[-1]["n"]})
    # does sharpness track the generalization error? rank correlation over every measurement of every configuration
    pooled = [r for key in dict.fromkeys(tuple(s) for s in all_sets) for r in by_set[key]]
    tracking = {key: float(spearmanr([r[key] for r in pooled], [r["gap"] for r in pooled]).statistic)
                for key in ("trace", "trace_positive", "bound")} if len(pooled) > 2 else {}
    record = {"family": ctx.family.name, "config": asdict(hc), "summary": summary, "tracking_spearman": tracking,
              "curves": {label: by_set[tuple(s)] for label, s in configs.items()},
              "alpha_curves": {str(a): by_set[tuple(s)] for a, s in alpha_configs.items()}}
    out_dir = ctx.rd.path / "hessian"
    atomic_write_json(out_dir / "hessian.json", record)
    _plot_curves(record, out_dir / "hessian_curves.png")
    _plot_alpha(record, out_dir / "hessian_alpha.png")
    write_markdown(out_dir / "hessian.md", markdown(record))
    return record


def _plot_curves(record: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=110)
    for label, rows in record["curves"].items():
        x = [r["iteration"] for r in rows]
        line, = axes[0].plot(x, [r["trace"] for r in rows], marker="o", ms=3, label=label)
        axes[1].plot(x, [r["gap"] for r in rows], marker="o", ms=3, color=line.get_color(), label=label)
        axes[2].plot(x, [r["bound"] for r in rows], marker="o", ms=3, color=line.get_color(), label=label)
    for ax, title in zip(axes, ["Hessian trace of the train loss", "generalization error (test - train loss)",
                                "Theorem 1 gap bound sqrt(C tr(H+) / n)"]):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("PPO iteration")
        ax.axhline(0, color="grey", lw=0.5)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{record['family']}: sharpness and generalization over training (cf. paper Fig. 2a)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _plot_alpha(record: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = [r for r in record["summary"] if r["config"].startswith("alpha=")]
    a = [r["alpha"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=110)
    ax.plot(a, [r["gap"] for r in rows], marker="o", label="generalization error")
    ax.set_xlabel("subset size alpha")
    ax.set_ylabel("test - train loss")
    ax2 = ax.twinx()
    ax2.errorbar(a, [r["trace"] for r in rows], yerr=[r["trace_stderr"] for r in rows], marker="s", color="C1",
                 label="Hessian trace")
    ax2.set_ylabel("tr(H)")
    fig.legend(fontsize=7, loc="upper right")
    ax.set_title(f"{record['family']}: vs subset size (cf. paper Fig. 2b)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def markdown(record: dict[str, Any]) -> str:
    hc = record["config"]
    lines = [f"# Hessian trace, generalization error and the Theorem 1 bound: {record['family']}", "",
             f"{hc['iterations']} PPO iterations of {hc['envs_per_task'] * hc['num_steps']} steps per task, from "
             f"{hc['init']}; measured every {hc['every']} iterations ({hc['estimator']}, {hc['probes']} HVPs); values "
             "averaged over the last 3 measurements. Bound: sqrt(C tr(H+) / n) (Theorem 1 at e -> 0); C: range of the "
             "per-transition loss; non-vacuous when bound < C.", "",
             "| configuration | tasks | tr(H) | tr(H+) | top eigenvalue | test - train loss | bound | C | n | bound < C |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in record["summary"]:
        eig = "" if r["top_eigenvalue"] is None else f"{r['top_eigenvalue']:.3g}"
        lines.append(f"| {r['config']} | {len(r['tasks'])} | {r['trace']:.3g} ± {r['trace_stderr']:.2g} | "
                     f"{r['trace_positive']:.3g} ± {r['trace_positive_stderr']:.2g} | {eig} | "
                     f"{r['gap']:.4f} | {r['bound']:.4f} | {r['C']:.2f} | {r['n']} | "
                     f"{'yes' if r['bound'] < r['C'] else 'no'} |")
    if record.get("tracking_spearman"):
        t = record["tracking_spearman"]
        lines += ["", "Spearman correlation with the generalization error over all measurements: "
                  f"tr(H) {t['trace']:.2f}, tr(H+) {t['trace_positive']:.2f}, bound {t['bound']:.2f}."]
    lines += ["", "![curves](hessian_curves.png) ![alpha](hessian_alpha.png)"]
    return "\n".join(lines)
