"""``policygradex train RUN_DIR``: one policy per group, saved so that it loads and acts without the run directory.

Each group of the run's ``groups.json`` (or of ``--groups FILE``) gets its own policy, trained from scratch with PPO
(the run's settings, a step budget per task) and the network asked for (``mlp``, ``multihead``, ``softmod``,
``care``, ``paco``, or the run's), once per seed. A training is one job of the launcher (the local pool, Ray, or
one after the other): a finished one is cached in ``OUT/jobs`` and not trained again, and an interrupted one resumes
from its checkpoint, bit for bit. Every policy lands in ``OUT/group-G/seed-S/`` (``OUT``: ``RUN_DIR/policies`` by
default):

- ``policy.pt``: the weights and what rebuilds the network (:mod:`policygradex.rl.saved_policy`; load it with
  ``policygradex.load_policy``);
- ``card.md`` / ``card.json``: the tasks, the network, the budget that ran, the seed, the versions and commit, and
  each task's return (mean +- std over fresh evaluation episodes, actions as ``predict`` gives them) with the
  family's headline metric;
- ``curve.csv`` / ``curve.png``: the learning curve (each task's last 100 episodes).

``OUT/policies.json`` indexes them and ``OUT/train.md`` tables them. Time: one PPO training per group and seed, each
``len(group) x steps_per_task`` environment steps, so the whole is n x steps_per_task x seeds steps whatever k is.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from policygradex.analysis.compare import load_partition
from policygradex.analysis.context import job_seed, load_context, write_markdown
from policygradex.analysis.scores import mean_spread, per_task_lines
from policygradex.common.artifacts import atomic_write_json, load_json
from policygradex.common.errors import PolicyGradExError
from policygradex.common.launcher import JobSpec, LauncherConfig, cache_path, run_jobs
from policygradex.common.plots import plot_curve
from policygradex.common.provenance import provenance
from policygradex.envs.registry import load_family
from policygradex.envs.vector import family_spaces
from policygradex.nets.base import check_network_name, with_network
from policygradex.nets.config import NetworkConfig
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.group_record import Groups
from policygradex.pipeline.stages import return_info, write_curve
from policygradex.rl.config import PPOConfig
from policygradex.rl.evaluate import evaluate_episodes
from policygradex.rl.ppo import train_ppo
from policygradex.rl.saved_policy import save_policy


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``policygradex train``."""

    groups_file: str | None = None
    """A JSON file of the groups to train (a ``groups.json`` or a list of lists of task indices); None: the run's."""
    network: str | None = None
    """The policies' network (``mlp``, ``multihead``, ``softmod``, ``care``, ``paco`` or ``package.module:function``;
    the ones that route by task read the task id). None: the run's network, with the run's task-id setting."""
    steps_per_task: int | None = None
    """Environment steps per task, inside its group's training (None: the run's meta-training budget)."""
    seeds: int = 1
    """Policies per group, each from its own seed."""
    eval_episodes: int | None = None
    """Fresh episodes per task behind each card's returns (None: the family's, 10 for most)."""
    deterministic: bool = True
    """Score the cards with the policy's most likely action (what ``predict`` does by default) rather than samples."""
    out: str | None = None
    """Where the policies go (None: ``RUN_DIR/policies``)."""
    seed: int = 0
    """Base seed: seed s of group g trains with a seed derived from (seed, s, the group's tasks)."""


def policy_dir(out: Path, group: int, seed: int) -> Path:
    """Where the policy of group ``group`` (0-based) and seed index ``seed`` is written."""
    return out / f"group-{group + 1}" / f"seed-{seed}"


