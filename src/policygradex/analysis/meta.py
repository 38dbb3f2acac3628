"""``policygradex meta RUN_DIR``: the paper's meta-RL setting. Meta-train with MAML on one representative task per
group, adapt to unseen tasks of the family, and compare with other choices of training tasks (paper Table 2, the
control environments).

Rows (every MAML row spends the same environment steps: :class:`~policygradex.rl.config.MAMLConfig` fills its
meta-batch from the training tasks in rotation):

- ``policygradex``: one representative per PolicyGradEx group: a random member, drawn anew for every seed (the
  paper), or the group's medoid by the affinity U (``--representatives medoid``);
- ``all tasks``: all n source tasks;
- ``random``: k source tasks drawn at random, anew for every seed;
- ``gradient_similarity``: one representative per gradient-similarity group (as compare's groups; the medoid by
  the cosine similarity of the task gradients with ``medoid``);
- ``multitask``: no MAML; the run's theta_star (PPO on all n tasks, the run's budget) adapted the same way.

Each policy is adapted to ``unseen_tasks`` target tasks, drawn once from the family's parameter range with
``unseen_seed`` (the same tasks for every row and seed), by exactly MAML's inner loop for ``adapt_steps`` steps,
each on fresh episodes. The table gives the mean return over the targets before and after adaptation, mean ± std
over seeds (ddof=0, as in ``compare``), and PolicyGradEx minus each row with its standard error (ddof=1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.console import Console

from policygradex.analysis.compare import gradient_similarity_groups
from policygradex.analysis.context import (
    ensure_transitions,
    job_context,
    job_seed,
    load_context,
    load_transitions,
    write_markdown,
)
from policygradex.common.launcher import JobSpec, LauncherConfig, run_jobs
from policygradex.analysis.scores import mean_spread, seeds_phrase
from policygradex.common.artifacts import atomic_write_json, load_npy
from policygradex.common.errors import PolicyGradExError
from policygradex.common.plots import save_figure
from policygradex.envs.base import unseen_tasks
from policygradex.pipeline.group_record import Groups
from policygradex.rl.config import MAMLConfig
from policygradex.rl.maml import adaptation_curve, meta_train


@dataclass(frozen=True)
class MetaConfig:
    """Options of the meta-RL comparison."""

    seeds: int = 5
    """Independent seeds per row (the paper: 5 runs)."""
    unseen_tasks: int = 50
    """Target tasks drawn from the family's parameter range (the paper: 50)."""
    unseen_seed: int = 0
    """Seed of the target tasks' draw: the same targets for every row and seed."""
    adapt_steps: int = 200
    """Adaptation steps on each target task (the paper: 200), each MAML's inner step on fresh episodes."""
    representatives: Literal["random", "medoid"] = "random"
    """How a group's representative is chosen: a random member per seed (the paper) or the medoid by affinity."""
    maml: MAMLConfig = field(default_factory=MAMLConfig)
    """MAML's training and adaptation procedure (its gamma is replaced by the run's PPO gamma)."""
    seed: int = 0
    """Base seed of the jobs."""


ROWS = ("policygradex", "all tasks", "random", "gradient_similarity", "multitask")
"""The rows of the table, in order."""


def medoid(group: list[int], similarity: np.ndarray) -> int:
    """The member with the largest total similarity to the other members (the lowest index among ties)."""
    if len(group) == 1:
        return group[0]
    scores = [sum(similarity[i, j] for j in group if j != i) for i in group]
    return group[int(np.argmax(scores))]


def representatives(groups: list[list[int]], similarity: np.ndarray, how: str, seed: int) -> list[int]:
    """One task per group: a random member (``random``, from ``seed``) or the medoid by ``similarity``."""
    if how == "medoid":
        return sorted(medoid(sorted(g), similarity) for g in groups)
    rng = np.random.default_rng(seed)
    return sorted(int(rng.choice(sorted(g))) for g in groups)


