"""MAML for reinforcement learning (Finn et al. 2017) with ProMP's PPO outer loop (Rothfuss et al. 2019).

The variant, step by step (one meta-iteration):

1. The meta-batch: ``meta_batch`` task slots filled from the training tasks in rotation
   (:class:`~policygradex.rl.config.MAMLConfig`).
2. Inner loop, per slot and in parallel over slots (``torch.func.vmap`` over stacked fast weights, evaluated with
   ``torch.func.functional_call``): collect ``trajectories`` fresh episodes with the current fast weights phi, fit
   the linear feature baseline (:mod:`policygradex.rl.baseline`) to their returns, take the advantages (GAE over
   the baseline, normalised per slot), and step phi <- phi - inner_lr * grad L_in(phi), where

       L_in(phi) = - sum_t m_t * exp(log pi_phi(a_t|s_t) - log pi_old(a_t|s_t)) * A_t / sum_t m_t

   is ProMP's low-variance-curvature objective: its gradient at phi = phi_old is the vanilla policy gradient, and
   its second derivatives are the low-variance estimate of the Hessian term of the meta-gradient.
   ``inner_steps`` such steps, each on fresh episodes.
3. Outer batch: ``trajectories`` episodes per slot with the adapted weights.
4. Meta-update: ``outer_epochs`` Adam steps on theta (the actor's parameters; the critic is not used) of PPO's
   clipped objective on the outer batch, where the adapted weights are recomputed from theta through the inner
   loop on its stored episodes at every step. The meta-gradient flows through the inner steps (second order), or
   treats the inner gradients as constants (``first_order``).

Adapting at test time (:func:`adaptation_curve`) repeats exactly step 2 for as many steps as asked, with fresh
episodes at each step, from the meta-learned theta (or any policy's weights).

Episodes are collected whole: each sub-env plays one episode from its reset, and the steps after its end are
masked out. The family's one-hot task id is never used (unseen tasks have none).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal
from torch.func import functional_call, grad, vmap

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import TaskFamily
from policygradex.envs.vector import MultiTaskVectorEnv
from policygradex.nets.config import NetworkConfig
from policygradex.nets.mlp import ActorCritic
from policygradex.rl.baseline import fit_linear_baseline
from policygradex.rl.config import MAMLConfig
from policygradex.rl.gae import compute_gae
from policygradex.rl.ppo import network_for
from policygradex.rl.rollout import env_action

Params = dict[str, torch.Tensor]
"""Actor parameters by name (``model.policy_parameter_names()``), stacked with a leading slot dimension where a
function works on several tasks at once."""


@dataclass
class EpisodeBatch:
    """Whole episodes of K task slots, E per slot, time-major within a slot: arrays (K, T, E, ...)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    """1.0 on the steps of each episode, 0.0 after its end."""
    logp_old: torch.Tensor
    """log pi of each action under the weights that collected it."""
    advantages: torch.Tensor
    """Normalised advantages over the linear baseline (0 off the mask)."""

    @property
    def returns(self) -> torch.Tensor:
        """Undiscounted return of each episode, (K, E)."""
        return (self.rewards * self.mask).sum(dim=1)

    @property
    def env_steps(self) -> int:
        return int(self.mask.sum().item())


def actor_params(model: nn.Module) -> Params:
    """The live parameters MAML adapts and meta-learns: the actor's (``policy_parameter_names``)."""
    named = dict(model.named_parameters())
    return {name: named[name] for name in model.policy_parameter_names()}


def stack(params: Params, slots: int) -> Params:
    """The same weights for every slot: (slots, ...) views (differentiable in the weights)."""
    return {k: v.unsqueeze(0).expand(slots, *v.shape) for k, v in params.items()}


def require_actor_critic(model: nn.Module) -> ActorCritic:
    if not isinstance(model, ActorCritic):
        raise PolicyGradExError(f"MAML needs the package's ActorCritic (any network body), got {type(model).__name__}")
    return model


