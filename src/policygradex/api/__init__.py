"""The Python API: ``policygradex.run``, ``train``, ``evaluate``, ``load_policy`` (also importable from the package
root)."""

from policygradex.api.core import Policies, Result, TrainedPolicy, evaluate, load_policy, load_result, run, train

__all__ = ["Policies", "Result", "TrainedPolicy", "evaluate", "load_policy", "load_result", "run", "train"]
