"""A trained policy as one file that loads without its run directory, and acts in the Stable-Baselines3 way.

``policy.pt`` (:func:`save_policy`) holds the network's weights and everything needed to rebuild it: the
:class:`~policygradex.nets.config.NetworkConfig`, the observation width (without the task id), the action space, the
width of the one-hot task id, the family's spec and task names, and the card (tasks trained on, budget, seed,
versions, returns). It contains tensors and plain Python values only, so :func:`load_policy` reads it with
``torch.load(weights_only=True)``: loading a policy file never runs code from it.

``policy.predict(obs, task=None, deterministic=True)`` takes observations as the task's environment returns them
(one, or a batch), appends the task id when the policy reads one, and returns actions the environment accepts (a
Box action is clipped to its bounds). As Stable-Baselines3's ``predict`` it is deterministic by default (the most
likely discrete action, the Gaussian's mean); unlike it, it returns the action alone: these policies keep no
recurrent state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from policygradex.common.artifacts import atomic_torch_save
from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import TaskFamily
from policygradex.nets.base import make_network
from policygradex.nets.config import NetworkConfig
from policygradex.rl.evaluate import policy_action
from policygradex.rl.rollout import env_action

FORMAT = 1
"""Version of the policy file's layout; :func:`load_policy` refuses a newer one."""