# ----------------------------------------------------------------------------------------------- the objectives
def log_prob(model: nn.Module, params: Params, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log pi_params(actions | obs) of one slot (any leading batch shape)."""
    return functional_call(model, params, (obs, actions))


def inner_loss(model: nn.Module, params: Params, obs: torch.Tensor, actions: torch.Tensor, logp_old: torch.Tensor,
               advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ProMP's LVC inner objective of one slot (see the module docstring), to be minimised."""
    ratio = torch.exp(log_prob(model, params, obs, actions) - logp_old)
    return -(ratio * advantages * mask).sum() / mask.sum().clamp_min(1.0)


def adapt(model: nn.Module, params: Params, batch: EpisodeBatch, lr: float, first_order: bool = False) -> Params:
    """One inner step for every slot at once: phi_k - lr * grad L_in(phi_k) on slot k's episodes. Differentiable in
    ``params`` (through the gradient too, unless ``first_order``)."""
    g = vmap(grad(lambda p, *b: inner_loss(model, p, *b)))(
        params, batch.obs, batch.actions, batch.logp_old, batch.advantages, batch.mask)
    if first_order:
        g = {k: v.detach() for k, v in g.items()}
    return {k: params[k] - lr * g[k] for k in params}


def outer_loss(model: nn.Module, params: Params, batch: EpisodeBatch, clip_coef: float) -> torch.Tensor:
    """PPO's clipped objective of the adapted weights on the outer batch, mean over slots, to be minimised."""
    logp = vmap(lambda p, o, a: log_prob(model, p, o, a))(params, batch.obs, batch.actions)
    ratio = torch.exp(logp - batch.logp_old)
    adv = batch.advantages
    surr = torch.min(ratio * adv, ratio.clamp(1 - clip_coef, 1 + clip_coef) * adv)
    per_slot = (surr * batch.mask).sum(dim=(1, 2)) / batch.mask.sum(dim=(1, 2)).clamp_min(1.0)
    return -per_slot.mean()


def meta_objective(model: nn.Module, theta: Params, inner: Sequence[EpisodeBatch], outer: EpisodeBatch,
                   cfg: MAMLConfig) -> torch.Tensor:
    """The meta-loss of theta: adapt through the stored inner batches, then the outer loss of the adapted weights."""
    params = stack(theta, outer.obs.shape[0])
    for batch in inner:
        params = adapt(model, params, batch, cfg.inner_lr, cfg.first_order)
    return outer_loss(model, params, outer, cfg.clip_coef)


# ----------------------------------------------------------------------------------------------- episodes
def sample_actions(model: ActorCritic, params: Params, obs: torch.Tensor) -> torch.Tensor:
    """Actions (K, E, ...) for observations (K, E, obs_dim), slot k acting with weights params[k]."""
    body = {k[len("actor."):]: v for k, v in params.items() if k.startswith("actor.")}
    out = vmap(lambda p, o: functional_call(model.actor, p, (o,)))(body, obs)
    if model.discrete:
        return Categorical(logits=out).sample()
    return Normal(out, params["actor_logstd"].exp()).sample()


@torch.no_grad()
def collect_episodes(family: TaskFamily, slot_tasks: Sequence[int], model: nn.Module, params: Params,
                     trajectories: int, seed: int, cfg: MAMLConfig) -> EpisodeBatch:
    """One episode per sub-env, ``trajectories`` sub-envs per slot, slot k running family task ``slot_tasks[k]``
    with weights ``params[k]``; advantages over a linear baseline fitted per slot."""
    model = require_actor_critic(model)
    K, E = len(slot_tasks), trajectories
    env = MultiTaskVectorEnv(family, slot_tasks, E, seed, task_id=False)
    try:
        obs = env.reset()
        active = np.ones(K * E, dtype=bool)
        steps: list[tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]] = []
        for _ in range(cfg.max_episode_steps):
            o = torch.as_tensor(obs).reshape(K, E, -1)
            action = sample_actions(model, params, o)
            flat = action.reshape(K * E, *action.shape[2:])
            obs, rewards, terminated, truncated, _ = env.step(env_action(flat, env.single_action_space))
            steps.append((o, action, np.where(active, rewards, 0.0), active.copy()))
            active &= ~(terminated | truncated)
            if not active.any():
                break
    finally:
        env.close()
    obs_t = torch.stack([s[0] for s in steps], dim=1)  # (K, T, E, D)
    actions = torch.stack([s[1] for s in steps], dim=1)
    rewards = torch.as_tensor(np.stack([s[2] for s in steps]), dtype=torch.float32).reshape(-1, K, E).transpose(0, 1)
    mask = torch.as_tensor(np.stack([s[3] for s in steps]), dtype=torch.float32).reshape(-1, K, E).transpose(0, 1)
    logp_old = vmap(lambda p, o, a: log_prob(model, p, o, a))(params, obs_t, actions)
    advantages = torch.stack([episode_advantages(obs_t[k], rewards[k], mask[k], cfg) for k in range(K)])
    return EpisodeBatch(obs_t, actions, rewards, mask, logp_old, advantages)


