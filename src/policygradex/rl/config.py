"""Options of PPO (meta-training, fine-tuning and per-group training)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PPOConfig:
    """Multitask PPO (CleanRL's ``ppo.py`` / ``ppo_continuous_action.py`` defaults unless stated)."""

    steps_per_task: int = 200_000
    """Environment steps per task over the whole training (the total budget is this times the number of tasks)."""
    envs_per_task: int = 4
    """Parallel sub-environments per task; every rollout holds all tasks."""
    num_steps: int = 128
    """Rollout length per sub-environment; a rollout has envs_per_task * num_steps steps per task."""
    learning_rate: float = 1e-3
    """Adam learning rate. 1e-3 for these small networks: at CleanRL's 2.5e-4, 200k steps per task left theta_star
    weaker than 100k steps at 1e-3, so the presets were no ladder of budgets."""
    anneal_lr: bool = True
    """Linearly anneal the learning rate to zero over the run."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    update_epochs: int = 4
    """Epochs over each rollout."""
    norm_adv: bool = True
    """Normalise advantages within each minibatch."""
    clip_coef: float = 0.2
    """Surrogate clipping coefficient."""
    clip_vloss: bool = True
    """Clip the value loss as in the PPO paper's implementation."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clipping."""
    target_kl: float | None = None
    """Stop an update's epochs early when the approximate KL exceeds this (None: never)."""
    checkpoint_every: int = 10
    """Save a resumable checkpoint every this many PPO iterations (0: never)."""
