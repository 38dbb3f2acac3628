"""Multitask PPO (CleanRL-style, single file of logic): rollouts over all tasks, GAE, clipped updates.

Used for meta-training theta_star on all n tasks (stage 1), for collecting the transitions whose gradients become
features (stage 2), and later for fine-tuning on subsets and training one policy per group.

Autoreset is Gymnasium's NEXT_STEP mode (see :class:`~policygradex.envs.vector.MultiTaskVectorEnv`): the observation
after a terminal or truncated step is the true final observation, so a time-limit truncation bootstraps from
V(final observation) simply by using the next step's value; the reset step that follows is marked invalid and
dropped from updates, features and returns.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from policygradex.common.artifacts import atomic_torch_save, load_torch
from policygradex.envs.base import TaskFamily
from policygradex.envs.vector import MultiTaskVectorEnv, TaskBatchEnv, family_spaces, task_batch
from policygradex.nets.base import make_network
from policygradex.nets.config import NetworkConfig
from policygradex.rl.config import PPOConfig
from policygradex.rl.gae import add_advantages
from policygradex.rl.rollout import Episode, EpisodeTracker, Rollout, collect_rollout

RETURN_WINDOW = 100
"""The training curve's returns are over each task's last this many finished episodes (Stable-Baselines3's
``stats_window_size``), not over the episodes that ended in one iteration: long episodes end in few iterations,
and the environments restart at every checkpoint."""


class RecentEpisodes:
    """Each task's last RETURN_WINDOW finished episodes, carried across iterations and through checkpoints."""

    def __init__(self, tasks: Sequence[int], state: dict[int, list[tuple]] | None = None) -> None:
        self.by_task: dict[int, deque[Episode]] = {int(t): deque(maxlen=RETURN_WINDOW) for t in tasks}
        for t, eps in (state or {}).items():
            self.by_task[int(t)].extend(Episode(*e) for e in eps)

    def add(self, episodes: Sequence[Episode]) -> None:
        for e in episodes:
            self.by_task[e.task].append(e)

    def state(self) -> dict[int, list[tuple]]:
        return {t: [tuple(e) for e in eps] for t, eps in self.by_task.items()}

    def task_return(self, task: int) -> float:
        """Mean return of the task's recent episodes; nan while none has ended."""
        eps = self.by_task[task]
        return float(np.mean([e.ret for e in eps])) if eps else float("nan")

    def mean_return(self) -> float:
        """Mean over the tasks with an ended episode of their recent mean return (every task weighs the same);
        nan while no episode has ended."""
        means = [np.mean([e.ret for e in eps]) for eps in self.by_task.values() if eps]
        return float(np.mean(means)) if means else float("nan")

    def mean_metric(self, name: str) -> float:
        """The same task-balanced mean of a scalar episode metric (e.g. success)."""
        means = [np.mean([e.metrics[name] for e in eps if name in e.metrics]) for eps in self.by_task.values()
                 if any(name in e.metrics for e in eps)]
        return float(np.mean(means)) if means else float("nan")

    @property
    def count(self) -> int:
        return sum(len(eps) for eps in self.by_task.values())


def network_for(family: TaskFamily, net_cfg: NetworkConfig,
                spaces: tuple[int, gym.Space] | None = None) -> nn.Module:
    """A fresh network for this family's observations (with the family-wide one-hot task id when configured) and
    actions; ``spaces``: (obs_dim, action_space) of an env already at hand, else probed."""
    obs_dim, action_space = spaces or family_spaces(family, net_cfg.task_id)
    return make_network(obs_dim, action_space, net_cfg, family.n if net_cfg.task_id else 0)