def episode_ends(mask: torch.Tensor) -> torch.Tensor:
    """True at the last step of each (T, E) time-major episode that starts at t = 0 (``mask`` one run of ones)."""
    return mask - torch.cat([mask[1:], torch.zeros_like(mask[:1])]) > 0


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted return-to-go within each episode, (T, E) time-major; 0 after an episode's end (GAE with V = 0
    and lambda = 1, no bootstrap past the end)."""
    ends, zeros = episode_ends(mask), torch.zeros_like(rewards)
    return compute_gae(rewards * mask, zeros, zeros[0], ends, torch.zeros_like(ends), gamma, 1.0) * mask


def episode_advantages(obs: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, cfg: MAMLConfig) -> torch.Tensor:
    """GAE(gamma, lambda) over the linear baseline for (T, E) episodes that start at t = 0, normalised over the
    valid steps; with lambda = 1 this is the discounted return-to-go minus the baseline. Episodes end without a
    bootstrap, the baseline's time features having learnt the return near a time limit."""
    values = fit_linear_baseline(obs, discounted_returns(rewards, mask, cfg.gamma), mask, cfg.baseline_reg)
    ends = episode_ends(mask)
    adv = compute_gae(rewards, values, torch.zeros_like(values[0]), ends, torch.zeros_like(ends), cfg.gamma,
                      cfg.gae_lambda) * mask
    valid = adv[mask.bool()]
    if valid.numel() > 1:
        adv = (adv - valid.mean()) / (valid.std() + 1e-8) * mask
    return adv


# ----------------------------------------------------------------------------------------------- training
@dataclass
class MetaTrainResult:
    model: nn.Module
    """The network at the meta-learned initialisation theta (its critic untouched)."""
    curve: list[dict[str, Any]]
    """One row per meta-iteration: env steps so far, mean return before and after adaptation, the meta-loss."""
    seconds: float


def slot_tasks(task_ids: Sequence[int], iteration: int, meta_batch: int) -> list[int]:
    """The meta-batch of an iteration: slot j runs task_ids[(iteration * meta_batch + j) mod len(task_ids)]."""
    n = len(task_ids)
    return [int(task_ids[(iteration * meta_batch + j) % n]) for j in range(meta_batch)]


def meta_train(family: TaskFamily, task_ids: Sequence[int], net_cfg: NetworkConfig, cfg: MAMLConfig, seed: int,
               on_iteration: Callable[[int, int, dict[str, Any]], None] | None = None) -> MetaTrainResult:
    """Meta-train an initialisation on ``task_ids`` of ``family`` (a fresh network of ``net_cfg``, no task id)."""
    if not task_ids:
        raise PolicyGradExError("MAML needs at least one training task")
    torch.manual_seed(seed)
    model = network_for(family, replace(net_cfg, task_id=False))
    require_actor_critic(model)
    theta = actor_params(model)
    optimizer = torch.optim.Adam(theta.values(), lr=cfg.outer_lr)
    curve: list[dict[str, Any]] = []
    env_steps, t0 = 0, time.perf_counter()
    for it in range(cfg.iterations):
        slots = slot_tasks(task_ids, it, cfg.meta_batch)
        params = stack({k: v.detach() for k, v in theta.items()}, len(slots))
        inner: list[EpisodeBatch] = []
        for step in range(cfg.inner_steps):
            inner.append(collect_episodes(family, slots, model, params, cfg.trajectories,
                                          seed + 100_003 * it + step, cfg))
            params = {k: v.detach() for k, v in adapt(model, params, inner[-1], cfg.inner_lr, True).items()}
        outer = collect_episodes(family, slots, model, params, cfg.trajectories, seed + 100_003 * it + 99_991, cfg)
        for _ in range(cfg.outer_epochs):
            loss = meta_objective(model, theta, inner, outer, cfg)
            optimizer.zero_grad()
            loss.backward()
            if cfg.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(list(theta.values()), cfg.max_grad_norm)
            optimizer.step()
        env_steps += sum(b.env_steps for b in inner) + outer.env_steps
        row = {"iteration": it + 1, "env_steps": env_steps,
               "pre_return": float(inner[0].returns.mean()) if inner else float("nan"),
               "post_return": float(outer.returns.mean()), "meta_loss": float(loss.detach()),
               "seconds": time.perf_counter() - t0}
        curve.append(row)
        if on_iteration is not None:
            on_iteration(it + 1, cfg.iterations, row)
        if cfg.env_steps is not None and env_steps >= cfg.env_steps:
            break
    return MetaTrainResult(model, curve, time.perf_counter() - t0)


@torch.no_grad()
def adaptation_curve(model: nn.Module, family: TaskFamily, task_ids: Sequence[int], steps: int, cfg: MAMLConfig,
                     seed: int) -> np.ndarray:
    """Adapt the model's actor to each task by exactly the inner loop of training, ``steps`` times, each on fresh
    episodes; (steps + 1, len(task_ids)) mean episode returns of the weights before step 0, 1, ..., and after the
    last step (row ``steps``). Seeds torch's global generator (the actions' draws) with ``seed``, as training does."""
    require_actor_critic(model)
    torch.manual_seed(seed)
    params = stack({k: v.detach() for k, v in actor_params(model).items()}, len(task_ids))
    curve = np.zeros((steps + 1, len(task_ids)))
    for s in range(steps + 1):
        batch = collect_episodes(family, task_ids, model, params, cfg.trajectories, seed + 100_003 * s, cfg)
        curve[s] = batch.returns.mean(dim=1).double().numpy()
        if s < steps:
            params = adapt(model, params, batch, cfg.inner_lr, True)
    return curve