def space_record(space: gym.Space) -> dict[str, Any]:
    """An action space as plain values (what :func:`space_from_record` rebuilds)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "box", "low": space.low.tolist(), "high": space.high.tolist(), "dtype": str(space.dtype)}
    raise PolicyGradExError(f"unsupported action space {space}")


def space_from_record(record: dict[str, Any]) -> gym.Space:
    if record["type"] == "discrete":
        return gym.spaces.Discrete(int(record["n"]))
    low = np.asarray(record["low"], dtype=record["dtype"])
    return gym.spaces.Box(low=low, high=np.asarray(record["high"], dtype=record["dtype"]), dtype=record["dtype"])


def save_policy(path: Path, model: nn.Module, network: NetworkConfig, family_spec: str, family: TaskFamily,
                task_ids: Sequence[int], obs_dim: int, action_space: gym.Space, card: dict[str, Any]) -> None:
    """Write ``model`` (built by ``make_network`` from ``network``, trained on the family's ``task_ids``) as a policy
    file, atomically.

    ``obs_dim``: the observation width without the task id; the task id, when ``network.task_id``, is one-hot over
    the whole family (``family.n`` entries). ``card``: plain values describing the policy (JSON-able)."""
    atomic_torch_save({
        "format": FORMAT,
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "network": {**asdict(network), "hidden_sizes": list(network.hidden_sizes)},
        "obs_dim": int(obs_dim),
        "task_dim": family.n if network.task_id else 0,
        "action_space": space_record(action_space),
        "family": family_spec,
        "task_names": family.task_names,
        "task_ids": [int(t) for t in task_ids],
        "card": card,
    }, path)


class SavedPolicy:
    """A loaded policy: ``predict`` acts, ``model`` is the torch network, ``card`` describes how it was trained."""

    def __init__(self, blob: dict[str, Any], path: Path) -> None:
        self.path = path
        net = dict(blob["network"])
        net["hidden_sizes"] = tuple(net["hidden_sizes"])
        self.network = NetworkConfig(**net)
        self.obs_dim: int = int(blob["obs_dim"])
        """Width of the observations ``predict`` takes (the environment's, without the task id)."""
        self.task_dim: int = int(blob["task_dim"])
        """Width of the one-hot task id the network reads (0: it reads none, and ``task`` is ignored)."""
        self.action_space = space_from_record(blob["action_space"])
        self.family_spec: str = blob["family"]
        """The family as ``policygradex run`` was given it (``cartpole``, ``mo:...``, ``package.module:function``)."""
        self.family_task_names: list[str] = list(blob["task_names"])
        self.task_ids: list[int] = [int(t) for t in blob["task_ids"]]
        """Family indices of the tasks the policy was trained on."""
        self.card: dict[str, Any] = dict(blob["card"])
        self.model = make_network(self.obs_dim + self.task_dim, self.action_space, self.network, self.task_dim)
        try:
            self.model.load_state_dict(blob["state_dict"])
        except RuntimeError as exc:
            raise PolicyGradExError(f"{path}: the weights do not fit the network it names ({exc})") from None
        self.model.eval()

    @property
    def tasks(self) -> list[str]:
        """Names of the tasks the policy was trained on."""
        return [self.family_task_names[i] for i in self.task_ids]

    def task_index(self, task: int | str) -> int:
        """The family index of a task given by index or name."""
        if isinstance(task, (str, np.str_)):
            if task not in self.family_task_names:
                raise PolicyGradExError(f"unknown task {task!r}; this policy's family has "
                                        f"{', '.join(self.family_task_names)}")
            return self.family_task_names.index(str(task))
        index = int(task)
        if not 0 <= index < len(self.family_task_names):
            raise PolicyGradExError(f"task {index} is out of range: the family has {len(self.family_task_names)} "
                                    "tasks")
        return index

    def predict(self, obs: Any, task: int | str | Sequence[int | str] | None = None,
                deterministic: bool = True) -> np.ndarray:
        """Action(s) for one observation ``(obs_dim,)`` or a batch ``(B, obs_dim)``, as numpy.

        ``task`` (a family index or task name, or one per row of a batch) is needed when the policy reads a task id
        (``self.task_dim > 0``) and ignored otherwise. ``deterministic``: the most likely action (default, as in
        Stable-Baselines3); False samples from the policy (``torch.manual_seed`` makes it repeatable)."""
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim:
            raise PolicyGradExError(f"predict: expected an observation of shape ({self.obs_dim},) or a batch "
                                    f"(B, {self.obs_dim}), got {x.shape}")
        x = x.reshape(-1, self.obs_dim)
        if self.task_dim:
            if task is None:
                raise PolicyGradExError(f"predict: this policy reads the task id; pass task= (one of "
                                        f"{', '.join(self.tasks)}, by name or family index)")
            tasks = [task] if isinstance(task, (int, str, np.integer, np.str_)) else list(task)
            if len(tasks) not in (1, len(x)):
                raise PolicyGradExError(f"predict: {len(tasks)} tasks for a batch of {len(x)} observations")
            onehot = np.eye(self.task_dim, dtype=np.float32)[[self.task_index(t) for t in tasks]]
            x = np.concatenate([x, np.broadcast_to(onehot, (len(x), self.task_dim))], axis=1)
        with torch.no_grad():
            action = env_action(policy_action(self.model, torch.as_tensor(x), deterministic), self.action_space)
        return action[0] if single else action

    def make_env(self, task: int | str | None = None) -> gym.Env:
        """A fresh environment of one of the family's tasks (default: the first task the policy was trained on);
        the family must be importable here (a built-in family, ``mo:...``, or the user's ``package.module``)."""
        from policygradex.envs.registry import load_family

        family = load_family(self.family_spec)
        return family.tasks[self.task_index(self.task_ids[0] if task is None else task)].make_env()

    def __repr__(self) -> str:
        return (f"SavedPolicy({self.network.name}, tasks={self.tasks}, family={self.family_spec!r}, "
                f"obs_dim={self.obs_dim}, task_dim={self.task_dim}, action_space={self.action_space})")


def load_policy(path: str | Path) -> SavedPolicy:
    """Load a policy written by ``policygradex train`` (``.../policy.pt``, or the directory that holds it); no run
    directory is needed."""
    path = Path(path)
    if path.is_dir():
        path = path / "policy.pt"
    if not path.is_file():
        raise PolicyGradExError(f"{path} is not a policy file; give DIR/policies/group-G/seed-S/policy.pt (what "
                                "`policygradex train DIR` writes) or its directory")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        first = (str(exc).strip().splitlines() or [""])[0]
        raise PolicyGradExError(f"{path} is not a readable policy file ({type(exc).__name__}: {first})") from None
    if not isinstance(blob, dict) or "state_dict" not in blob or "format" not in blob:
        raise PolicyGradExError(f"{path} is not a policygradex policy file")
    if blob["format"] > FORMAT:
        raise PolicyGradExError(f"{path} has policy file format {blob['format']}; this policygradex reads up to "
                                f"{FORMAT}: upgrade it")
    return SavedPolicy(blob, path)