def ppo_update(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    cfg: PPOConfig,
    generator: torch.Generator,
    after_step: Callable[[nn.Module], bool] | None = None,
) -> dict[str, float]:
    """CleanRL's clipped PPO update over the valid transitions of one rollout.

    A network with the optional hooks ``task_loss_mask`` / ``reset_masked_tasks`` (PaCo) weighs each transition in
    the loss by the mask and resets the masked tasks after the step. ``after_step(model)`` is called after every
    optimizer step; when it returns True the update stops at once and the
    returned stats hold ``stopped = 1`` (used to watch the parameters move away from theta_star step by step)."""
    mask = rollout.valid.reshape(-1)
    b_obs = rollout.obs.reshape(-1, rollout.obs.shape[-1])[mask]
    b_actions = rollout.actions.reshape(-1, *rollout.actions.shape[2:])[mask]
    b_logprobs = rollout.logprobs.reshape(-1)[mask]
    b_adv = rollout.advantages.reshape(-1)[mask]
    b_returns = rollout.returns.reshape(-1)[mask]
    b_values = rollout.values.reshape(-1)[mask]
    batch = b_obs.shape[0]
    masks_tasks = hasattr(model, "task_loss_mask")  # the optional hooks of nets.base.Policy
    stats: dict[str, float] = {}
    for _ in range(cfg.update_epochs):
        perm = torch.randperm(batch, generator=generator)
        approx_kl = torch.tensor(0.0)
        # num_minibatches of near-equal size (sizes differ by at most one): the valid transitions are rarely a
        # multiple of num_minibatches, and slicing by batch // num_minibatches left a last minibatch of 1-2 samples
        # that got a full Adam step with unnormalised advantages
        for idx in torch.tensor_split(perm, min(cfg.num_minibatches, batch)):
            _, newlogp, entropy, newvalue = model.get_action_and_value(b_obs[idx], b_actions[idx])
            logratio = newlogp - b_logprobs[idx]
            ratio = logratio.exp()
            with torch.no_grad():
                approx_kl = ((ratio - 1) - logratio).mean()
            adv = b_adv[idx]
            if cfg.norm_adv and len(idx) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg_terms = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef))
            if cfg.clip_vloss:
                v_unclipped = (newvalue - b_returns[idx]) ** 2
                v_clipped = b_values[idx] + torch.clamp(newvalue - b_values[idx], -cfg.clip_coef, cfg.clip_coef)
                v_terms = torch.max(v_unclipped, (v_clipped - b_returns[idx]) ** 2)
            else:
                v_terms = (newvalue - b_returns[idx]) ** 2
            reduce = torch.mean
            if masks_tasks:  # e.g. PaCo: tasks whose loss exploded drop out of this minibatch's loss
                sample_loss = (pg_terms - cfg.ent_coef * entropy + cfg.vf_coef * 0.5 * v_terms).detach()
                keep = model.task_loss_mask(b_obs[idx], sample_loss)
                reduce = lambda x: (x * keep).sum() / keep.sum().clamp_min(1.0)  # noqa: E731
            pg_loss, v_loss = reduce(pg_terms), 0.5 * reduce(v_terms)
            loss = pg_loss - cfg.ent_coef * reduce(entropy) + cfg.vf_coef * v_loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            if masks_tasks:
                model.reset_masked_tasks(optimizer)
            stats = {"pg_loss": pg_loss.item(), "v_loss": v_loss.item(), "entropy": entropy.mean().item()}
            if after_step is not None and after_step(model):
                stats["stopped"] = 1.0
                return stats
        stats["approx_kl"] = float(approx_kl)
        if cfg.target_kl is not None and approx_kl > cfg.target_kl:
            break
    return stats


@dataclass
class TrainResult:
    model: nn.Module
    curve: list[dict[str, Any]]
    """One row per iteration: env steps per task, the mean return over each task's last RETURN_WINDOW finished
    episodes (``mean_return``, every task weighing the same; ``return/NAME`` per task; nan only while no episode of
    that task has ended), ``episodes`` (how many are in the window), the family's scalar metrics the same way, and
    the losses."""
    seconds: float


