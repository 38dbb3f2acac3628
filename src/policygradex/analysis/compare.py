"""``policygradex compare RUN_DIR``: does training one policy per PolicyGradEx group pay off? (paper Table 2)

Every grouping gets the same total environment-step budget: each task gets ``steps_per_task`` steps, inside the
policy of its group, trained from scratch with the run's PPO settings. Groupings:

- ``multitask``: one policy on all tasks (k = 1);
- ``random``: a random partition into k groups of near-equal size, drawn anew for every seed;
- ``gradient_similarity``: cosine similarity of the per-task policy gradients at theta_star
  (grad of mean_t A_t log pi(a_t|s_t) over the task's transitions), clustered by the same SDP routine with k;
- ``policygradex``: the run's groups;
- ``ground_truth``: the groups of ``policygradex ground-truth``, when that has been run;
- ``planted``: the family's known groups, when it has them (the ``planted`` family).

Options add the k ablation (PolicyGradEx groups re-clustered from U with k = 1..5) and the d ablation (features
re-projected to d = 100..1000, the surrogate refitted on the same subsets, clustered with the run's k). Each
policy is evaluated on fresh episodes of each of its tasks; the table gives the mean return per task and overall,
mean ± std over seeds, and PolicyGradEx's relative improvement over each grouping.

The std describes the spread of the seeds' results: numpy's population std (ddof=0), the convention of
Stable-Baselines3's ``evaluate_policy`` and of every table in ``results/``. Whether a difference is resolved is read
from the difference's standard error instead: paired by seed (:func:`paired_difference`, sample variance, ddof=1),
because groupings that share a group share that group's trained policy within a seed.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from policygradex.analysis.context import (
    RunContext,
    ensure_transitions,
    job_seed,
    load_context,
    load_transitions,
    ppo_dict,
    write_markdown,
)
from policygradex.common.launcher import JobSpec, LauncherConfig, run_jobs
from policygradex.analysis.scores import mean_spread, seeds_phrase
from policygradex.common.artifacts import atomic_write_json, load_json, load_npy
from policygradex.common.errors import PolicyGradExError
from policygradex.common.plots import save_figure
from policygradex.common.progress import status
from policygradex.nets.base import check_network_name, with_network
from policygradex.pipeline.affinity import subset_affinity
from policygradex.pipeline.clustering import cluster
from policygradex.pipeline.features import feature_arrays, feature_set, projection_for
from policygradex.pipeline.group_record import Groups
from policygradex.pipeline.partitions import groups_from_labels
from policygradex.pipeline.subset_table import SubsetTable
from policygradex.pipeline.surrogate import run_surrogate
from policygradex.rl.config import PPOConfig


@dataclass(frozen=True)
class CompareConfig:
    """Options of the downstream comparison."""

    seeds: int = 5
    """Independent seeds per grouping (the paper: 5 runs)."""
    steps_per_task: int | None = None
    """Environment steps per task (None: the run's meta-training budget); the total is n times this for all."""
    eval_episodes: int | None = None
    """Evaluation episodes per task for each trained policy (None: the family's, ``TaskFamily.eval_episodes``: 10,
    or 50 for Meta-World, one per goal)."""
    ablate_k: tuple[int, ...] = ()
    """Also train PolicyGradEx groups re-clustered from U with each of these k."""
    ablate_d: tuple[int, ...] = ()
    """Also train PolicyGradEx groups from features re-projected to each of these d."""
    extra_groups: tuple[tuple[str, str], ...] = ()
    """Further groupings to train, as (name, path to a JSON file): a ``groups.json`` of another run (its
    ``group_indices``) or a plain list of lists of task indices; each must partition the n tasks."""
    single: bool = False
    """Also train every task alone (n policies per seed, the ``single`` row), and report how far the one multitask
    policy falls below what each task reaches alone: the negative transfer that grouping is meant to avoid."""
    group_network: str | None = None
    """The network each grouping's policies are trained with (``--group-network``; None: the run's). The paper trains
    its groups with Soft Modularization on Meta-World (``softmod``)."""
    network_rows: tuple[str, ...] = ()
    """Also train one network of each of these kinds on all n tasks (``--network-rows softmod,care,paco``): the
    paper's multitask-architecture baselines, rows named ``all tasks (NAME)``."""
    seed: int = 0
    """Base seed (seed i of a grouping uses a seed derived from (seed, i, group))."""
    trainings_from: tuple[str, ...] = ()
    """Run directories whose compare trainings this one may reuse (``--trainings-from``): a training from scratch
    that another run of the same family already made with the same network, budget, tasks, evaluation and seed is
    copied into this run's job cache instead of being trained again (:func:`adopt_trainings`). It changes no
    result, only what is trained."""


BUILT_IN = ("multitask", "random", "gradient_similarity", "policygradex", "ground_truth", "planted", "single")
"""Names of the groupings compare trains by itself (the ablations are named "policygradex k=..." / "d=...")."""


def load_partition(path: Path, n: int) -> list[list[int]]:
    """Groups from a JSON file: ``{"group_indices": [[...], ...]}`` (what ``policygradex run`` writes) or a list of
    lists of task indices; or that list itself, written inline (``[[0,1],[2,3]]``). Every task 0..n-1 must be in
    exactly one group."""
    if not path.is_file() and str(path).lstrip().startswith("["):
        try:
            blob = json.loads(str(path))
        except json.JSONDecodeError as exc:
            raise PolicyGradExError(f"--groups: {path} is not a JSON list of index lists ({exc.msg})") from None
    elif not path.is_file():
        raise PolicyGradExError(f"--groups: {path} is not a file; give a groups.json or a JSON list of index lists")
    else:
        blob = load_json(path)
    groups = blob.get("group_indices") if isinstance(blob, dict) else blob
    ok = isinstance(groups, list) and all(isinstance(g, list) and g and all(isinstance(i, int) for i in g)
                                          for g in groups)
    if not ok:
        raise PolicyGradExError(f"--groups: {path} holds no list of lists of task indices (nor 'group_indices')")
    flat = sorted(i for g in groups for i in g)
    if flat != list(range(n)):
        raise PolicyGradExError(f"--groups: the groups in {path} do not partition the {n} tasks 0..{n - 1} "
                                "(each exactly once)")
    return [sorted(g) for g in groups]


def random_groups(n: int, k: int, seed: int) -> list[list[int]]:
    """A random partition of n tasks into k groups of near-equal size."""
    perm = np.random.default_rng(seed).permutation(n)
    return [sorted(int(x) for x in part) for part in np.array_split(perm, k)]


def task_gradients(ctx: RunContext, trans: dict[str, Any]) -> torch.Tensor:
    """(n, p): per-task policy gradient at theta_star, grad of mean_t A_t log pi(a_t|s_t) on its transitions."""
    model, names = ctx.model, ctx.model.policy_parameter_names()
    params = dict(model.named_parameters())
    rows = []
    for t in trans["tasks"]:
        objective = (t["advantages"] * model(t["obs"], t["actions"])).mean()
        grads = torch.autograd.grad(objective, [params[k] for k in names])
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows).detach()


