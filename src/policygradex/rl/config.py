"""Options of PPO (meta-training, fine-tuning and per-group training)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PPOConfig:
    """Multitask PPO (CleanRL's ``ppo.py`` / ``ppo_continuous_action.py`` defaults unless stated)."""

    steps_per_task: int = 200_000
    """Environment steps per task slot of a rollout over the whole training: the total budget is this times the
    number of tasks, or times ``tasks_per_iteration`` when there are more tasks than that."""
    envs_per_task: int = 4
    """Parallel sub-environments per task in a rollout."""
    tasks_per_iteration: int | None = 32
    """Tasks in each PPO iteration's rollout (None: all). With n above it, each iteration trains on a batch of this
    many tasks (every task once or twice per ceil(n / batch) iterations, :func:`~policygradex.envs.vector.task_batch`),
    so the whole meta-training takes ``tasks_per_iteration * steps_per_task`` environment steps whatever n is and
    each task gets ``tasks_per_iteration / n`` of ``steps_per_task``; at n <= 32 every rollout holds all tasks, as
    before. results/meta-training-at-scale.md compares batches with all tasks at equal total steps."""
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

    @property
    def iterations(self) -> int:
        """PPO iterations: whole rollouts of ``envs_per_task * num_steps`` steps per task slot, at least one."""
        return max(1, self.steps_per_task // (self.envs_per_task * self.num_steps))

    @property
    def steps_run(self) -> int:
        """The steps per task slot actually run: ``steps_per_task`` rounded down to whole rollouts (at least one).
        Reports and records say this number, and the asked one where they differ."""
        return self.iterations * self.envs_per_task * self.num_steps

    def budget_text(self) -> str:
        """E.g. ``99,840 steps per task (195 rollouts of 4 envs x 128 steps; 100,000 asked)``."""
        asked = "" if self.steps_run == self.steps_per_task else f"; {self.steps_per_task:,} asked"
        return (f"{self.steps_run:,} steps per task ({self.iterations} rollouts of {self.envs_per_task} envs x "
                f"{self.num_steps} steps{asked})")


@dataclass(frozen=True)
class MAMLConfig:
    """MAML for RL (Finn et al. 2017) with a PPO outer loop as in ProMP (Rothfuss et al. 2019); the defaults are the
    common MAML-RL settings (inner learning rate 0.1, one inner step, 10-20 trajectories per task, a linear feature
    baseline, several clipped outer steps per batch)."""

    iterations: int = 100
    """Meta-iterations: each samples a meta-batch, adapts to every task in it, and updates the initialisation."""
    env_steps: int | None = None
    """Stop meta-training after the meta-iteration in which this many environment steps (inner and outer episodes)
    have been taken, so that MAML can be given another learner's budget; ``iterations`` stays the cap. None: run
    all ``iterations``."""
    meta_batch: int = 10
    """Task slots per meta-iteration. Slot j of iteration i runs training task (i * meta_batch + j) mod n_train, so a
    few training tasks (k representatives) fill the batch with fresh trajectories of each, and every row of
    ``policygradex meta`` spends the same environment steps whatever its number of training tasks."""
    trajectories: int = 10
    """Episodes per task slot for each inner step, for the outer (post-adaptation) batch, and for each adaptation
    step at evaluation."""
    inner_steps: int = 1
    """Policy-gradient steps of the inner loop, each on fresh episodes of the current fast weights."""
    inner_lr: float = 0.1
    """Step size of the inner policy-gradient steps (plain gradient descent on the fast weights)."""
    first_order: bool = False
    """First-order MAML: the inner gradients are treated as constants in the meta-gradient (no second derivatives)."""
    outer_lr: float = 1e-3
    """Adam learning rate of the meta-update."""
    outer_epochs: int = 5
    """Clipped-objective steps over each meta-batch (ProMP's PPO outer loop), the adapted weights recomputed
    through the inner loop at every step."""
    clip_coef: float = 0.2
    """Clipping of the outer objective's likelihood ratio."""
    gamma: float = 0.99
    """Discount of the advantages (the family's ``default_gamma`` when the run kept PPO's default)."""
    gae_lambda: float = 1.0
    """GAE lambda over the linear baseline's values; 1.0: discounted return-to-go minus the baseline."""
    baseline_reg: float = 1e-5
    """Ridge coefficient of the linear feature baseline (raised tenfold while the fit is ill-conditioned)."""
    max_grad_norm: float | None = None
    """Clip the meta-gradient's global norm (None: no clipping, as ProMP)."""
    max_episode_steps: int = 10_000
    """Safety cap on an episode's length when collecting (every built-in family's time limit is lower)."""