def meta_job(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """Meta-train with MAML on ``args["task_ids"]`` (or take theta_star with ``init="theta_star"``), then adapt to
    the unseen tasks; per-step mean returns over the targets, and the targets' returns before and after."""
    cfg, family, model = job_context({**args, "init": args.get("init", "scratch")})
    maml = MAMLConfig(**args["maml"])
    targets = unseen_tasks(family, int(args["unseen_tasks"]), int(args["unseen_seed"]))
    out: dict[str, Any] = {"task_ids": args.get("task_ids", [])}
    if args.get("init") != "theta_star":
        trained = meta_train(family, [int(t) for t in args["task_ids"]], cfg.network, maml, seed)
        model = trained.model
        out["train_curve"] = [[row["env_steps"], row["pre_return"], row["post_return"]] for row in trained.curve]
        out["train_seconds"] = trained.seconds
    curve = adaptation_curve(model, targets, list(range(targets.n)), int(args["adapt_steps"]), maml, seed + 1)
    out.update({"curve": curve.mean(axis=1).tolist(), "before": curve[0].tolist(), "after": curve[-1].tolist()})
    return out


def meta(run_dir: Path, mc: MetaConfig, launcher: LauncherConfig, console: Console) -> dict[str, Any]:
    ctx = load_context(run_dir, need=("groups", "affinity", "subsets"))
    family, n, names = ctx.family, ctx.family.n, ctx.names
    if mc.seeds < 1 or mc.unseen_tasks < 1 or mc.adapt_steps < 0:
        raise PolicyGradExError("--seeds and --unseen-tasks must be >= 1, --adapt-steps >= 0")
    if min(mc.maml.iterations, mc.maml.meta_batch, mc.maml.trajectories, mc.maml.inner_steps,
           mc.maml.env_steps or 1) < 1:
        raise PolicyGradExError("--iterations, --env-steps, --meta-batch, --trajectories and --inner-steps must be >= 1")
    if mc.representatives not in ("random", "medoid"):
        raise PolicyGradExError(f"--representatives must be random or medoid, got {mc.representatives!r}")
    targets = unseen_tasks(family, mc.unseen_tasks, mc.unseen_seed)  # a family without a range fails here
    if ctx.cfg.network.task_id:
        raise PolicyGradExError("meta adapts to unseen tasks, which have no task id: give a run made without "
                                "--task-id")
    groups_run = Groups.load(ctx.rd.groups, ctx.family.n)
    k = groups_run.k
    U = load_npy(ctx.rd.affinity)
    trans = load_transitions(ensure_transitions(ctx, console), ctx.theta_sha)
    grad_groups, S = gradient_similarity_groups(ctx, trans, k)

    training: dict[str, list[list[int]]] = {  # row -> per seed: the training tasks
        "policygradex": [representatives(groups_run.index_lists(), U, mc.representatives,
                                         job_seed("meta reps", mc.seed, s)) for s in range(mc.seeds)],
        "all tasks": [list(range(n))] * mc.seeds,
        "random": [sorted(int(i) for i in np.random.default_rng(job_seed("meta random", mc.seed, s))
                          .choice(n, size=k, replace=False)) for s in range(mc.seeds)],
        "gradient_similarity": [representatives(grad_groups, S, mc.representatives,
                                                job_seed("meta grad reps", mc.seed, s)) for s in range(mc.seeds)],
    }
    maml = replace(mc.maml, gamma=ctx.cfg.ppo.gamma)
    common = {"config": ctx.cfg.to_dict(), "maml": asdict(maml), "unseen_tasks": mc.unseen_tasks,
              "unseen_seed": mc.unseen_seed, "adapt_steps": mc.adapt_steps}
    jobs: dict[tuple[Any, ...], JobSpec] = {}  # rows that train on the same tasks share the job
    keys: dict[str, list[tuple[Any, ...]]] = {}
    for row, per_seed in training.items():
        keys[row] = []
        for s, tasks in enumerate(per_seed):
            key = ("maml", s, *tasks)
            keys[row].append(key)
            jobs[key] = JobSpec("policygradex.analysis.meta:meta_job", {**common, "task_ids": tasks},
                                seed=job_seed("meta", mc.seed, s, tuple(tasks)),
                                label=f"seed {s}: MAML on {','.join(names[i] for i in tasks)}")
    keys["multitask"] = []
    for s in range(mc.seeds):
        key = ("theta_star", s)
        keys["multitask"].append(key)
        jobs[key] = JobSpec("policygradex.analysis.meta:meta_job",
                            {**common, "init": "theta_star", "theta_sha": ctx.theta_sha},
                            seed=job_seed("meta", mc.seed, s, "theta_star"), label=f"seed {s}: theta_star adapted",
                            paths={"run_dir": str(ctx.rd.path)})
    results = run_jobs(list(jobs.values()), ctx.rd.path / "jobs", launcher, console,
                       f"meta: {len(jobs)} jobs ({mc.adapt_steps} adaptation steps on {mc.unseen_tasks} unseen tasks)")
    by_key = dict(zip(jobs, results))

    table: dict[str, Any] = {}
    for row in ROWS:
        res = [by_key[key] for key in keys[row]]
        after = np.array([np.mean(r["after"]) for r in res])
        before = np.array([np.mean(r["before"]) for r in res])
        table[row] = {
            "training_tasks": [[names[i] for i in r["task_ids"]] for r in res],
            "before_mean": float(before.mean()), "before_std": float(before.std()),
            "after_mean": float(after.mean()), "after_std": float(after.std()),
            "per_seed_after": after.tolist(), "per_seed_before": before.tolist(),
            "curve": np.mean([r["curve"] for r in res], axis=0).tolist(),
            "curve_stderr": (np.std([r["curve"] for r in res], axis=0, ddof=1) / np.sqrt(mc.seeds)).tolist()
            if mc.seeds > 1 else None,
        }
    pgx = np.array(table["policygradex"]["per_seed_after"])
    for row, entry in table.items():
        other = np.array(entry["per_seed_after"])
        entry["policygradex_difference"] = None if row == "policygradex" else float(pgx.mean() - other.mean())
        entry["difference_stderr"] = None if row == "policygradex" or mc.seeds < 2 else \
            float(np.sqrt(pgx.var(ddof=1) / mc.seeds + other.var(ddof=1) / mc.seeds))
    env_steps = by_key[keys["policygradex"][0]]["train_curve"][-1][0]
    record = {"family": family.name, "task_names": names, "k": k, "config": asdict(mc), "maml": asdict(maml),
              "meta_train_env_steps": env_steps, "theta_star_env_steps": n * ctx.cfg.ppo.steps_per_task,
              "unseen": targets.task_names, "rows": table}
    out_dir = ctx.rd.path / "meta"
    atomic_write_json(out_dir / "meta.json", record)
    plot_adaptation(record, out_dir / "adaptation_curves.png")
    write_markdown(out_dir / "meta.md", markdown(record))
    return record


def plot_adaptation(record: dict[str, Any], path: Path) -> None:
    """Mean return over the unseen tasks against the adaptation step, one line per row (mean ± standard error
    over seeds)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    for row, entry in record["rows"].items():
        y = np.array(entry["curve"])
        x = np.arange(len(y))
        ax.plot(x, y, lw=1.8 if row == "policygradex" else 1.1, label=row)
        if entry["curve_stderr"] is not None:
            se = np.array(entry["curve_stderr"])
            ax.fill_between(x, y - se, y + se, alpha=0.15)
    ax.set_xlabel("adaptation step")
    ax.set_ylabel(f"mean return on {len(record['unseen'])} unseen tasks")
    ax.set_title(f"{record['family']}: adaptation from each initialisation", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def markdown(record: dict[str, Any]) -> str:
    mc, maml = record["config"], record["maml"]
    lines = [f"# Meta-RL: {record['family']}", "",
             f"MAML ({'first' if maml['first_order'] else 'second'}-order, ProMP-style PPO outer loop) on each row's "
             f"training tasks: {maml['iterations']} meta-iterations"
             + (f" at most, stopping at {maml['env_steps']:,} environment steps," if maml.get("env_steps") else "")
             + f" of {maml['meta_batch']} task slots, "
             f"{maml['trajectories']} episodes per slot per step, {maml['inner_steps']} inner step(s) of size "
             f"{maml['inner_lr']}; {record['meta_train_env_steps']} environment steps per MAML training. "
             f"`multitask` is the run's theta_star (PPO on all {len(record['task_names'])} tasks, "
             f"{record['theta_star_env_steps']} steps), adapted the same way. Each policy is adapted to "
             f"{len(record['unseen'])} unseen tasks (drawn with seed {mc['unseen_seed']}) for {mc['adapt_steps']} "
             f"steps; k = {record['k']}; representatives: {mc['representatives']}. "
             f"{seeds_phrase(mc['seeds']).capitalize()} of the mean return over the unseen tasks.", "",
             "PolicyGradEx - it: the difference of the mean returns after adaptation ± its standard error (seeds "
             "independent); a difference within 2 standard errors is not resolved by these seeds.", "",
             "| row | before adaptation | after adaptation | PolicyGradEx - it | training tasks (seed 0) |",
             "|---|---|---|---|---|"]
    for row, e in record["rows"].items():
        diff, se = e["policygradex_difference"], e["difference_stderr"]
        diff_s = "" if diff is None else f"{diff:+.1f}" + ("" if se is None else f" ± {se:.1f}")
        tasks = ", ".join(e["training_tasks"][0]) if e["training_tasks"][0] else "(theta_star)"
        lines.append(f"| {row} | {mean_spread(e['before_mean'], e['before_std'], mc['seeds'])} | "
                     f"{mean_spread(e['after_mean'], e['after_std'], mc['seeds'])} | {diff_s} | {tasks} |")
    lines += ["", "![adaptation curves](adaptation_curves.png)"]
    return "\n".join(lines)
