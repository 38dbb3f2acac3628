"""What every evaluation command shares: a finished run loaded back, theta_star's transitions, job seeds and jobs."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from policygradex.common.artifacts import atomic_torch_save, atomic_write_text, file_sha, load_json, load_npz, load_torch
from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import TaskFamily
from policygradex.envs.registry import load_family
from policygradex.nets.base import flat_params
from policygradex.pipeline.baseline_choice import effective_baseline
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.features import fit_rows, normalize_advantages, run_transitions
from policygradex.pipeline.rundir import RunDir
from policygradex.pipeline.stages import make_model, recorded_points
from policygradex.rl.config import PPOConfig
from policygradex.rl.evaluate import evaluate_episodes
from policygradex.rl.ppo import train_ppo


# ----------------------------------------------------------------------------------------------- the run
@dataclass
class RunContext:
    """A finished run loaded for evaluation."""

    rd: RunDir
    cfg: RunConfig
    family: TaskFamily
    model: nn.Module
    """The network at theta_star."""
    theta_sha: str
    """sha256 of theta_star.pt: part of every job spec, so retraining theta_star invalidates cached jobs."""
    fraction: float = 1.0
    """Where in meta-training this policy is (:func:`point_contexts`): 1 for theta_star, F for an earlier expansion
    point, whose ``rd``, ``cfg``, ``model`` and ``theta_sha`` are then that point's; for a group point, the fraction
    of the budget its fine-tuning ran (``--group-points F``)."""
    group: int | None = None
    """For group J's point (``--group-points``, :mod:`~policygradex.pipeline.group_points`): J; else None."""

    @property
    def names(self) -> list[str]:
        return self.family.task_names

    @property
    def point_name(self) -> float | str:
        """How records name this point, as the pipeline's affinity_stats.json does: 1.0 for theta_star, F for an
        earlier expansion point, ``groupJ`` for group J's point."""
        return f"group{self.group}" if self.group is not None else float(self.fraction)


def load_context(run_dir: Path, need: tuple[str, ...] = ()) -> RunContext:
    """Load a run for evaluation; ``need`` names further artifacts (``groups``, ``subsets``, ``affinity``)."""
    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        raise PolicyGradExError(f"{rd.path} is not a directory; give the --out of a `policygradex run`")
    paths = {"config": rd.config, "theta_star": rd.theta_star, "groups": rd.groups, "subsets": rd.subsets,
             "affinity": rd.affinity}
    for key in ("config", "theta_star", *need):
        if (key == "subsets" and not paths[key].exists() and rd.surrogate_record.exists()
                and load_json(rd.surrogate_record).get("method") == "closed_form"):
            raise PolicyGradExError(f"{rd.path} used the closed-form surrogate, which samples no subsets; this needs "
                                    "a run with --surrogate exact or newton")
        if not paths[key].exists():
            raise PolicyGradExError(f"{paths[key]} is missing: finish the run first (`policygradex run ... --out {rd.path}`)")
    record = load_json(rd.config)
    if not isinstance(record, dict) or "config" not in record:
        raise PolicyGradExError(f"{rd.config} is not a policygradex config; rerun into a fresh directory")
    cfg = with_collected_transitions(RunConfig.from_dict(record["config"]), rd)
    family = load_family(cfg.family)
    return RunContext(rd, cfg, family, _load_policy(cfg, family, rd.theta_star, rd.config), file_sha(rd.theta_star))