def train_policies(run_dir: Path, tc: TrainConfig, launcher: LauncherConfig, console: Console) -> dict[str, Any]:
    """Train and save one policy per group and seed; returns the index written to ``OUT/policies.json``."""
    ctx = load_context(run_dir, need=() if tc.groups_file else ("groups",))
    n, names, cfg = ctx.family.n, ctx.names, ctx.cfg
    if tc.seeds < 1:
        raise PolicyGradExError(f"--seeds must be >= 1, got {tc.seeds}")
    if tc.eval_episodes is not None and tc.eval_episodes < 1:
        raise PolicyGradExError(f"--eval-episodes must be >= 1, got {tc.eval_episodes}")
    if tc.steps_per_task is not None and tc.steps_per_task < 1:
        raise PolicyGradExError(f"--steps-per-task must be >= 1, got {tc.steps_per_task}")
    if tc.network is not None:
        check_network_name(tc.network)
    groups = (load_partition(Path(tc.groups_file), n) if tc.groups_file
              else Groups.load(ctx.rd.groups, n).index_lists())
    network = cfg.network if tc.network is None else with_network(cfg.network, tc.network)
    steps = tc.steps_per_task or cfg.ppo.steps_per_task
    ppo = asdict(replace(cfg.ppo, steps_per_task=steps))  # checkpoints kept: a long training resumes mid-way
    eval_episodes = ctx.family.eval_episodes if tc.eval_episodes is None else tc.eval_episodes
    out = Path(tc.out) if tc.out else ctx.rd.path / "policies"
    common = {"config": cfg.to_dict(), "ppo": ppo, "network": network_dict(network), "eval_episodes": eval_episodes,
              "deterministic": tc.deterministic}
    specs, where = [], []
    for g, group in enumerate(groups):
        for s in range(tc.seeds):
            spec = JobSpec("policygradex.analysis.train:train_group_job", {**common, "task_ids": sorted(group)},
                           seed=job_seed("train", tc.seed, s, tuple(sorted(group))),
                           label=f"group {g + 1} seed {s}: {', '.join(names[i] for i in sorted(group))}")
            directory = policy_dir(out, g, s)
            spec = replace(spec, paths={"out": str(directory), "job_key": spec.key(), "group": str(g + 1),
                                        "seed_index": str(s), "run_dir": str(ctx.rd.path.resolve())})
            forget_unless_saved(spec, directory, out / "jobs")
            specs.append(spec)
            where.append((g, s, directory))
    budget = PPOConfig(**ppo)
    console.print(f"training {len(groups)} group polic{'y' if len(groups) == 1 else 'ies'} x {tc.seeds} "
                  f"seed{'s' if tc.seeds > 1 else ''} with {network.name}, {budget.budget_text()} -> {out}")
    results = run_jobs(specs, out / "jobs", launcher, console, f"train: {len(specs)} policies")
    record = {
        "family": ctx.family.name, "family_spec": cfg.family, "run_dir": str(ctx.rd.path), "out": str(out),
        "task_names": names,
        "network": network.name, "steps_per_task": budget.steps_run, "steps_per_task_asked": steps,
        "headline": ctx.family.headline, "eval_episodes": eval_episodes, "deterministic": tc.deterministic,
        "config": asdict(tc),
        "policies": [{"group": g + 1, "seed_index": s, "seed": spec.seed, "path": str(directory / "policy.pt"),
                      "tasks": [names[i] for i in r["task_ids"]], "task_ids": r["task_ids"],
                      "per_task": r["per_task"], "headline_mean": r["headline_mean"],
                      "train_seconds": r["train_seconds"]}
                     for (g, s, directory), spec, r in zip(where, specs, results)],
    }
    atomic_write_json(out / "policies.json", record)
    write_markdown(out / "train.md", markdown(record))
    return record


def network_dict(network: NetworkConfig) -> dict[str, Any]:
    return {**asdict(network), "hidden_sizes": list(network.hidden_sizes)}


def forget_unless_saved(spec: JobSpec, directory: Path, cache_dir: Path) -> None:
    """Drop the cached result of ``spec`` unless its policy is on disk, written by this very job: a policy deleted,
    or overwritten by a training with other options, is trained again rather than reported from the cache."""
    card = directory / "card.json"
    saved = (directory / "policy.pt").exists() and card.exists()
    if saved:
        try:
            saved = load_json(card).get("job_key") == spec.key()
        except PolicyGradExError:
            saved = False
    if not saved:
        cache_path(cache_dir, spec).unlink(missing_ok=True)


PROGRESS_SECONDS = 10.0
"""A training's progress line comes at a tenth of its iterations, no sooner than this after the last one."""


