"""The family registry: built-in families by name, plug-in families as ``package.module:function``, and
parameters as ``name(key=value,...)``. A new built-in family is a module in this package registered in FAMILIES."""

from __future__ import annotations

import ast
import importlib
import math
from collections.abc import Callable
from typing import Any

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import TaskFamily, validate_family
from policygradex.envs.classic import cartpole, lunarlander, lunarlander_continuous, pendulum
from policygradex.envs.highway import highway
from policygradex.envs.metaworld import mt10
from policygradex.envs.mo import mo_family


SUITE_KEYS = {"kind", "env", "sizes", "shuffle", "payment"}
"""Parameters that make ``planted`` a family of the planted suite (:mod:`.conflicts`) instead of the original one."""


def _planted(**kwargs: Any) -> TaskFamily:
    if SUITE_KEYS & set(kwargs):
        from policygradex.envs.conflicts import conflict_family

        if "orthogonal" in kwargs:
            raise PolicyGradExError("planted family: orthogonal applies only to the original family (no kind/env)")
        return conflict_family(**kwargs)
    from policygradex.envs.planted import planted

    return planted(**kwargs)


FAMILIES: dict[str, Callable[..., TaskFamily]] = {
    "cartpole": cartpole,
    "highway": highway,
    "lunarlander": lunarlander,
    "lunarlander-continuous": lunarlander_continuous,
    "mt10": mt10,
    "pendulum": pendulum,
    "planted": _planted,
}
"""Built-in families by name; a family with parameters is called as ``name(key=value,...)``, e.g.
``planted(n=12,groups=4,conflict=0.5)``. A family that needs an optional extra (``highway``) imports it only when
an environment is made, so that listing the families works without it."""


def register_family(name: str, factory: Callable[[], TaskFamily]) -> None:
    """Add a family to the registry (e.g. from a plugin package)."""
    FAMILIES[name] = factory


# ----------------------------------------------------------------------------------------------- loading
def parse_call(spec: str) -> tuple[str, dict[str, Any]]:
    """``name(key=value,...)`` -> (name, {key: value}) with Python literals as values (numbers, lists of numbers,
    quoted strings) or bare words (``kind=reward``: the string "reward"); a plain name -> (name, {})."""
    if not spec.endswith(")") or "(" not in spec:
        return spec, {}
    name, _, rest = spec[:-1].partition("(")
    usage = (f"family {spec!r}: expected name(key=value,...) with numbers, lists of numbers or words, e.g. "
             "planted(n=12,groups=4) or planted(kind=reward,env=lunarlander)")
    try:
        call = ast.parse(f"f({rest})", mode="eval").body
        assert isinstance(call, ast.Call) and not call.args and all(kw.arg for kw in call.keywords)
        kwargs = {str(kw.arg): kw.value.id if isinstance(kw.value, ast.Name) else ast.literal_eval(kw.value)
                  for kw in call.keywords}
    except (SyntaxError, ValueError, AssertionError):
        raise PolicyGradExError(usage) from None
    for value in kwargs.values():
        if isinstance(value, str):
            if value.lower() in ("nan", "inf", "infinity"):  # a number's name, not a word
                raise PolicyGradExError(usage)
            continue
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in _numbers(value)):
            raise PolicyGradExError(usage)
    return name.strip(), kwargs


def _numbers(value: Any) -> list[Any]:
    """The leaves of a (nested) list or tuple literal."""
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return [value]


def load_family(spec: str) -> TaskFamily:
    """A built-in family name, ``mo:ENV_ID`` (an MO-Gymnasium environment, :func:`~policygradex.envs.mo.mo_family`),
    or ``package.module:function`` returning a TaskFamily; spaces are validated."""
    if spec.startswith("mo:"):
        env_id, kwargs = parse_call(spec[len("mo:"):])
        try:
            family = mo_family(env_id, **kwargs)
        except TypeError as exc:
            raise PolicyGradExError(f"family {spec!r}: {exc}") from None
    elif ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PolicyGradExError(
                f"family {spec!r}: cannot import module {module_name!r} ({exc}); "
                "give an importable package.module:function"
            ) from None
        except Exception as exc:  # the module itself raised while it was imported
            raise PolicyGradExError(f"family {spec!r}: importing {module_name!r} raised "
                                    f"{type(exc).__name__}: {exc}") from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise PolicyGradExError(f"family {spec!r}: module {module_name!r} has no callable {attr!r}")
        try:
            family = factory()
        except PolicyGradExError:
            raise
        except Exception as exc:
            raise PolicyGradExError(f"family {spec!r}: {attr}() raised {type(exc).__name__}: {exc}") from None
        if not isinstance(family, TaskFamily):
            raise PolicyGradExError(f"family {spec!r}: {attr}() returned {type(family).__name__}, not a TaskFamily")
    elif (call := parse_call(spec))[0] in FAMILIES:
        name, kwargs = call
        try:
            family = FAMILIES[name](**kwargs)
        except TypeError as exc:  # a missing or unknown parameter
            raise PolicyGradExError(f"family {spec!r}: {exc}") from None
        except ValueError as exc:  # a word where a number belongs
            raise PolicyGradExError(f"family {spec!r}: {exc}; that parameter takes a number") from None
    else:
        raise PolicyGradExError(
            f"unknown family {spec!r}; built-in families: {', '.join(sorted(FAMILIES))} "
            "(or pass package.module:function returning a TaskFamily)"
        )
    validate_family(family)
    return family