def _load_policy(cfg: RunConfig, family: TaskFamily, path: Path, config: Path) -> nn.Module:
    """The policy saved at ``path`` in a network of the run's (``config``: the run's config.json, named in the
    error when the policy is not that network's)."""
    model = make_model(cfg, family)
    try:
        model.load_state_dict(load_torch(path)["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise PolicyGradExError(f"{path} does not match {config} ({exc}); rerun the pipeline") from None
    return model


def point_contexts(ctx: RunContext, need: tuple[str, ...] = ()) -> list[RunContext]:
    """Every expansion point of the run as a context of its own, in the order in which the pipeline combines their
    U's: theta_star (``ctx``) first, then the earlier points (``--expansion-points``) in the order of their
    fractions, then the group points (``--group-points``) in group order (``[ctx]`` alone for a run with neither).
    A point's context has its run directory (``points/F`` or ``points/groupJ``: its policy ``theta_star.pt``, whose
    sha256 pins its jobs, and its features, surrogate and affinity) and the run's configuration with N and the
    baseline as *that point's* feature stage collected them (:func:`with_collected_transitions`), which is what the
    pipeline ran there. ``need`` names the artifacts every point must hold (``subsets``, ``affinity``). The group
    points are those the run's affinity was combined from (affinity_stats.json names them); a run whose group points
    and affinity disagree (interrupted between them) is refused."""
    earlier = ctx.cfg.earlier_points
    fraction = ctx.cfg.features.group_points
    groups = ctx.rd.group_point_tasks() if fraction is not None else []
    if fraction is not None:
        recorded = recorded_points(ctx.rd)
        if not groups or (recorded is not None and sum(isinstance(p, str) for p in recorded) != len(groups)):
            raise PolicyGradExError(f"{ctx.rd.path}'s group points are not those its affinity was combined from: "
                                    f"finish the run first (`policygradex run ... --out {ctx.rd.path}`)")
    if not earlier and not groups:
        return [ctx]
    base = RunConfig.from_dict(load_json(ctx.rd.config)["config"])
    places: list[tuple[RunDir, float, int | None, str]] = [
        (ctx.rd.point(f), f, None, f"expansion point {f:g}") for f in earlier]
    if fraction is not None:
        places += [(ctx.rd.group_point(j), fraction, j, f"group {j}'s point") for j in range(len(groups))]
    out = [ctx]
    for rd, f, group, label in places:
        for path in [rd.theta_star, *(getattr(rd, key) for key in need)]:
            if not path.exists():
                raise PolicyGradExError(f"{path} ({label}) is missing: finish the run first "
                                        f"(`policygradex run ... --out {ctx.rd.path}`)")
        cfg = with_collected_transitions(base, rd)
        model = _load_policy(cfg, ctx.family, rd.theta_star, ctx.rd.config)
        out.append(RunContext(rd, cfg, ctx.family, model, file_sha(rd.theta_star), f, group))
    return out


def own_affinity(ctx: RunContext) -> Path:
    """theta_star's own U: ``affinity_theta_star.npy`` in a run with earlier expansion points (whose affinity.npy
    holds the points' combined U, the one clustered), else affinity.npy; a clear error when it is missing."""
    several = ctx.cfg.earlier_points or ctx.cfg.features.group_points is not None
    path = ctx.rd.affinity_theta_star if several else ctx.rd.affinity
    if not path.exists():
        raise PolicyGradExError(f"{path} is missing: finish the run first (`policygradex run ... --out {ctx.rd.path}`)")
    return path


def with_collected_transitions(cfg: RunConfig, rd: RunDir) -> RunConfig:
    """``cfg`` with N and the baseline as the feature stage collected them: ``--target-reliability`` may have grown
    N past ``transitions_per_task``, and ``--baseline auto`` kept one baseline (features/meta.json says both); what
    analyses recollect must match the features."""
    meta = load_json(rd.features_meta) if rd.features_meta.exists() else {}
    N = meta.get("N")
    if isinstance(N, int) and N != cfg.features.transitions_per_task:
        cfg = replace(cfg, features=replace(cfg.features, transitions_per_task=N))
    baseline = effective_baseline(cfg.features.baseline, meta)
    if baseline != cfg.features.baseline and baseline != "auto":
        cfg = replace(cfg, features=replace(cfg.features, baseline=baseline))
    return cfg


def job_seed(*parts: Any) -> int:
    """A stable seed from a job's identity (method, seed index, tasks), never from its position in a list."""
    return zlib.crc32(repr(parts).encode()) % 2**31


# ----------------------------------------------------------------------------------------------- transitions
def transitions_path(rd: RunDir) -> Path:
    return rd.path / "eval" / "transitions.pt"


def ensure_transitions(ctx: RunContext, console: Console | None = None) -> Path:
    """Collect (once) theta_star's transitions with the feature stage's seed and save them for the jobs.

    The advantages are checked against those stored with the features: they must be the same transitions."""
    path = transitions_path(ctx.rd)
    if path.exists():
        return path
    cfg = ctx.cfg
    if console is not None:
        console.print("collecting theta_star's evaluation transitions (the feature stage's seed)")
    trans = run_transitions(cfg, ctx.family, ctx.model)
    advantages = normalize_advantages([t.advantages for t in trans], cfg.features.advantage_normalization)
    feature_file = ctx.rd.task_features(0)
    if feature_file.exists():
        stored = load_npz(feature_file).get("advantages")
        if stored is not None and stored.shape == trans[0].advantages.shape:
            if not np.allclose(stored, trans[0].advantages, rtol=1e-3, atol=1e-3) and console is not None:
                console.print("[yellow]note[/yellow]: recollected transitions differ from the feature stage's "
                              "(nondeterministic environment); f(S) uses the new ones")
    n_fit = fit_rows(cfg.features.transitions_per_task, cfg.features.holdout_fraction)
    with torch.no_grad():
        tasks = [{"obs": t.obs, "actions": t.actions, "logp_star": ctx.model(t.obs, t.actions),
                  "advantages": torch.as_tensor(a, dtype=torch.float32)} for t, a in zip(trans, advantages)]
    atomic_torch_save({"tasks": tasks, "n_fit": n_fit, "theta_sha": ctx.theta_sha}, path)
    return path


def load_transitions(path: Path, theta_sha: str) -> dict[str, Any]:
    blob = load_torch(path)
    if blob.get("theta_sha") != theta_sha:
        raise PolicyGradExError(f"{path} was collected with another theta_star; delete it to recollect")
    return blob


def subset_objectives(model: nn.Module, trans: dict[str, Any], task_ids: list[int], clip_coef: float) -> dict[str, float]:
    """The real counterparts of f^(S) on the held-out transitions of S's tasks, for a policy ``model``.

    ``ppo``: the clipped PPO objective mean(min(r A, clip(r, 1 -+ eps) A)) with r = pi/pi_theta_star (the negative
    PPO loss); ``logistic``: -mean(|A| log(1 + exp(-sign(A) log r))), the surrogate's loss at the real policy.
    A run that holds nothing out (``--holdout-fraction 0``, the paper's setting) is measured on all transitions."""
    n_fit = trans["n_fit"]
    if n_fit >= min(len(trans["tasks"][i]["advantages"]) for i in task_ids):
        n_fit = 0
    ppo, logistic, count = 0.0, 0.0, 0
    with torch.no_grad():
        for i in task_ids:
            t = trans["tasks"][i]
            obs, act, adv = t["obs"][n_fit:], t["actions"][n_fit:], t["advantages"][n_fit:]
            logratio = model(obs, act) - t["logp_star"][n_fit:]
            ratio = logratio.exp()
            ppo += torch.min(ratio * adv, ratio.clamp(1 - clip_coef, 1 + clip_coef) * adv).sum().item()
            logistic += -(adv.abs() * torch.nn.functional.softplus(-torch.sign(adv) * logratio)).sum().item()
            count += len(adv)
    return {"ppo": ppo / count, "logistic": logistic / count}


# ----------------------------------------------------------------------------------------------- jobs
def job_context(args: dict[str, Any]) -> tuple[RunConfig, TaskFamily, nn.Module]:
    cfg = RunConfig.from_dict(args["config"])
    family = load_family(cfg.family)
    model = make_model(cfg, family)
    if args.get("init", "theta_star") == "theta_star":
        blob = load_torch(RunDir(args["run_dir"]).theta_star)
        model.load_state_dict(blob["state_dict"])
    return cfg, family, model


def train_job(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train one policy on ``args["task_ids"]`` (fine-tune theta_star, or from scratch with init="scratch") with
    PPO config ``args["ppo"]`` and the run's network, or the NetworkConfig changes in ``args["network"]`` (from
    scratch only); then measure per-task returns (and the real f(S) objectives if asked)."""
    cfg, family, model = job_context(args)
    ppo = PPOConfig(**args["ppo"])
    task_ids = [int(t) for t in args["task_ids"]]
    from_theta_star = args.get("init", "theta_star") == "theta_star"
    # another network than the run's (compare's --group-network and network rows) trains from scratch
    net = replace(cfg.network, **args["network"]) if args.get("network") else cfg.network
    if net != cfg.network and from_theta_star:
        raise PolicyGradExError("only the run's own network can be fine-tuned from theta_star")
    names = model.policy_parameter_names()
    theta0 = flat_params(model, names)
    result = train_ppo(family, task_ids, net, ppo, seed, init_state=model.state_dict() if from_theta_star else None)
    evaluation = evaluate_episodes(family, task_ids, result.model, int(args.get("eval_episodes", 10)), seed + 1,
                                   net.task_id)
    returns = {t: m["return"] for t, m in evaluation.items()}
    out: dict[str, Any] = {
        "task_ids": task_ids,
        "returns": {str(t): r for t, r in returns.items()},
        "mean_return": float(np.mean(list(returns.values()))),
        "train_seconds": result.seconds,
        # ||theta - theta_star|| / ||theta_star|| (fine-tuning only; a fresh initialisation has no reference)
        "relative_distance": float((flat_params(result.model, names) - theta0).norm() / theta0.norm())
        if from_theta_star else None,
        "curve": [[row["env_steps_per_task"], row["mean_return"]] for row in result.curve],
    }
    if family.metrics:  # e.g. success per task, an MO family's vector return per task
        out["metrics"] = {str(t): m for t, m in evaluation.items()}
    if args.get("objectives"):
        trans = load_transitions(Path(args["transitions"]), args["theta_sha"])
        out["objectives"] = subset_objectives(result.model, trans, task_ids, ppo.clip_coef)
    return out


def write_markdown(path: Path, text: str) -> None:
    atomic_write_text(path, text.rstrip() + "\n")


def ppo_dict(ppo: PPOConfig, **changes: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(replace(ppo, checkpoint_every=0, **changes))
