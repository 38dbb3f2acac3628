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
  the theorem allows as n grows; e = O(n^{-3/4} log(1/delta)) is not made explicit by the paper), i.e. the gap
  bound sqrt(C * H / n) with n = the transitions in B_t and C = the range (max - min) of the per-transition loss
  on B_t (the loss shifted to [0, C], as the theorem assumes). The bound is non-vacuous when it is below C, the
  trivial bound of a loss in [0, C]. Which H (``bound_measure``):

  - ``weighted`` (default): the theorem's own definition, H = W^T [H]^+ W with W the policy parameters (the
    PAC-Bayes prior centred at 0), measured at the current W rather than as a sup over the weight space;
  - ``weighted_from_init``: (W - W_0)^T [H]^+ (W - W_0), W_0 the parameters training started from (a prior
    centred at the initialisation, as Ju, Li and Zhang 2022 do for fine-tuning; W_0 does not depend on the data);
  - ``trace``: tr([H]^+), the "Hessian trace" the paper's text and Figure 2 speak of.

  All three are measured and reported. [H]^+ is the positive part of the batch Hessian, measured by Lanczos
  quadrature; the theorem's E[[H_t]^+] (per-transition truncation, then the mean) would need p x p
  eigendecompositions per transition. Transitions within a rollout are not independent, as the theorem assumes,
  so the bound is an estimate of the theorem's quantity, not a certificate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.console import Console
from scipy.stats import spearmanr

from policygradex.analysis.context import job_context, job_seed, load_context, ppo_dict, write_markdown
from policygradex.analysis.hessian import (
    Batch,
    clipped_losses,
    hutchinson,
    hutchpp,
    make_hvp,
    positive_quadratic_form,
    positive_trace,
    ppo_loss_fn,
    top_eigenvalue,
)
from policygradex.common.launcher import JobSpec, LauncherConfig, run_jobs
from policygradex.common.artifacts import atomic_write_json
from policygradex.common.errors import PolicyGradExError
from policygradex.common.plots import save_figure
from policygradex.envs.vector import MultiTaskVectorEnv
from policygradex.nets.base import flat_params
from policygradex.pipeline.group_record import Groups
from policygradex.rl.config import PPOConfig
from policygradex.rl.gae import add_advantages
from policygradex.rl.ppo import train_ppo
from policygradex.rl.rollout import Rollout, collect_rollout


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
    block_len: int = 64
    """Steps per block for the batch-means standard error of the generalization error (episodes are correlated)."""
    quad_steps: int = 30
    """Lanczos steps for the weighted Hessians W^T H^+ W and (W - W_0)^T H^+ (W - W_0) (no probes: one start vector)."""
    bound_measure: Literal["weighted", "weighted_from_init", "trace"] = "weighted"
    """The H in Theorem 1's sqrt(C H / n): ``weighted`` W^T H^+ W (the theorem's definition), ``weighted_from_init``
    (W - W_0)^T H^+ (W - W_0), or ``trace`` tr(H^+). All three are reported; this one is plotted and called "bound"."""
    eigenvalue: bool = True
    """Also the top Hessian eigenvalue (Lanczos) at the last measurement."""
    alphas: tuple[int, ...] = (1, 2, 3, 5, 10)
    """Subset sizes for the alpha sweep (capped at n; one random subset each)."""
    init: Literal["scratch", "theta_star"] = "scratch"
    """Start from a fresh initialisation (the paper's "initial policy") or from theta_star."""
    seed: int = 0
    """Seed of the subsets and of the training jobs."""


BOUND_MEASURES = ("weighted", "weighted_from_init", "trace")
BOUND_LABELS = {"weighted": "W^T H+ W", "weighted_from_init": "(W-W0)^T H+ (W-W0)", "trace": "tr(H+)"}


JOB_VERSION = 2
"""Part of every hessian job's spec: bump it when what a job measures changes, so cached results are recomputed."""


