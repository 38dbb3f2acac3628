"""policygradex: which of my n RL tasks should be trained together? (PolicyGradEx, AAAI 2026).

The Python API (``policygradex.run``, ``train``, ``evaluate``, ``load_policy``, ``load_result``) lives in
:mod:`policygradex.api` and is imported on first use, so that ``import policygradex`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = ("Policies", "Result", "TrainedPolicy", "evaluate", "load_policy", "load_result", "run", "train")
__all__ = ["__version__", *_API]

if TYPE_CHECKING:
    from policygradex.api import Policies, Result, TrainedPolicy, evaluate, load_policy, load_result, run, train


def __getattr__(name: str) -> Any:
    if name in _API:
        import policygradex.api

        return getattr(policygradex.api, name)
    raise AttributeError(f"module 'policygradex' has no attribute {name!r}")
