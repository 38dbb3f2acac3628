"""Multitask PPO (CleanRL-style, single file of logic): rollouts over all tasks, GAE, clipped updates.

Used for meta-training theta_star on all n tasks (stage 1), for collecting the transitions whose gradients become
features (stage 2), and later for fine-tuning on subsets and training one policy per group.

Autoreset is Gymnasium's NEXT_STEP mode (see :class:`~policygradex.families.MultiTaskVectorEnv`): the observation
after a terminal or truncated step is the true final observation, so a time-limit truncation bootstraps from
V(final observation) simply by using the next step's value; the reset step that follows is marked invalid and
dropped from updates, features and returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .artifacts import atomic_torch_save, load_torch
from .config import NetworkConfig, PPOConfig
from .families import MultiTaskVectorEnv, TaskFamily
from .networks import make_network


@dataclass
class Rollout:
    """num_steps x num_envs arrays of one rollout (time-major)."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    values: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    valid: torch.Tensor
    """False on reset steps (the action was ignored by the env): excluded everywhere."""
    next_value: torch.Tensor
    advantages: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    returns: torch.Tensor = field(default_factory=lambda: torch.empty(0))


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_value: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> torch.Tensor:
    """Generalised advantage estimates for (T, E) arrays.

    delta_t = r_t + gamma * V(s_{t+1}) * (1 - terminated_t) - V(s_t); the recursion
    A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1} stops at every episode end (terminated or truncated).
    With NEXT_STEP autoreset s_{t+1} after a truncation is the final observation, so truncated steps bootstrap
    from V(final obs) and terminal steps do not bootstrap at all. ``next_value`` is V of the observation after
    the last step.
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    term = terminated.to(rewards.dtype)
    done = (terminated | truncated).to(rewards.dtype)
    for t in reversed(range(num_steps)):
        v_next = next_value if t == num_steps - 1 else values[t + 1]
        delta = rewards[t] + gamma * v_next * (1.0 - term[t]) - values[t]
        last = delta + gamma * gae_lambda * (1.0 - done[t]) * last
        advantages[t] = last
    return advantages


class EpisodeTracker:
    """Accumulates episodic returns per sub-env; finished episodes are reported with their task id."""

    def __init__(self, env_task: np.ndarray) -> None:
        self.env_task = env_task
        self.ret = np.zeros(len(env_task))
        self.length = np.zeros(len(env_task), dtype=np.int64)
        self.finished: list[tuple[int, float, int]] = []

    def update(self, rewards: np.ndarray, done: np.ndarray, valid: np.ndarray) -> None:
        self.ret += np.where(valid, rewards, 0.0)
        self.length += valid
        for j in np.flatnonzero(done):
            self.finished.append((int(self.env_task[j]), float(self.ret[j]), int(self.length[j])))
            self.ret[j] = 0.0
            self.length[j] = 0

    def pop(self) -> list[tuple[int, float, int]]:
        out, self.finished = self.finished, []
        return out


def _env_action(action: torch.Tensor, space: gym.Space) -> np.ndarray:
    a = action.cpu().numpy()
    if isinstance(space, gym.spaces.Box):
        return np.clip(a, space.low, space.high).astype(space.dtype)
    return a.astype(np.int64)


@torch.no_grad()
def collect_rollout(
    env: MultiTaskVectorEnv,
    model: nn.Module,
    obs: np.ndarray,
    num_steps: int,
    tracker: EpisodeTracker | None = None,
) -> tuple[Rollout, np.ndarray]:
    """Run ``num_steps`` steps of every sub-env with the current policy; return the rollout and the next obs."""
    n_env = env.num_envs
    obs_buf = torch.zeros((num_steps, n_env, env.obs_dim))
    act_buf: list[torch.Tensor] = []
    logp_buf = torch.zeros((num_steps, n_env))
    rew_buf = torch.zeros((num_steps, n_env))
    val_buf = torch.zeros((num_steps, n_env))
    term_buf = torch.zeros((num_steps, n_env), dtype=torch.bool)
    trunc_buf = torch.zeros((num_steps, n_env), dtype=torch.bool)
    valid_buf = torch.zeros((num_steps, n_env), dtype=torch.bool)
    for t in range(num_steps):
        o = torch.as_tensor(obs)
        obs_buf[t] = o
        action, logp, _, value = model.get_action_and_value(o)
        act_buf.append(action)
        logp_buf[t] = logp
        val_buf[t] = value
        obs, rewards, terminated, truncated, reset_mask = env.step(_env_action(action, env.single_action_space))
        rew_buf[t] = torch.as_tensor(rewards, dtype=torch.float32)
        term_buf[t] = torch.as_tensor(terminated)
        trunc_buf[t] = torch.as_tensor(truncated)
        valid_buf[t] = torch.as_tensor(~reset_mask)
        if tracker is not None:
            tracker.update(rewards, terminated | truncated, ~reset_mask)
    next_value = model.get_value(torch.as_tensor(obs))
    rollout = Rollout(
        obs_buf, torch.stack(act_buf), logp_buf, rew_buf, val_buf, term_buf, trunc_buf, valid_buf, next_value
    )
    return rollout, obs


def add_advantages(rollout: Rollout, gamma: float, gae_lambda: float) -> None:
    rollout.advantages = compute_gae(
        rollout.rewards, rollout.values, rollout.next_value, rollout.terminated, rollout.truncated, gamma, gae_lambda
    )
    rollout.returns = rollout.advantages + rollout.values


def ppo_update(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    cfg: PPOConfig,
    generator: torch.Generator,
    after_step: Callable[[nn.Module], bool] | None = None,
) -> dict[str, float]:
    """CleanRL's clipped PPO update over the valid transitions of one rollout.

    ``after_step(model)`` is called after every optimizer step; when it returns True the update stops at once and the
    returned stats hold ``stopped = 1`` (used to watch the parameters move away from theta_star step by step)."""
    mask = rollout.valid.reshape(-1)
    b_obs = rollout.obs.reshape(-1, rollout.obs.shape[-1])[mask]
    b_actions = rollout.actions.reshape(-1, *rollout.actions.shape[2:])[mask]
    b_logprobs = rollout.logprobs.reshape(-1)[mask]
    b_adv = rollout.advantages.reshape(-1)[mask]
    b_returns = rollout.returns.reshape(-1)[mask]
    b_values = rollout.values.reshape(-1)[mask]
    batch = b_obs.shape[0]
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
            pg_loss = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
            if cfg.clip_vloss:
                v_unclipped = (newvalue - b_returns[idx]) ** 2
                v_clipped = b_values[idx] + torch.clamp(newvalue - b_values[idx], -cfg.clip_coef, cfg.clip_coef)
                v_loss = 0.5 * torch.max(v_unclipped, (v_clipped - b_returns[idx]) ** 2).mean()
            else:
                v_loss = 0.5 * ((newvalue - b_returns[idx]) ** 2).mean()
            loss = pg_loss - cfg.ent_coef * entropy.mean() + cfg.vf_coef * v_loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
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
    """One row per iteration: env_steps, mean return over finished episodes, per-task mean returns, losses."""
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
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    steps_per_iteration = cfg.envs_per_task * cfg.num_steps  # per task
    iterations = max(1, cfg.steps_per_task // steps_per_iteration)
    probe = MultiTaskVectorEnv(family, task_ids, cfg.envs_per_task, seed, net_cfg.task_id)
    model = make_network(probe.obs_dim, probe.single_action_space, net_cfg)
    if init_state is not None:
        model.load_state_dict(init_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, eps=1e-5)
    generator = torch.Generator().manual_seed(seed)
    curve: list[dict[str, Any]] = []
    start_iter, elapsed = 0, 0.0
    if checkpoint_path is not None and checkpoint_path.exists():
        ckpt = load_torch(checkpoint_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        if "numpy_rng" in ckpt:
            np.random.set_state(ckpt["numpy_rng"])
        curve, start_iter, elapsed = ckpt["curve"], ckpt["iteration"], ckpt["seconds"]
    probe.close()
    segment = cfg.checkpoint_every or iterations  # environments restart at every multiple of this
    env: MultiTaskVectorEnv | None = None
    t0 = time.perf_counter() - elapsed
    for it in range(start_iter, iterations):
        if env is None or it % segment == 0:
            if env is not None:
                env.close()
            env = MultiTaskVectorEnv(family, task_ids, cfg.envs_per_task, seed + 7919 * it, net_cfg.task_id)
            tracker = EpisodeTracker(env.env_task)
            obs = env.reset()
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - it / iterations)
        rollout, obs = collect_rollout(env, model, obs, cfg.num_steps, tracker)
        add_advantages(rollout, cfg.gamma, cfg.gae_lambda)
        if before_update is not None:
            before_update(model, rollout)
        stats = ppo_update(model, optimizer, rollout, cfg, generator, after_step)
        episodes = tracker.pop()
        row: dict[str, Any] = {"iteration": it + 1, "env_steps_per_task": (it + 1) * steps_per_iteration}
        row["mean_return"] = float(np.mean([r for _, r, _ in episodes])) if episodes else float("nan")
        for task in task_ids:
            rets = [r for k, r, _ in episodes if k == task]
            row[f"return/{family.tasks[task].name}"] = float(np.mean(rets)) if rets else float("nan")
        row.update(stats)
        row["seconds"] = time.perf_counter() - t0
        curve.append(row)
        if on_iteration is not None:
            on_iteration(it + 1, iterations, row)
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
                    "iteration": it + 1,
                    "seconds": row["seconds"],
                },
                checkpoint_path,
            )
    if env is not None:
        env.close()
    return TrainResult(model, curve, time.perf_counter() - t0)
