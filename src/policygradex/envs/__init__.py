"""Task families: what a task is, the built-in families, the registry and plug-ins, the multitask vector env.

A plug-in family needs only this package's public names::

    from policygradex.envs import Task, TaskFamily
"""

from policygradex.envs.base import EpisodeMetric, Task, TaskFamily, unseen_tasks
from policygradex.envs.registry import FAMILIES, load_family, register_family
from policygradex.envs.vector import MultiTaskVectorEnv

__all__ = ["FAMILIES", "EpisodeMetric", "MultiTaskVectorEnv", "Task", "TaskFamily", "load_family", "register_family",
           "unseen_tasks"]
