"""Options of the actor-critic network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class NetworkConfig:
    """The actor-critic network (the paper uses a 4-layer MLP: three hidden layers and an output layer)."""

    name: str = "mlp"
    """Network from the registry in :mod:`policygradex.nets.base` (``--network``): ``mlp``, or a multitask network
    that routes by the task id: ``multihead``, ``softmod`` (Soft Modularization), ``care``, ``paco``; or
    ``package.module:function``."""
    hidden_sizes: tuple[int, ...] = (64, 64, 64)
    """Hidden layer widths of both the actor and the critic MLP."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Hidden activation (tanh, as in CleanRL's PPO)."""
    task_id: bool | None = None
    """Append a one-hot task id (over the whole family) to every observation (``--task-id``); it applies to every
    policy of the run (theta_star, fine-tuning, the downstream group policies). None: the family's default
    (``TaskFamily.default_task_id``), resolved before config.json is written.

    Off for most families: theta_star is then a meta-initialisation, one policy for all tasks that adaptation specialises,
    as in the paper. A task id lets theta_star settle the conflicts between groups in task-specific weights, and the
    gradients at theta_star stop showing them: on the planted family (demo budget, N = 16384, 3 seeds) the groups
    were recovered at NMI 1.0 / 1.0 / 1.0 without a task id and 0.79 / 0.61 / 0.56 with one, and an early
    theta_star with a task id (20k steps) recovered them again (1.0 x 3). Turn it on where the tasks cannot be told
    apart from the observation and no single policy could serve them (Meta-World)."""
    num_modules: int = 2
    """Soft Modularization: modules per layer."""
    num_module_layers: int = 2
    """Soft Modularization: layers of modules."""
    num_encoders: int = 4
    """CARE: state encoders in the mixture."""
    num_parameter_sets: int = 5
    """PaCo: K, the shared parameter sets that each task's w_tau mixes."""
    paco_loss_threshold: float = 1e4
    """PaCo: a task whose mean PPO loss in a minibatch exceeds this drops out of that minibatch's loss, and its w_tau
    is reset. PPO's value loss is in squared return units: the default only catches divergence."""
