"""Stage 2: gradient features at theta_star (paper Algorithm 1, lines 3-10).

With theta_star frozen, collect N transitions per task, compute GAE advantages, and for every transition
g_t = grad_theta log pi_theta(a_t | s_t) at theta_star (``torch.func``: vmap of grad over the batch), projected to
g~_t = P^T g_t with P a seeded p x d matrix of N(0, 1/d) entries that is generated block by block and never held
whole. Per task we store features (N x d float32), labels sign(A), weights |A|, and the raw advantages; with the
per-task baseline also the labels and weights of advantages whose baseline is fitted apart on each half of the
fitting rows (:func:`split_advantages`), which only the split-half reliability of the gradient signal reads.

As in TRAK, the gradient computer (:mod:`.gradients`) and the projector (:mod:`.projection`) are separate. This
module collects the transitions and turns them into the surrogate's data in one place (:func:`feature_arrays`,
:func:`build_feature_set`), for the run's feature stage and for every command that resamples or re-projects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import TaskFamily
from policygradex.envs.vector import MultiTaskVectorEnv
from policygradex.nets.base import flat_params
from policygradex.pipeline.config import FeatureConfig, RunConfig
from policygradex.pipeline.gradients import projected_gradients
from policygradex.pipeline.projection import FactorisedProjection, RandomProjection, factorised_projection

Projection = RandomProjection | FactorisedProjection
"""Either projector: ``p``, ``d``, ``project`` and ``lift``."""
from policygradex.rl.config import PPOConfig
from policygradex.rl.baseline import fit_task_values
from policygradex.rl.gae import add_advantages, compute_gae
from policygradex.rl.rollout import Episode, EpisodeTracker, Rollout, collect_rollout


@dataclass
class TaskTransitions:
    """N valid transitions of one task under theta_star, in time order."""

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: np.ndarray
    returns: np.ndarray
    episode_returns: list[float]
    split_advantages: np.ndarray | None = None
    """``baseline`` per_task or auto only: the same transitions' advantages under two per-task baselines fitted
    apart, one on the first half (in time) of the fitting rows and one on the rest (:func:`split_advantages`), so
    that the two halves the gradient signal's reliability compares share no fit. Never the surrogate's data; None
    otherwise."""
    value_head_advantages: np.ndarray | None = None
    """``baseline = auto`` only: the advantages under theta_star's value head (``advantages`` are then per_task's);
    :mod:`.baseline_choice` keeps one of the two. None otherwise."""


def collect_transitions(
    family: TaskFamily, model: nn.Module, cfg: FeatureConfig, ppo_cfg: PPOConfig, seed: int, task_id: bool = True,
    task_ids: Sequence[int] | None = None,
) -> list[TaskTransitions]:
    """Roll out theta_star on every task (or on ``task_ids``, in that order) until each has ``transitions_per_task``
    valid transitions; GAE on them.

    Transitions are ordered by time (then sub-env), so the last ``holdout_fraction`` of them are the latest.
    """
    ids = list(range(family.n)) if task_ids is None else [int(i) for i in task_ids]
    want = cfg.transitions_per_task
    num_steps = math.ceil(want / cfg.envs_per_task * 1.1) + 8
    torch.manual_seed(seed)
    while True:
        if cfg.common_random_numbers:
            rollout, next_obs, env, episodes = paired_rollouts(family, model, ids, cfg.envs_per_task, seed, task_id,
                                                               num_steps)
        else:
            vec = MultiTaskVectorEnv(family, ids, cfg.envs_per_task, seed, task_id)
            tracker = EpisodeTracker(vec.env_task)
            rollout, next_obs = collect_rollout(vec, model, vec.reset(), num_steps, tracker)
            vec.close()
            env, episodes = Layout(vec.env_task, vec.obs_dim, vec.task_id_dim), tracker.pop()
        valid_counts = [int(rollout.valid[:, env.env_task == i].sum()) for i in ids]
        if min(valid_counts) >= want:
            break
        num_steps = int(num_steps * 1.5) + 8
    split = value_head = None
    if cfg.baseline == "auto":
        value_head = compute_gae(rollout.rewards, rollout.values, rollout.next_value, rollout.terminated,
                                 rollout.truncated, ppo_cfg.gamma, ppo_cfg.gae_lambda)
    if cfg.baseline in ("per_task", "auto"):
        half = fit_rows(want, cfg.holdout_fraction) // 2
        split = split_advantages(rollout, next_obs, env, ids, ppo_cfg.gamma, ppo_cfg.gae_lambda, half)
        task_baselines(rollout, next_obs, env, ids, ppo_cfg.gamma)
    add_advantages(rollout, ppo_cfg.gamma, ppo_cfg.gae_lambda)
    out = []
    for i in ids:
        cols = np.flatnonzero(env.env_task == i)
        valid = rollout.valid[:, cols].reshape(-1)
        take = lambda x: x[:, cols].reshape(-1, *x.shape[2:])[valid][:want]  # noqa: E731  (time-major order)
        out.append(
            TaskTransitions(
                obs=take(rollout.obs),
                actions=take(rollout.actions),
                advantages=take(rollout.advantages).numpy().astype(np.float64),
                returns=take(rollout.returns).numpy().astype(np.float64),
                episode_returns=[e.ret for e in episodes if e.task == i],
                split_advantages=None if split is None else take(split).numpy().astype(np.float64),
                value_head_advantages=None if value_head is None else take(value_head).numpy().astype(np.float64),
            )
        )
    return out


class Layout(NamedTuple):
    """Which task each column of a rollout belongs to, and the observation's layout (a :class:`MultiTaskVectorEnv`
    has the same three attributes)."""

    env_task: np.ndarray
    """(E,) the family task index of each column."""
    obs_dim: int
    task_id_dim: int


def paired_rollouts(family: TaskFamily, model: nn.Module, ids: Sequence[int], envs_per_task: int, seed: int,
                    task_id: bool, num_steps: int) -> tuple[Rollout, np.ndarray, Layout, list[Episode]]:
    """``FeatureConfig.common_random_numbers``: each task's ``envs_per_task`` sub-envs rolled out on their own, every
    task from the same environment seeds and the same stream of action noise, then laid side by side as one rollout
    (task by task, as :class:`MultiTaskVectorEnv` lays them out). Tasks with the same dynamics and observations then
    visit the same states and take the same actions, and differ only in their rewards; where the dynamics differ the
    trajectories part, but start alike. O(n) rollouts of ``envs_per_task`` columns instead of one of n times as many:
    the same environment steps, n times as many (smaller) forward passes. Memory: the rollout of ``ids`` (one block
    of the feature stage), held twice while its parts are laid side by side."""
    parts: list[Rollout] = []
    nexts: list[np.ndarray] = []
    episodes: list[Episode] = []
    for i in ids:
        torch.manual_seed(seed)
        env = MultiTaskVectorEnv(family, [i], envs_per_task, seed, task_id)
        tracker = EpisodeTracker(env.env_task)
        part, nxt = collect_rollout(env, model, env.reset(), num_steps, tracker)
        env.close()
        parts.append(part)
        nexts.append(np.asarray(nxt))
        episodes += tracker.pop()
    cat = {f.name: torch.cat([getattr(p, f.name) for p in parts], dim=0 if f.name == "next_value" else 1)
           for f in fields(Rollout) if f.name not in ("advantages", "returns")}
    layout = Layout(np.repeat(np.asarray(ids, dtype=np.int64), envs_per_task), env.obs_dim, env.task_id_dim)
    return Rollout(**cat), np.concatenate(nexts), layout, episodes


def _returns_and_observations(rollout: Rollout, next_obs: np.ndarray, env: MultiTaskVectorEnv | Layout,
                               gamma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-task baselines' regression data: discounted returns-to-go (bootstrapped by the policy's value where
    a rollout or a time limit cuts an episode), the observations without the task id, and those after the last step."""
    returns = compute_gae(rollout.rewards, rollout.values, rollout.next_value, rollout.terminated, rollout.truncated,
                          gamma, 1.0) + rollout.values
    raw = env.obs_dim - env.task_id_dim
    nxt = torch.as_tensor(np.asarray(next_obs, dtype=np.float32))[..., :raw]
    return returns, rollout.obs[..., :raw], nxt