def gradient_similarity_groups(ctx: RunContext, trans: dict[str, Any], k: int) -> tuple[list[list[int]], np.ndarray]:
    G = task_gradients(ctx, trans).double()
    G = G / G.norm(dim=1, keepdim=True).clamp_min(1e-12)
    S = (G @ G.T).numpy()
    res = cluster(S, k=k, solver=ctx.cfg.cluster.solver, exhaustive_check=False)
    return groups_from_labels(res.labels), S


def groups_at_dimension(ctx: RunContext, trans: dict[str, Any], d: int, k: int) -> list[list[int]]:
    """Re-project the gradient features to dimension d, refit the surrogate on the run's subsets, cluster with k."""
    cfg = ctx.cfg
    projection = projection_for(cfg, ctx.model, dim=d)
    data = feature_set([feature_arrays(ctx.model, t["obs"], t["actions"], t["advantages"].numpy(), projection, cfg.features)
                        for t in trans["tasks"]], cfg.features.holdout_fraction)
    subsets = SubsetTable.load(ctx.rd.subsets).subsets
    res = run_surrogate(data, subsets, cfg.surrogate)
    U = subset_affinity(subsets, res.f_hat, ctx.family.n)
    return groups_from_labels(cluster(U, k=k, solver=cfg.cluster.solver, exhaustive_check=False).labels)