def train_group_job(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train one group's policy from scratch, evaluate it, and write its directory (policy, card, curve)."""
    cfg = RunConfig.from_dict(args["config"])
    family = load_family(cfg.family)
    net = NetworkConfig(**{**args["network"], "hidden_sizes": tuple(args["network"]["hidden_sizes"])})
    ppo = PPOConfig(**args["ppo"])
    task_ids = [int(t) for t in args["task_ids"]]
    names = [family.tasks[t].name for t in task_ids]
    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    label = f"train group {args['group']} (seed {args['seed_index']})"
    every = max(1, ppo.iterations // 10)
    last = [time.perf_counter()]

    def on_iteration(it: int, total: int, row: dict[str, Any]) -> None:
        # plain lines from any worker process, progress per group: at a tenth of the training at most every
        # PROGRESS_SECONDS, and at its end
        if it == total or (it % every == 0 and time.perf_counter() - last[0] >= PROGRESS_SECONDS):
            last[0] = time.perf_counter()
            print(f"{label}: {it / total:.0%} ({row['env_steps_per_task']:,} of {ppo.steps_run:,} steps per task), "
                  f"{return_info(row)}", file=sys.stderr, flush=True)

    checkpoint = out / "checkpoint.pt"
    result = train_ppo(family, task_ids, net, ppo, seed, checkpoint_path=checkpoint, on_iteration=on_iteration)
    episodes, deterministic = int(args["eval_episodes"]), bool(args["deterministic"])
    evaluation = evaluate_episodes(family, task_ids, result.model, episodes, seed + 1, bool(net.task_id),
                                   deterministic)
    headline = family.headline
    per_task = {family.tasks[t].name: evaluation[t] for t in task_ids}
    card = {
        "job_key": args["job_key"], "family": cfg.family, "family_name": family.name, "group": int(args["group"]),
        "task_ids": task_ids, "tasks": names, "network": args["network"], "seed": seed,
        "seed_index": int(args["seed_index"]), "steps_per_task": ppo.steps_run,
        "steps_per_task_asked": ppo.steps_per_task, "budget": ppo.budget_text(), "ppo": args["ppo"],
        "train_seconds": result.seconds, "run_dir": args["run_dir"], **provenance(),
        "evaluation": {"episodes": episodes, "deterministic": deterministic, "headline": headline,
                       "per_task": per_task},
    }
    obs_dim, action_space = family_spaces(family, False)
    write_curve(out / "curve.csv", result.curve)
    plot_curve(result.curve, names, out / "curve.png", title=f"group {args['group']}: {net.name}, seed {seed}")
    atomic_write_json(out / "card.json", card)
    write_markdown(out / "card.md", card_markdown(card))
    # the policy last: a policy on disk has its card (a job stopped before this line trains again)
    save_policy(out / "policy.pt", result.model, net, cfg.family, family, task_ids, obs_dim, action_space, card)
    checkpoint.unlink(missing_ok=True)
    headline_values = [m.get(headline, m["return"]) for m in per_task.values()]
    return {"task_ids": task_ids, "per_task": per_task, "headline_mean": float(np.mean(headline_values)),
            "train_seconds": result.seconds}


def card_markdown(card: dict[str, Any]) -> str:
    ev = card["evaluation"]
    headline = ev["headline"]
    net = card["network"]
    lines = [f"# Policy card: group {card['group']} of {card['family_name']}", "",
             f"- tasks: {', '.join(card['tasks'])} (family indices {card['task_ids']})",
             f"- family: `{card['family']}`",
             f"- network: `{net['name']}`, hidden {net['hidden_sizes']}, {net['activation']}, task id "
             f"{'on' if net['task_id'] else 'off'}",
             f"- budget: {card['budget']}; PPO from scratch, learning rate {card['ppo']['learning_rate']:g}, "
             f"gamma {card['ppo']['gamma']:g}",
             f"- seed: {card['seed']} (seed index {card['seed_index']}); trained in {card['train_seconds']:.0f} s",
             f"- policygradex {card['policygradex']}, commit {card['commit'] or 'unknown (not a git checkout)'}, "
             f"torch {card['torch']}, gymnasium {card['gymnasium']}",
             f"- made by `policygradex train {card['run_dir']}`", "",
             f"Evaluation: {ev['episodes']} fresh episodes per task, "
             f"{'the most likely action' if ev['deterministic'] else 'actions sampled from the policy'}; "
             "return mean ± std over the episodes.", "",
             *per_task_lines(ev["per_task"], headline)]
    lines += ["", "Load it: `policygradex.load_policy(\"policy.pt\").predict(obs)`; evaluate it: "
              "`policygradex evaluate policy.pt`.", "", "![learning curve](curve.png)"]
    return "\n".join(lines)


def markdown(record: dict[str, Any]) -> str:
    headline = record["headline"]
    seeds = record["config"]["seeds"]
    lines = [f"# Trained policies: {record['family']}", "",
             f"One `{record['network']}` policy per group and seed, trained from scratch, "
             f"{record['steps_per_task']:,} environment steps per task"
             + (f" ({record['steps_per_task_asked']:,} asked, rounded down to whole rollouts)"
                if record["steps_per_task_asked"] != record["steps_per_task"] else "")
             + f"; {record['eval_episodes']} evaluation episodes per task, "
             + ("the most likely action" if record["deterministic"] else "actions sampled") + ".", "",
             f"| group | tasks | mean {headline} over its tasks | policy |", "|---|---|---|---|"]
    by_group: dict[int, list[dict[str, Any]]] = {}
    for p in record["policies"]:
        by_group.setdefault(p["group"], []).append(p)
    for g, ps in by_group.items():
        values = np.array([p["headline_mean"] for p in ps])
        digits = 1 if headline == "return" else 3
        cell = mean_spread(float(values.mean()), float(values.std()), len(ps), digits)
        paths = ", ".join(f"`{Path(p['path']).parent.relative_to(Path(p['path']).parents[2])}`" for p in ps)
        lines.append(f"| {g} | {', '.join(ps[0]['tasks'])} | {cell} | {paths} |")
    lines += ["", "Per task (return mean ± std over the evaluation episodes" + (", seed 0" if seeds > 1 else "")
              + "):", "", "| task | group | return |", "|---|---|---|"]
    for p in record["policies"]:
        if p["seed_index"] == 0:
            for name, m in p["per_task"].items():
                lines.append(f"| {name} | {p['group']} | {m['return']:.1f} ± {m['return_std']:.1f} |")
    return "\n".join(lines)