def task_baselines(rollout: Rollout, next_obs: np.ndarray, env: MultiTaskVectorEnv | Layout, ids: Sequence[int],
                   gamma: float) -> None:
    """``FeatureConfig.baseline = per_task``: replace the policy's value estimates in ``rollout`` by each task's own
    value function, fitted on that task's transitions (:func:`~policygradex.rl.baseline.fit_task_values`: ridge
    regression of the discounted returns-to-go, bootstrapped by the policy's value where a rollout or a time limit
    cuts an episode, on quadratic features of the observation without the task id). O(N q^2) per task, q the number
    of features."""
    returns, obs, nxt = _returns_and_observations(rollout, next_obs, env, gamma)
    columns = [torch.as_tensor(np.flatnonzero(env.env_task == i)) for i in ids]
    rollout.values, rollout.next_value = fit_task_values(obs, nxt, returns, rollout.valid.float(), columns)


def split_advantages(rollout: Rollout, next_obs: np.ndarray, env: MultiTaskVectorEnv | Layout, ids: Sequence[int],
                     gamma: float, gae_lambda: float, half: int) -> torch.Tensor:
    """(T, E) GAE advantages under per-task baselines fitted apart on two halves of each task's transitions: the
    first ``half`` valid transitions in time order (the first half of the fitting rows) and all the later ones.

    The per-task baseline of :func:`task_baselines` is fitted on every transition, so the two halves that the
    split-half reliability of the gradient signal compares share its fit's error, and agree more than two fresh
    samples would (results/baseline-reliability.md: 0.70 split-half against 0.16 test-retest on the CartPole demo).
    Here each half's advantages come from its own fit; only the few steps whose GAE reaches across the boundary
    see the other half's values. Must run before :func:`task_baselines` replaces the rollout's values (the
    returns are bootstrapped by the policy's value, as there). Twice :func:`task_baselines`' time."""
    returns, obs, nxt = _returns_and_observations(rollout, next_obs, env, gamma)
    columns = [torch.as_tensor(np.flatnonzero(env.env_task == i)) for i in ids]
    first = torch.zeros_like(rollout.valid)
    for cols in columns:
        valid = rollout.valid[:, cols]
        position = valid.reshape(-1).long().cumsum(0).reshape(valid.shape) - 1  # time-major, as the rows are taken
        first[:, cols] = valid & (position < half)
    on_first, _ = fit_task_values(obs, nxt, returns, first.float(), columns)
    on_rest, next_rest = fit_task_values(obs, nxt, returns, (rollout.valid & ~first).float(), columns)
    values = torch.where(first, on_first, on_rest)
    return compute_gae(rollout.rewards, values, next_rest, rollout.terminated, rollout.truncated, gamma, gae_lambda)