def quiet_nanmean(stack: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN (iterations in which no episode ended), NaN where all are: long episodes
    (Meta-World's 500 steps) often end in no iteration of a short budget."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=0)


def compare(run_dir: Path, cc: CompareConfig, launcher: LauncherConfig, console: Console) -> dict[str, Any]:
    ctx = load_context(run_dir, need=("groups", "affinity", *(("subsets",) if cc.ablate_d else ())))
    n, names = ctx.family.n, ctx.names
    eval_episodes = ctx.family.eval_episodes if cc.eval_episodes is None else cc.eval_episodes
    if cc.seeds < 1 or eval_episodes < 1:
        raise PolicyGradExError("--seeds and --eval-episodes must be >= 1")
    for k in cc.ablate_k:
        if not 1 <= k <= n:
            raise PolicyGradExError(f"--ablate-k {k} is out of range: 1 <= k <= {n}")
    for d in cc.ablate_d:
        if d < 1:
            raise PolicyGradExError(f"--ablate-d values must be >= 1, got {d}")
    for net in (cc.group_network, *cc.network_rows):
        if net is not None:
            check_network_name(net)
    for source in cc.trainings_from:
        if not (Path(source) / "config.json").is_file():
            raise PolicyGradExError(f"--trainings-from {source}: not a run directory (no config.json)")
    extra = {}  # bad input fails before any work
    for name, path in cc.extra_groups:
        if name in BUILT_IN or name.startswith("policygradex ") or name in extra:
            raise PolicyGradExError(f"--groups {name}=...: the name {name!r} is taken; choose another")
        extra[name] = load_partition(Path(path), n)
    groups_run = Groups.load(ctx.rd.groups, ctx.family.n)
    k = groups_run.k
    trans = load_transitions(ensure_transitions(ctx, console), ctx.theta_sha)
    grad_groups, _ = gradient_similarity_groups(ctx, trans, k)

    # method -> list over seeds of groups (fixed groupings repeat the same groups for every seed)
    methods: dict[str, list[list[list[int]]]] = {
        "multitask": [[list(range(n))]] * cc.seeds,
        "random": [random_groups(n, k, cc.seed * 1000 + s) for s in range(cc.seeds)],
        "gradient_similarity": [grad_groups] * cc.seeds,
        "policygradex": [groups_run.index_lists()] * cc.seeds,
    }
    for name, groups in extra.items():
        methods[name] = [groups] * cc.seeds
    if cc.single:
        methods["single"] = [[[i] for i in range(n)]] * cc.seeds
    if ctx.family.planted_groups is not None:
        methods["planted"] = [[list(g) for g in ctx.family.planted_groups]] * cc.seeds
    gt_path = ctx.rd.path / "ground_truth" / "groups_true.json"
    if gt_path.exists():
        methods["ground_truth"] = [load_json(gt_path)["group_indices"]] * cc.seeds
    U = load_npy(ctx.rd.affinity)
    for kk in cc.ablate_k:
        labels = cluster(U, k=kk, solver=ctx.cfg.cluster.solver, exhaustive_check=False).labels
        methods[f"policygradex k={kk}"] = [groups_from_labels(labels)] * cc.seeds
    for d in cc.ablate_d:
        with status(console, f"d ablation: features at d = {d}, surrogate, clustering"):
            methods[f"policygradex d={d}"] = [groups_at_dimension(ctx, trans, d, k)] * cc.seeds

    network = {method: cc.group_network for method in methods}
    for net in cc.network_rows:
        methods[f"all tasks ({net})"] = [[list(range(n))]] * cc.seeds
        network[f"all tasks ({net})"] = net

    steps = cc.steps_per_task or ctx.cfg.ppo.steps_per_task
    ppo = ppo_dict(ctx.cfg.ppo, steps_per_task=steps)
    common = {"config": training_config(ctx.cfg.to_dict()), "ppo": ppo, "init": "scratch",
              "eval_episodes": eval_episodes}
    jobs: dict[tuple[Any, ...], JobSpec] = {}  # groupings that share a group share its training
    keys: dict[str, list[list[tuple[Any, ...]]]] = {}  # method -> per seed -> per group: its job
    for method, per_seed in methods.items():
        net = network[method]
        # another network trains from scratch, so theta_star's choice of task id does not bind it
        changes = {} if net is None else {"name": net, "task_id": with_network(ctx.cfg.network, net).task_id}
        keys[method] = []
        for s, groups in enumerate(per_seed):
            keys[method].append([])
            for g in groups:
                key = (net, s, *sorted(g))
                keys[method][-1].append(key)
                args = {**common, "task_ids": sorted(g), **({"network": changes} if changes else {})}
                jobs[key] = JobSpec("policygradex.analysis.context:train_job", args,
                                    seed=job_seed("compare", cc.seed, s, tuple(sorted(g))),
                                    label=f"seed {s}{f' ({net})' if net else ''}: "
                                          f"{','.join(names[i] for i in sorted(g))}",
                                    paths={"run_dir": str(ctx.rd.path)})
    adopted = adopt_trainings(list(jobs.values()), ctx.rd.path / "jobs",
                              [ctx.rd.path / "jobs", *(Path(r) / "jobs" for r in cc.trainings_from)])
    if adopted:
        console.print(f"compare: {adopted} training{'s' if adopted > 1 else ''} reused from earlier compares")
    results = run_jobs(list(jobs.values()), ctx.rd.path / "jobs", launcher, console,
                       f"compare: {len(jobs)} trainings ({steps} steps per task)")
    by_key = dict(zip(jobs, results))

    metric = ctx.family.headline  # what the table scores: the return, or e.g. Meta-World's success rate
    vector_metrics = [m.name for m in ctx.family.metrics if not m.scalar]
    table: dict[str, Any] = {}
    for method, per_seed in methods.items():
        per_task = np.zeros((cc.seeds, n))
        per_task_vector: dict[str, list[list[Any]]] = {m: [[None] * n for _ in range(cc.seeds)] for m in vector_metrics}
        curves = []
        for s, groups in enumerate(per_seed):
            parts = []
            for g, key in zip(groups, keys[method][s]):
                res = by_key[key]
                for t, r in res["returns"].items():
                    per_task[s, int(t)] = r if metric == "return" else res["metrics"][t][metric]
                    for m in vector_metrics:
                        per_task_vector[m][s][int(t)] = res["metrics"][t][m]
                parts.append((len(g), np.array([row[1] for row in res["curve"]], dtype=float)))
            x = [row[0] for row in by_key[keys[method][s][0]]["curve"]]
            curves.append((x, sum(w * c for w, c in parts) / n))
        overall = per_task.mean(axis=1)
        table[method] = {
            "groups": [[names[i] for i in g] for g in per_seed[0]] if method != "random" else "random per seed",
            "overall_mean": float(overall.mean()), "overall_std": float(overall.std()),
            "per_task_mean": per_task.mean(axis=0).tolist(), "per_task_std": per_task.std(axis=0).tolist(),
            "per_seed": overall.tolist(),
            **{f"per_task_{m}": np.mean(np.asarray(v, dtype=float), axis=0).tolist() for m, v in per_task_vector.items()},
            "curve_x": curves[0][0], "curve": quiet_nanmean(np.stack([c for _, c in curves])).tolist(),
        }
    pgx = table["policygradex"]["overall_mean"]
    pgx_seeds = np.array(table["policygradex"]["per_seed"])
    for method, row in table.items():
        row["policygradex_improvement"] = (pgx - row["overall_mean"]) / abs(row["overall_mean"]) \
            if method != "policygradex" and row["overall_mean"] != 0 else None
        # PolicyGradEx minus this grouping, paired by seed (paired_difference): a group that both groupings hold is
        # the same trained policy in the same seed, so their scores are not independent
        if method == "policygradex":
            row["policygradex_difference"] = row["difference_stderr"] = None
        else:
            diff, se = paired_difference(pgx_seeds, np.array(row["per_seed"]))
            row["policygradex_difference"], row["difference_stderr"] = diff, (se if cc.seeds > 1 else None)
    out_dir = ctx.rd.path / "compare"
    trained = PPOConfig(**ppo)
    record = {"family": ctx.family.name, "task_names": names, "k": k, "steps_per_task": trained.steps_run,
              "steps_per_task_asked": steps, "difference_analysis": DIFFERENCE_ANALYSIS,
              "group_network": cc.group_network or ctx.cfg.network.name, "metric": metric,
              "eval_episodes": eval_episodes,
              "vector_metrics": vector_metrics,
              "config": asdict(cc), "methods": table}
    atomic_write_json(out_dir / "compare.json", record)
    _plot(record, keys["policygradex"], by_key, names, out_dir / "learning_curves.png")
    write_markdown(out_dir / "compare.md", markdown(record))
    return record


def training_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a run's configuration (``RunConfig.to_dict()``) that a training from scratch depends on: the
    family and the network. Its PPO budget, tasks, evaluation and seed are pinned beside it in the job's arguments;
    theta_star, the features, the surrogate and the clustering do not enter it, so a run that differs from another
    only there (another ``--expansion-points``, say) shares its trainings' cache keys."""
    return {"family": config["family"], "network": config["network"]}


def adopt_trainings(specs: list[JobSpec], cache_dir: Path, sources: list[Path]) -> int:
    """Copy into ``cache_dir`` every training from scratch among ``specs`` that it lacks and a job cache in
    ``sources`` holds, and return how many were copied. Time O(files in ``sources``), memory O(their trainings).

    A cached training counts when its arguments, with its configuration cut to :func:`training_config`, and its
    seed are the spec's. That also reads trainings cached before compare pinned only that part (their job spec held
    the run's whole configuration, so they sit under other keys), filling each configuration through
    ``RunConfig.from_dict`` as it ran."""
    from policygradex.common.launcher import cache_path, load_cached
    from policygradex.pipeline.config import RunConfig

    wanted = {spec.key(): spec for spec in specs if spec.args.get("init") == "scratch"
              and load_cached(cache_dir, spec) is None}
    copied = 0
    for source in sources:
        for path in sorted(Path(source).glob("*.json")) if wanted else ():
            try:
                job = load_json(path)
                spec = job["spec"]
                if not spec["fn"].endswith(":train_job") or spec["args"].get("init") != "scratch":
                    continue
                config = RunConfig.from_dict(spec["args"]["config"]).to_dict()
                key = JobSpec(spec["fn"], {**spec["args"], "config": training_config(config)}, spec["seed"]).key()
            except (PolicyGradExError, KeyError, TypeError):
                continue  # not a training of ours: a corrupt or foreign file is never trusted
            if key in wanted:
                ours = wanted.pop(key)
                atomic_write_json(cache_path(cache_dir, ours),
                                  {"spec": {"fn": ours.fn, "args": ours.args, "seed": ours.seed, "paths": ours.paths},
                                   "result": job["result"]})
                copied += 1
                if not wanted:
                    return copied
    return copied


def _plot(record: dict[str, Any], pgx_keys: list[list[tuple[Any, ...]]], by_key: dict, names: list[str],
          path: Path) -> None:
    """Mean training curves of every grouping, and of each PolicyGradEx group (``pgx_keys``: per seed, per group,
    the job key (network, seed, *tasks))."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=110)
    for method, row in record["methods"].items():
        y = np.array(row["curve"], dtype=float)
        ok = ~np.isnan(y)
        axes[0].plot(np.array(row["curve_x"])[ok], y[ok], lw=1.5 if method == "policygradex" else 1, label=method)
    axes[0].set_title("mean training return over all tasks (mean over seeds)", fontsize=9)
    for j, key in enumerate(pgx_keys[0]):
        curves = [np.array([r[1] for r in by_key[seed_keys[j]]["curve"]], dtype=float) for seed_keys in pgx_keys]
        x = [r[0] for r in by_key[key]["curve"]]
        y = quiet_nanmean(np.stack(curves))
        ok = ~np.isnan(y)
        axes[1].plot(np.array(x)[ok], y[ok], label="{" + ", ".join(names[i] for i in key[2:]) + "}")
    axes[1].set_title("PolicyGradEx groups (mean over seeds)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("environment steps per task")
        ax.set_ylabel("episodic return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


TRANSFER_WARNING = 0.5
"""compare warns when the multitask policy reaches less than this fraction of a task's return trained alone."""


def transfer_lines(record: dict[str, Any]) -> list[str]:
    """With the ``single`` row: the multitask policy's return on each task as a share of the task trained alone,
    and a warning for the tasks below TRANSFER_WARNING of it (shares of returns assume returns above 0)."""
    methods = record["methods"]
    if "single" not in methods or "multitask" not in methods:
        return []
    names = record["task_names"]
    alone, multi = np.array(methods["single"]["per_task_mean"]), np.array(methods["multitask"]["per_task_mean"])
    share = np.where(alone > 0, multi / np.where(alone > 0, alone, 1.0), np.nan)
    low = [f"{names[i]} ({share[i]:.0%})" for i in range(len(names)) if share[i] < TRANSFER_WARNING]
    out = ["", f"Negative transfer: the one multitask policy reaches {np.nanmean(share):.0%} of what each task reaches "
           "trained alone (mean over tasks with a positive return alone)."]
    if low:
        out.append(f"**Warning:** on {', '.join(low)} it reaches less than {TRANSFER_WARNING:.0%}: one policy for all "
                   "tasks is far below what the tasks reach alone, so grouping can pay off; it also means theta_star, "
                   "trained the same way, is a compromise between tasks rather than a good policy for each.")
    return out


DIFFERENCE_ANALYSIS = ("paired by seed: the standard error of the mean of the per-seed differences (groupings that "
                       "share a group share its trained policy within a seed)")


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the per-seed differences a_s - b_s (seed s of both groupings). Groupings that
    share a group share its training job within a seed, so their scores are correlated and a two-sample standard
    error would be wrong; identical groupings give 0 +- 0. nan SE below two seeds."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se


def markdown(record: dict[str, Any]) -> str:
    names, metric = record["task_names"], record.get("metric", "return")
    seeds = record["config"]["seeds"]
    lines = [f"# Downstream comparison: {record['family']}", "",
             f"One policy per group, trained from scratch with PPO and the `{record.get('group_network', 'mlp')}` "
             f"network, {record['steps_per_task']:,} environment steps per task for every grouping (same total budget"
             + (f"; {record['steps_per_task_asked']:,} asked, rounded down to whole rollouts"
                if record.get("steps_per_task_asked", record["steps_per_task"]) != record["steps_per_task"] else "")
             + ")"
             + ("; `all tasks (NAME)`: one NAME network on all tasks" if any(m.startswith("all tasks (")
                                                                         for m in record["methods"]) else "")
             + f". k = {record['k']}; {seeds_phrase(seeds)} of the mean {metric} over all tasks, from "
             f"{record.get('eval_episodes', 10)} evaluation episodes per task.",
             "",
             f"PolicyGradEx - it: the difference of the mean {metric}s ± its standard error, "
             + record.get("difference_analysis", "seeds taken as independent (a record written before the paired "
                          "analysis)")
             + "; a difference within 2 standard errors is not resolved by these seeds.", "",
             f"| grouping | mean {metric} | PolicyGradEx vs it | PolicyGradEx - it | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    digits = 1 if metric == "return" else 3  # returns, or rates in [0, 1]
    for method, row in record["methods"].items():
        imp = row["policygradex_improvement"]
        imp_s = "" if imp is None else f"{100 * imp:+.1f}%"
        diff, se = row.get("policygradex_difference"), row.get("difference_stderr")
        diff_s = "" if diff is None else f"{diff:+.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}")
        per_task = " | ".join(f"{x:.{digits}f}" for x in row["per_task_mean"])
        overall = mean_spread(row["overall_mean"], row["overall_std"], seeds, digits)
        lines.append(f"| {method} | {overall} | {imp_s} | {diff_s} | {per_task} |")
    for m in record.get("vector_metrics", []):  # e.g. an MO family: each objective's return, beside the scalar one
        lines += ["", f"Mean {m} per task (one entry per objective, mean over seeds):", "",
                  "| grouping | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for method, row in record["methods"].items():
            cells = ["(" + ", ".join(f"{x:.1f}" for x in v) + ")" for v in row[f"per_task_{m}"]]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += transfer_lines(record)
    lines += ["", "Groups:", ""]
    for method, row in record["methods"].items():
        g = row["groups"]
        lines.append(f"- {method}: " + (g if isinstance(g, str) else "; ".join("{" + ", ".join(x) + "}" for x in g)))
    lines += ["", "![learning curves](learning_curves.png)"]
    return "\n".join(lines)
