"""Shared pieces of the evaluation commands (check-linear, ground-truth, compare) and their job functions.

Everything here starts from a finished run directory: theta_star, its configuration and the family. The jobs are
plain functions ``(args: dict, seed: int) -> dict`` run by :mod:`policygradex.launcher`; they read theta_star and
the evaluation transitions from the run directory, so their specs stay small and picklable.

Evaluation transitions: ``eval/transitions.pt`` holds, per task, the N transitions theta_star generates with the
feature stage's seed (obs, actions, log pi_theta_star(a|s), GAE advantages normalised as the features were, and the
split index of the held-out part). They are what the real f(S) and the first-order check are measured on.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from .artifacts import atomic_torch_save, atomic_write_text, load_json, load_npz, load_torch
from .config import PPOConfig, RunConfig
from .errors import PolicyGradExError
from .families import MultiTaskVectorEnv, TaskFamily, load_family
from .features import collect_transitions, fit_rows, normalize_advantages
from .networks import flat_params, make_network
from .pipeline import RunDir
from .ppo import EpisodeTracker, _env_action, train_ppo


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

    @property
    def names(self) -> list[str]:
        return self.family.task_names


def file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_model(cfg: RunConfig, family: TaskFamily) -> nn.Module:
    probe = MultiTaskVectorEnv(family, [0], 1, 0, cfg.network.task_id)
    model = make_network(probe.obs_dim, probe.single_action_space, cfg.network)
    probe.close()
    return model


def load_context(run_dir: Path, need: tuple[str, ...] = ()) -> RunContext:
    """Load a run for evaluation; ``need`` names further artifacts (``groups``, ``subsets``, ``affinity``)."""
    rd = RunDir(run_dir)
    if not rd.path.is_dir():
        raise PolicyGradExError(f"{rd.path} is not a directory; give the --out of a `policygradex run`")
    paths = {"config": rd.config, "theta_star": rd.theta_star, "groups": rd.groups, "subsets": rd.subsets,
             "affinity": rd.affinity}
    for key in ("config", "theta_star", *need):
        if not paths[key].exists():
            raise PolicyGradExError(f"{paths[key]} is missing: finish the run first (`policygradex run ... --out {rd.path}`)")
    record = load_json(rd.config)
    if not isinstance(record, dict) or "config" not in record:
        raise PolicyGradExError(f"{rd.config} is not a policygradex config; rerun into a fresh directory")
    cfg = RunConfig.from_dict(record["config"])
    family = load_family(cfg.family)
    model = make_model(cfg, family)
    try:
        model.load_state_dict(load_torch(rd.theta_star)["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise PolicyGradExError(f"{rd.theta_star} does not match {rd.config} ({exc}); rerun the pipeline") from None
    return RunContext(rd, cfg, family, model, file_sha(rd.theta_star))


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
    trans = collect_transitions(ctx.family, ctx.model, cfg.features, cfg.ppo, cfg.feature_seed, cfg.network.task_id)
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


# ----------------------------------------------------------------------------------------------- measuring a policy
@torch.no_grad()
def evaluate_returns(family: TaskFamily, task_ids: list[int], model: nn.Module, episodes: int, seed: int,
                     task_id: bool = True) -> dict[int, float]:
    """Mean undiscounted return of ``episodes`` fresh episodes per task (actions sampled from the policy)."""
    env = MultiTaskVectorEnv(family, task_ids, episodes, seed, task_id)
    tracker = EpisodeTracker(env.env_task)
    obs = env.reset()
    first: dict[int, float] = {}
    while len(first) < env.num_envs:
        action, _, _, _ = model.get_action_and_value(torch.as_tensor(obs))
        obs, rewards, terminated, truncated, reset_mask = env.step(_env_action(action, env.single_action_space))
        done = terminated | truncated
        before = len(tracker.finished)
        tracker.update(rewards, done, ~reset_mask)
        for j, (task, ret, _) in zip(np.flatnonzero(done), tracker.finished[before:]):
            first.setdefault(int(j), ret)
    env.close()
    out: dict[int, list[float]] = {t: [] for t in task_ids}
    for j, ret in first.items():
        out[int(env.env_task[j])].append(ret)
    return {t: float(np.mean(v)) for t, v in out.items()}


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
    PPO config ``args["ppo"]``; then measure per-task returns (and the real f(S) objectives if asked)."""
    cfg, family, model = job_context(args)
    ppo = PPOConfig(**args["ppo"])
    task_ids = [int(t) for t in args["task_ids"]]
    from_theta_star = args.get("init", "theta_star") == "theta_star"
    names = model.policy_parameter_names()
    theta0 = flat_params(model, names)
    result = train_ppo(family, task_ids, cfg.network, ppo, seed, init_state=model.state_dict() if from_theta_star else None)
    returns = evaluate_returns(family, task_ids, result.model, int(args.get("eval_episodes", 10)), seed + 1,
                               cfg.network.task_id)
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
    if args.get("objectives"):
        trans = load_transitions(Path(args["transitions"]), args["theta_sha"])
        out["objectives"] = subset_objectives(result.model, trans, task_ids, ppo.clip_coef)
    return out


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


def write_markdown(path: Path, text: str) -> None:
    atomic_write_text(path, text.rstrip() + "\n")


def ppo_dict(ppo: PPOConfig, **changes: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(replace(ppo, checkpoint_every=0, **changes))