def task_blocks(n: int, size: int) -> list[range]:
    """The feature stage's blocks of tasks: consecutive ranges of ``size`` (the last one shorter)."""
    return [range(lo, min(n, lo + size)) for lo in range(0, n, max(1, size))]


def block_transitions(cfg: RunConfig, family: TaskFamily, model: nn.Module, block: int) -> list[TaskTransitions]:
    """The transitions of block ``block`` of the run's feature stage (:func:`task_blocks`), from its own seed."""
    ids = task_blocks(family.n, cfg.features.task_block)[block]
    return collect_transitions(family, model, cfg.features, cfg.ppo, cfg.feature_block_seed(block),
                               cfg.network.task_id, task_ids=ids)


def run_transitions(cfg: RunConfig, family: TaskFamily, model: nn.Module) -> list[TaskTransitions]:
    """The transitions of the run's feature stage, all tasks in order: theta_star's rollouts, block by block (the
    same ones whenever the environments are deterministic). O(n N) memory: for the commands that re-collect a
    run's transitions; the feature stage itself holds one block at a time."""
    out: list[TaskTransitions] = []
    for b in range(len(task_blocks(family.n, cfg.features.task_block))):
        out += block_transitions(cfg, family, model, b)
    return out


def fit_rows(N: int, holdout_fraction: float) -> int:
    """How many of a task's N transitions, the earliest, the surrogate fits on; the rest are held out."""
    return N - int(round(holdout_fraction * N))