def train_ppo(
    family: TaskFamily,
    task_ids: Sequence[int],
    net_cfg: NetworkConfig,
    cfg: PPOConfig,
    seed: int,
    init_state: dict[str, torch.Tensor] | None = None,
    checkpoint_path: Path | None = None,
    on_iteration: Callable[[int, int, dict[str, Any]], None] | None = None,
    after_step: Callable[[nn.Module], bool] | None = None,
    before_update: Callable[[nn.Module, Rollout], None] | None = None,
    after_iteration: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train one policy on ``task_ids`` of ``family`` (all tasks: the meta-policy theta_star).

    With ``checkpoint_path``, a checkpoint (model, optimizer, RNG states, curve) is written atomically every
    ``cfg.checkpoint_every`` iterations and training resumes from it when present. Resuming gives bit-identical
    training: the environments cannot be checkpointed in general (a Box2D world does not pickle), so every
    ``checkpoint_every`` iterations, interrupted or not, the environments restart fresh episodes reseeded by the
    iteration number (the unfinished episodes bootstrap from V at the cut, as at any rollout end), and a resumed
    run restarts them at the same point with the same seed.
    ``after_step`` (see :func:`ppo_update`) can end training early, after any optimizer step.
    ``before_update(model, rollout)`` sees each rollout (with advantages) and the policy that collected it, just
    before the update; ``model`` is the live network, updated in place afterwards.
    ``after_iteration(i, model)`` sees the policy after iteration i (1-based) of every iteration this call runs
    (those before a checkpoint it resumes from are not replayed), e.g. to keep snapshots of it.
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    steps_per_iteration = cfg.envs_per_task * cfg.num_steps  # per task
    iterations = cfg.iterations
    probe = MultiTaskVectorEnv(family, task_ids, cfg.envs_per_task, seed, net_cfg.task_id)
    model = network_for(family, net_cfg, (probe.obs_dim, probe.single_action_space))
    if init_state is not None:
        model.load_state_dict(init_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, eps=1e-5)
    generator = torch.Generator().manual_seed(seed)
    curve: list[dict[str, Any]] = []
    start_iter, elapsed = 0, 0.0
    recent_state = None
    if checkpoint_path is not None and checkpoint_path.exists():
        ckpt = load_torch(checkpoint_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        if "numpy_rng" in ckpt:
            np.random.set_state(ckpt["numpy_rng"])
        curve, start_iter, elapsed = ckpt["curve"], ckpt["iteration"], ckpt["seconds"]
        recent_state = ckpt.get("recent_episodes")
    recent = RecentEpisodes(task_ids, recent_state)
    probe.close()
    segment = cfg.checkpoint_every or iterations  # environments restart at every multiple of this
    batched = cfg.tasks_per_iteration is not None and cfg.tasks_per_iteration < len(task_ids)
    env: MultiTaskVectorEnv | TaskBatchEnv | None = None
    t0 = time.perf_counter() - elapsed
    for it in range(start_iter, iterations):
        if env is None or it % segment == 0:
            if env is not None:
                env.close()
            if batched:
                env = TaskBatchEnv(family, task_ids, cfg.envs_per_task, seed + 7919 * it, net_cfg.task_id)
                tracker = EpisodeTracker(env.all_env_task, family.metrics)
            else:
                env = MultiTaskVectorEnv(family, task_ids, cfg.envs_per_task, seed + 7919 * it, net_cfg.task_id)
                tracker = EpisodeTracker(env.env_task, family.metrics)
                obs = env.reset()
        if isinstance(env, TaskBatchEnv):
            obs = env.select(task_batch(task_ids, cfg.tasks_per_iteration or len(task_ids), seed, it))
            tracker.active = env.active_envs
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - it / iterations)
        rollout, obs = collect_rollout(env, model, obs, cfg.num_steps, tracker)
        add_advantages(rollout, cfg.gamma, cfg.gae_lambda)
        if before_update is not None:
            before_update(model, rollout)
        stats = ppo_update(model, optimizer, rollout, cfg, generator, after_step)
        recent.add(tracker.pop())
        row: dict[str, Any] = {"iteration": it + 1, "env_steps_per_task": (it + 1) * steps_per_iteration}
        row["mean_return"] = recent.mean_return()
        row["episodes"] = recent.count
        for task in task_ids:
            row[f"return/{family.tasks[task].name}"] = recent.task_return(task)
        for m in family.metrics:
            if m.scalar:  # e.g. the success rate over each task's recent episodes
                row[f"mean_{m.name}"] = recent.mean_metric(m.name)
        row.update(stats)
        row["seconds"] = time.perf_counter() - t0
        curve.append(row)
        if on_iteration is not None:
            on_iteration(it + 1, iterations, row)
        if after_iteration is not None:
            after_iteration(it + 1, model)
        if stats.get("stopped"):
            break
        if checkpoint_path is not None and cfg.checkpoint_every and (it + 1) % cfg.checkpoint_every == 0:
            atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "numpy_rng": np.random.get_state(),
                    "curve": curve,
                    "recent_episodes": recent.state(),
                    "iteration": it + 1,
                    "seconds": row["seconds"],
                },
                checkpoint_path,
            )
    if env is not None:
        env.close()
    return TrainResult(model, curve, time.perf_counter() - t0)