def _block_ids(rollout: Rollout, block_len: int) -> torch.Tensor:
    """Per valid transition of a (T, E) rollout, the id of its block: ``block_len`` consecutive steps of one env."""
    T, E = rollout.valid.shape
    ids = (torch.arange(T)[:, None] // block_len) * E + torch.arange(E)[None, :]
    return ids.reshape(-1)[rollout.valid.reshape(-1)]


def batch_means_stderr(values: torch.Tensor, blocks: torch.Tensor) -> float:
    """Standard error of mean(values) by non-overlapping batch means: consecutive transitions of an episode are
    correlated, so the i.i.d. formula std / sqrt(n) would be too small. Blocks of unequal size are weighted by size
    (the ratio-estimator variance). NaN with fewer than two blocks."""
    _, inverse = torch.unique(blocks, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1, dtype=torch.float64).index_add_(0, inverse, values.double())
    sizes = torch.bincount(inverse).double()
    B, N = len(sizes), float(sizes.sum())
    if B < 2:
        return float("nan")
    mean = float(sums.sum()) / N
    return float(torch.sqrt(B / (B - 1) * ((sums - sizes * mean) ** 2).sum()) / N)


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
    test_env = MultiTaskVectorEnv(family, task_ids, ppo.envs_per_task, seed + 104_729, cfg.network.task_id)
    state: dict[str, Any] = {"iteration": 0, "test_obs": test_env.reset()}
    rows: list[dict[str, Any]] = []
    quad_steps = int(args.get("quad_steps", 30))
    block_len = int(args.get("block_len", 64))

    def before_update(live: torch.nn.Module, rollout: Rollout) -> None:
        state["iteration"] += 1
        it = state["iteration"]
        if it == 1:  # W_0: the parameters training starts from, before any update
            state["w0"] = flat_params(live, live.policy_parameter_names()).detach().double()
        state["pending"] = None
        if it % every and it != iterations:
            return
        fresh, state["test_obs"] = collect_rollout(test_env, live, state["test_obs"], ppo.num_steps)
        add_advantages(fresh, ppo.gamma, ppo.gae_lambda)
        state["pending"] = (it, _batch(rollout), _batch(fresh), _block_ids(fresh, block_len))
        state["model"] = live

    def on_iteration(it: int, total: int, row: dict[str, Any]) -> None:
        if state.get("pending") is None:
            return
        it, train, test, test_blocks = state["pending"]
        live = state["model"]
        train_losses = _losses(live, train, ppo.clip_coef)
        test_losses = _losses(live, test, ppo.clip_coef)
        loss, theta = ppo_loss_fn(live, train, ppo.clip_coef)
        hvp = make_hvp(loss, theta)
        est = estimator(hvp, theta.numel(), probes, seed=seed + it)
        pos = positive_trace(hvp, theta.numel(), int(args["slq_probes"]), int(args["slq_steps"]), seed=seed + it)
        weighted = positive_quadratic_form(hvp, theta, quad_steps)
        weighted_init = positive_quadratic_form(hvp, theta - state["w0"], quad_steps)
        C = float(train_losses.max() - train_losses.min())
        n = len(train)
        bounds = {m: float(np.sqrt(C * max(h, 0.0) / n))
                  for m, h in (("weighted", weighted), ("weighted_from_init", weighted_init), ("trace", pos.trace))}
        out = {"iteration": it, "env_steps_per_task": it * ppo.envs_per_task * ppo.num_steps,
               "mean_return": row["mean_return"], "train_loss": float(train_losses.mean()),
               "test_loss": float(test_losses.mean()), "gap": float(test_losses.mean() - train_losses.mean()),
               # the test advantages are standardised, mean(A) = 0 exactly, so the test loss is the mean of
               # loss_t + A_t = -(min(r A, clip(r) A) - A), which varies far less than loss_t: its batch-means error
               "gap_stderr": batch_means_stderr(test_losses + test.advantages, test_blocks),
               "trace": est.trace, "trace_stderr": est.stderr,
               "trace_positive": pos.trace, "trace_positive_stderr": pos.stderr,
               "weighted": weighted, "weighted_from_init": weighted_init, "n": n, "C": C,
               "bounds": bounds}
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
    if min(hc.iterations, hc.every, hc.envs_per_task, hc.slq_probes, hc.slq_steps, hc.quad_steps, hc.block_len) < 1 \
            or hc.num_steps < 2 or hc.probes < 3:
        raise PolicyGradExError("--iterations, --every, --envs-per-task, --slq-probes, --slq-steps, --quad-steps, "
                                "--block-len must be >= 1, --num-steps >= 2 and --probes >= 3")
    if hc.bound_measure not in BOUND_MEASURES:
        raise PolicyGradExError(f"--bound-measure must be one of {', '.join(BOUND_MEASURES)}, got {hc.bound_measure!r}")
    if not hc.alphas or min(hc.alphas) < 1:
        raise PolicyGradExError(f"--alphas must be positive subset sizes, got {hc.alphas}")
    groups = Groups.load(ctx.rd.groups, ctx.family.n).index_lists()
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
    common = {"config": ctx.cfg.to_dict(), "ppo": ppo, "init": hc.init,
              "every": hc.every, "probes": hc.probes, "estimator": hc.estimator, "eigenvalue": hc.eigenvalue,
              "slq_probes": hc.slq_probes, "slq_steps": hc.slq_steps, "quad_steps": hc.quad_steps,
              "block_len": hc.block_len, "version": JOB_VERSION}
    all_sets = list(configs.values()) + list(alpha_configs.values())
    specs = [JobSpec("policygradex.analysis.generalization:hessian_job", {**common, "task_ids": s},
                     seed=job_seed("hessian", hc.seed, tuple(s)), label=",".join(names[i] for i in s),
                     paths={"run_dir": str(ctx.rd.path)}) for s in all_sets]
    results = run_jobs(specs, ctx.rd.path / "jobs", launcher, console, "hessian: train and measure")
    by_set = {tuple(r["task_ids"]): r["rows"] for r in results}
    for rows in by_set.values():  # the bound that is plotted and judged; all three stay in "bounds"
        for r in rows:
            r["bound"] = r["bounds"][hc.bound_measure]
    summary = []
    for label, s in list(configs.items()) + [(f"alpha={a}", s) for a, s in alpha_configs.items()]:
        rows = by_set[tuple(s)]
        entry: dict[str, Any] = {"config": label, "tasks": [names[i] for i in s], "alpha": len(s),
                                 "top_eigenvalue": rows[-1].get("top_eigenvalue"), "n": rows[-1]["n"]}
        for key in ("trace", "trace_stderr", "trace_positive", "trace_positive_stderr", "weighted",
                    "weighted_from_init", "gap", "bound", "C", "train_loss", "test_loss"):
            entry[key] = _final(rows, key)
        entry["bounds"] = {m: float(np.mean([r["bounds"][m] for r in rows[-3:]])) for m in BOUND_MEASURES}
        last = [r["gap_stderr"] for r in rows[-3:]]
        entry["gap_stderr"] = float(np.sqrt(np.sum(np.square(last))) / len(last))
        summary.append(entry)
    # does sharpness track the generalization error? rank correlation over every measurement of every configuration
    pooled = [r for key in dict.fromkeys(tuple(s) for s in all_sets) for r in by_set[key]]
    tracking = {key: float(spearmanr([r[key] for r in pooled], [r["gap"] for r in pooled]).statistic)
                for key in ("trace", "trace_positive", "weighted", "weighted_from_init")} if len(pooled) > 2 else {}
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

    measure = record["config"]["bound_measure"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=110)
    for label, rows in record["curves"].items():
        x = [r["iteration"] for r in rows]
        line, = axes[0].plot(x, [r["trace"] for r in rows], marker="o", ms=3, label=label)
        axes[1].errorbar(x, [r["gap"] for r in rows], yerr=[r["gap_stderr"] for r in rows], marker="o", ms=3,
                         capsize=2, color=line.get_color(), label=label)
        axes[2].plot(x, [r["bound"] for r in rows], marker="o", ms=3, color=line.get_color(), label=label)
        axes[2].plot(x, [r["gap"] for r in rows], ls=":", color=line.get_color())
    for ax, title in zip(axes, ["Hessian trace tr(H) of the train loss", "generalization error (test - train loss)",
                                f"Theorem 1 gap bound sqrt(C H / n), H = {BOUND_LABELS[measure]}\n"
                                "(dotted: the measured gap)"]):
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
    ax.errorbar(a, [r["gap"] for r in rows], yerr=[r["gap_stderr"] for r in rows], marker="o", capsize=2,
                label="generalization error")
    ax.set_xlabel("subset size alpha")
    ax.set_ylabel("test - train loss")
    ax2 = ax.twinx()
    ax2.errorbar(a, [r["trace"] for r in rows], yerr=[r["trace_stderr"] for r in rows], marker="s", color="C1",
                 label="Hessian trace")
    ax2.set_ylabel("tr(H)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="best")
    ax.set_title(f"{record['family']}: vs subset size (cf. paper Fig. 2b)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def markdown(record: dict[str, Any]) -> str:
    hc = record["config"]
    measure = hc["bound_measure"]
    lines = [f"# Hessian trace, generalization error and the Theorem 1 bound: {record['family']}", "",
             f"{hc['iterations']} PPO iterations of {hc['envs_per_task'] * hc['num_steps']} steps per task, from "
             f"{hc['init']}; measured every {hc['every']} iterations; values averaged over the last 3 measurements. "
             f"tr(H): {hc['estimator']} with {hc['probes']} HVPs (± its standard error); tr(H+): stochastic Lanczos "
             f"quadrature, {hc['slq_probes']} probes x {hc['slq_steps']} steps; W^T H+ W and (W-W0)^T H+ (W-W0): "
             f"Lanczos quadrature, {hc.get('quad_steps', 30)} steps; W: the policy parameters, W0: where training "
             "started; H+: the batch Hessian with negative eigenvalues set to 0.", "",
             "## Sharpness", "",
             "| configuration | tasks | tr(H) | tr(H+) | top eigenvalue | W^T H+ W | (W-W0)^T H+ (W-W0) |",
             "|---|---|---|---|---|---|---|"]
    for r in record["summary"]:
        eig = "" if r["top_eigenvalue"] is None else f"{r['top_eigenvalue']:.3g}"
        lines.append(f"| {r['config']} | {len(r['tasks'])} | {r['trace']:.3g} ± {r['trace_stderr']:.2g} | "
                     f"{r['trace_positive']:.3g} ± {r['trace_positive_stderr']:.2g} | {eig} | "
                     f"{r['weighted']:.3g} | {r['weighted_from_init']:.3g} |")
    lines += ["", "## Generalization error and the bound", "",
              "Theorem 1 at leading order (e -> 0): test loss - train loss <= sqrt(C H / n), C the range of the "
              "per-transition PPO loss, n the transitions of the rollout. Non-vacuous when the bound is below C (the "
              f"trivial bound for a loss in [0, C]). The bound column uses H = {BOUND_LABELS[measure]}.", "",
              "| configuration | train loss | test loss | test - train | C | n | "
              + " | ".join(f"bound, H = {BOUND_LABELS[m]}" for m in BOUND_MEASURES) + " | non-vacuous | holds |",
              "|---|---|---|---|---|---|" + "---|" * len(BOUND_MEASURES) + "---|---|"]
    for r in record["summary"]:
        b = r["bounds"]
        lines.append(f"| {r['config']} | {r['train_loss']:.4f} | {r['test_loss']:.4f} | "
                     f"{r['gap']:.4f} ± {r['gap_stderr']:.4f} | "
                     f"{r['C']:.2f} | {r['n']} | " + " | ".join(f"{b[m]:.4f}" for m in BOUND_MEASURES) + " | "
                     f"{'yes' if r['bound'] < r['C'] else 'no'} | {'yes' if r['bound'] >= r['gap'] else 'no'} |")
    if record.get("tracking_spearman"):
        t = record["tracking_spearman"]
        lines += ["", "Spearman correlation with the generalization error over all measurements of all "
                  "configurations: " + ", ".join(f"{lab} {t[key]:.2f}" for key, lab in
                                                  (("trace", "tr(H)"), ("trace_positive", "tr(H+)"),
                                                   ("weighted", "W^T H+ W"),
                                                   ("weighted_from_init", "(W-W0)^T H+ (W-W0)")) if key in t) + "."]
    lines += ["", "![curves](hessian_curves.png) ![alpha](hessian_alpha.png)"]
    return "\n".join(lines)