def logistic_targets(advantages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels sign(A) in {-1, +1} (+1 for A >= 0) and weights |A| of the weighted logistic surrogate, as float32."""
    adv = np.asarray(advantages)
    return np.where(adv >= 0, 1.0, -1.0).astype(np.float32), np.abs(adv).astype(np.float32)


def normalize_advantages(advantages: list[np.ndarray], mode: str) -> list[np.ndarray]:
    """Scale advantages before labels sign(A) and weights |A| are taken (see FeatureConfig.advantage_normalization)."""
    if mode == "none":
        return [a.copy() for a in advantages]
    if mode == "per_task":
        return [(a - a.mean()) / (a.std() + 1e-8) for a in advantages]
    if mode == "batch":
        allv = np.concatenate(advantages)
        mu, sd = allv.mean(), allv.std() + 1e-8
        return [(a - mu) / sd for a in advantages]
    raise ValueError(f"unknown advantage normalization {mode!r}")


# ----------------------------------------------------------------------------------------------- data
@dataclass
class FeatureSet:
    """Projected features of all n tasks, split in time into a fitting part and a held-out part."""

    features: torch.Tensor
    """(n, N, d) float32 projected gradients g~."""
    labels: torch.Tensor
    """(n, N) sign(A) in {-1, +1}."""
    weights: torch.Tensor
    """(n, N) |A|."""
    n_fit: int
    """The first n_fit transitions of each task are fitted on; the rest are held out."""
    split_labels: torch.Tensor | None = None
    """(n, N) sign(A) of :attr:`TaskTransitions.split_advantages` (per_task or auto), for the gradient
    signal's split-half reliability only; None when the features have none."""
    split_weights: torch.Tensor | None = None
    """(n, N) their |A|."""

    @property
    def n(self) -> int:
        return self.features.shape[0]

    def part(self, held_out: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sl = slice(self.n_fit, None) if held_out else slice(0, self.n_fit)
        return self.features[:, sl], self.labels[:, sl], self.weights[:, sl]


def projection_for(cfg: RunConfig, model: nn.Module, dim: int | None = None) -> Projection:
    """The run's projection P for this network (seeded by ``cfg.projection_seed``), of dimension ``dim`` if given
    (the d ablation), else the configured d; dense or factorised as configured."""
    p = flat_params(model, model.policy_parameter_names()).numel()
    fc = cfg.features
    if fc.projection == "factorised":
        return factorised_projection(model, dim or fc.projection_dim, cfg.projection_seed)
    return RandomProjection(p, dim or fc.projection_dim, cfg.projection_seed, fc.projection_block_rows,
                            fc.projection_cache_mb)


def feature_arrays(model: nn.Module, obs: torch.Tensor, actions: torch.Tensor, advantages: np.ndarray,
                   projection: Projection, fc: FeatureConfig,
                   split_advantages: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One task's surrogate data: projected gradients (N x d float32), labels sign(A) and weights |A| of its
    (normalised) advantages; with ``split_advantages`` (normalised), also their ``split_labels`` and
    ``split_weights``."""
    labels, weights = logistic_targets(advantages)
    features = projected_gradients(model, obs, actions, projection, fc)
    out = {"features": features.numpy().astype(np.float32), "labels": labels, "weights": weights}
    if split_advantages is not None:
        out["split_labels"], out["split_weights"] = logistic_targets(split_advantages)
    return out


def normalized_split(transitions: Sequence[TaskTransitions], mode: str,
                     which: str = "split_advantages") -> list[np.ndarray | None]:
    """Every task's :attr:`TaskTransitions.split_advantages` (or ``which``: ``value_head_advantages``), normalised
    as ``mode`` normalises the advantages (over those advantages themselves); Nones where any task has none."""
    if any(getattr(t, which) is None for t in transitions):
        return [None] * len(transitions)
    return list(normalize_advantages([getattr(t, which) for t in transitions], mode))


def build_feature_set(model: nn.Module, transitions: list[TaskTransitions], projection: Projection,
                      fc: FeatureConfig) -> FeatureSet:
    """All tasks' surrogate data from their transitions: normalise the advantages, project the gradients."""
    advantages = normalize_advantages([t.advantages for t in transitions], fc.advantage_normalization)
    split = normalized_split(transitions, fc.advantage_normalization)
    arrays = [feature_arrays(model, t.obs, t.actions, a, projection, fc, s)
              for t, a, s in zip(transitions, advantages, split)]
    return feature_set(arrays, fc.holdout_fraction)


def feature_set(arrays: list[dict[str, np.ndarray]], holdout: float, paths: list[Path] | None = None) -> FeatureSet:
    """Stack per-task arrays (in memory, or loaded from the feature files at ``paths``) into the surrogate's data."""
    where = [str(p) for p in paths] if paths else [f"task {i}'s features" for i in range(len(arrays))]
    for a, w in zip(arrays, where):
        if not {"features", "labels", "weights"} <= set(a):
            raise PolicyGradExError(f"{w} lacks features/labels/weights; delete it to recompute the features")
    shapes = {a["features"].shape for a in arrays}
    if len(shapes) != 1:
        if paths:
            raise PolicyGradExError(f"feature files disagree in shape {sorted(shapes)}; delete {paths[0].parent} to recompute")
        raise PolicyGradExError(f"feature arrays disagree in shape {sorted(shapes)}")
    split = all("split_labels" in a and "split_weights" in a for a in arrays)
    return FeatureSet(
        features=torch.from_numpy(np.stack([a["features"] for a in arrays])),
        labels=torch.from_numpy(np.stack([a["labels"] for a in arrays])),
        weights=torch.from_numpy(np.stack([a["weights"] for a in arrays])),
        n_fit=fit_rows(arrays[0]["features"].shape[0], holdout),
        split_labels=torch.from_numpy(np.stack([a["split_labels"] for a in arrays])) if split else None,
        split_weights=torch.from_numpy(np.stack([a["split_weights"] for a in arrays])) if split else None,
    )
