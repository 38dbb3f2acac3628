"""The family registry: built-in families by name, plug-in families as ``package.module:function``, and
parameters as ``name(key=value,...)``. A new built-in family is a module in this package registered in FAMILIES."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import TaskFamily, validate_family
from policygradex.envs.classic import cartpole, lunarlander, lunarlander_continuous, pendulum


def _planted(**kwargs: Any) -> TaskFamily:
    from policygradex.envs.planted import planted

    return planted(**kwargs)


FAMILIES: dict[str, Callable[..., TaskFamily]] = {
    "cartpole": cartpole,
    "lunarlander": lunarlander,
    "lunarlander-continuous": lunarlander_continuous,
    "pendulum": pendulum,
    "planted": _planted,
}
"""Built-in families by name; a family with parameters is called as ``name(key=value,...)``, e.g.
``planted(n=12,groups=4,conflict=0.5)``. Future families (highway, metaworld-mt10) register here."""


def register_family(name: str, factory: Callable[[], TaskFamily]) -> None:
    """Add a family to the registry (e.g. from a plugin package)."""
    FAMILIES[name] = factory


# ----------------------------------------------------------------------------------------------- loading
def parse_call(spec: str) -> tuple[str, dict[str, Any]]:
    """``name(key=value,...)`` -> (name, {key: int or float}); a plain name -> (name, {})."""
    if not spec.endswith(")") or "(" not in spec:
        return spec, {}
    name, _, rest = spec[:-1].partition("(")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not key.strip() or not math.isfinite(number):
            raise PolicyGradExError(f"family {spec!r}: expected name(key=number,...), e.g. planted(n=12,groups=4)")
        kwargs[key.strip()] = int(number) if number.is_integer() and "." not in value else number
    return name.strip(), kwargs


def load_family(spec: str) -> TaskFamily:
    """A built-in family name, or ``package.module:function`` returning a TaskFamily; spaces are validated."""
    if ":" in spec:
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
        except TypeError as exc:
            raise PolicyGradExError(f"family {spec!r}: {exc}") from None
    else:
        raise PolicyGradExError(
            f"unknown family {spec!r}; built-in families: {', '.join(sorted(FAMILIES))} "
            "(or pass package.module:function returning a TaskFamily)"
        )
    validate_family(family)
    return family
