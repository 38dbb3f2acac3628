"""Helpers shared by the commands: the parser class (one-line errors, defaults in --help), argument types, the
job-launcher options, and the run configuration built from ``run``'s options."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from policygradex.common.launcher import LauncherConfig
from policygradex.common.errors import PolicyGradExError
from policygradex.nets.base import with_network
from policygradex.pipeline.config import RunConfig, apply_preset


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to every option whose help does not state its default already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise PolicyGradExError(f"{message} (see `{self.prog} --help`)")


def named_path(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, e.g. in_sample=runs/other/groups.json, got {text!r}")
    return name.strip(), path.strip()


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"values must be positive integers, got {text!r}")
    return values


def name_list(text: str) -> tuple[str, ...]:
    values = tuple(x.strip() for x in text.split(",") if x.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated names like softmod,care, got {text!r}")
    return values


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.001,0.01, got {text!r}") from None
    return values


def add_launcher_options(p: argparse.ArgumentParser, default: str = "process",
                         title: str = "job launcher (finished jobs are cached in RUN_DIR/jobs: rerun to resume)",
                         what: str = "trainings") -> None:
    g = p.add_argument_group(title)
    g.add_argument("--backend", choices=["sequential", "process", "ray"], default=default,
                   help=f"where {what} run: one by one, a local process pool or Ray (default: {default})")
    g.add_argument("--workers", type=int, help="parallel jobs for the process pool (default: CPU cores)")
    g.add_argument("--ray-address", help="Ray cluster address for --backend ray (default: a local Ray)")


def add_run_dir_command(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand on a finished run: RUN_DIR, then the caller's own options; an evaluation command ends with
    :func:`finish_evaluation_command`."""
    p = sub.add_parser(name, help=help)
    p.add_argument("run_dir", type=Path)
    return p


def finish_evaluation_command(p: argparse.ArgumentParser) -> None:
    """The options every evaluation command ends with: the jobs' base seed and the job launcher."""
    p.add_argument("--seed", type=int, default=0, help="base seed of the jobs")
    add_launcher_options(p)


def launcher_config(args: argparse.Namespace) -> LauncherConfig:
    if args.workers is not None and args.workers < 1:
        raise PolicyGradExError(f"--workers must be >= 1, got {args.workers}")
    if args.ray_address and args.backend != "ray":
        raise PolicyGradExError("--ray-address needs --backend ray")
    return LauncherConfig(backend=args.backend, workers=args.workers, ray_address=args.ray_address)


def read_weights(path: Path) -> tuple[np.ndarray, str | None]:
    """An n x r CSV of weight vectors, one per row, ``#`` comments allowed. A first row with a cell that is not a
    number is a header: then the columns whose every other cell is a number are read (a name column is skipped).
    Returns the weights and, with a header, a line saying which columns were read."""
    import csv

    def number(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    try:
        with open(path, newline="") as fh:
            lines = (line for line in fh if not line.lstrip().startswith("#"))
            rows = [[c.strip() for c in r] for r in csv.reader(lines)]
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyGradExError(f"--weights {path}: not a readable CSV ({exc})") from None
    rows = [r for r in rows if any(r)]
    header = rows[0] if rows and not all(number(c) for c in rows[0]) else None
    body = rows[1:] if header is not None else rows
    if not body or len({len(r) for r in body}) != 1 or (header is not None and len(header) != len(body[0])):
        raise PolicyGradExError(f"--weights {path}: not an n x r CSV of numbers (rows of different lengths, or none)")
    keep = [j for j in range(len(body[0])) if all(number(r[j]) for r in body)]
    if not keep or (header is None and len(keep) != len(body[0])):
        raise PolicyGradExError(f"--weights {path}: not an n x r CSV of numbers, one weight vector per row")
    W = np.array([[float(r[j]) for j in keep] for r in body], dtype=np.float64)
    note = None
    if header is not None:
        skipped = [header[j] for j in range(len(header)) if j not in keep]
        note = (f"--weights {path}: header row read; weights from columns {', '.join(header[j] for j in keep)}"
                + (f" (skipped: {', '.join(skipped)})" if skipped else ""))
    return W, note


def family_with_weights(family: str, path: Path) -> str:
    """``mo:ENV_ID`` with the weights of an n x r CSV (:func:`read_weights`) written in:
    ``mo:ENV_ID(weights=[[...], ...])``, so that config.json holds them. Says on stderr which columns a header named."""
    if not family.startswith("mo:") or "(" in family:
        raise PolicyGradExError("--weights goes with a family mo:ENV_ID (without parameters), e.g. "
                                "mo:mo-lunar-lander-v3")
    W, note = read_weights(path)
    if note is not None:
        print(note, file=sys.stderr)
    if W.size == 0 or not np.isfinite(W).all():
        raise PolicyGradExError(f"--weights {path}: expected finite numbers, one weight vector per row")
    return f"{family}(weights={[[float(x) for x in row] for row in W]})".replace(" ", "")


def default_out(args: argparse.Namespace) -> Path:
    """``run``'s --out, or its default ``runs/FAMILY-seedS``."""
    return args.out or Path("runs") / f"{Path(args.family.replace(':', '-')).name}-seed{args.seed}"


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if args.k is not None and args.k < 1:
        raise PolicyGradExError(f"--k must be >= 1, got {args.k}")
    family = family_with_weights(args.family, args.weights) if args.weights is not None else args.family
    cfg = apply_preset(RunConfig(family=family, seed=args.seed), args.preset)
    net, ppo, feat, sur, clu = cfg.network, cfg.ppo, cfg.features, cfg.surrogate, cfg.cluster
    if args.hidden is not None:
        net = replace(net, hidden_sizes=args.hidden)
    if args.network is not None:
        net = with_network(net, args.network)
    if args.task_id is not None:
        net = replace(net, task_id=args.task_id)
    if args.steps_per_task is not None:
        ppo = replace(ppo, steps_per_task=args.steps_per_task)
    if args.lr is not None:
        ppo = replace(ppo, learning_rate=args.lr)
    if getattr(args, "task_block", None) is not None:
        feat = replace(feat, task_block=args.task_block)
    if getattr(args, "tasks_per_iteration", None) is not None:
        ppo = replace(ppo, tasks_per_iteration=args.tasks_per_iteration or None)
    for attr, field_name in [("transitions", "transitions_per_task"), ("projection_dim", "projection_dim"),
                             ("advantage_normalization", "advantage_normalization"),
                             ("holdout_fraction", "holdout_fraction"), ("projection", "projection"),
                             ("store", "store"), ("baseline", "baseline"),
                             ("target_reliability", "target_reliability"),
                             ("max_transitions", "max_transitions_per_task"),
                             ("common_random_numbers", "common_random_numbers"),
                             ("expansion_points", "expansion_points"),
                             ("expansion_policy", "expansion_policy"), ("group_points", "group_points")]:
        if getattr(args, attr, None) is not None:
            feat = replace(feat, **{field_name: getattr(args, attr)})
    for attr, field_name in [("subset_size", "subset_size"), ("num_subsets", "num_subsets"), ("l2", "l2"),
                             ("evaluation", "evaluation"), ("surrogate", "method"),
                             ("curvature_rows", "curvature_rows"), ("curvature", "curvature")]:
        if getattr(args, attr, None) is not None:
            sur = replace(sur, **{field_name: getattr(args, attr)})
    for attr, field_name in [("k", "k"), ("lam", "lam"), ("affinity", "affinity"), ("solver", "solver"),
                             ("cluster_method", "method"), ("interaction", "interaction"),
                             ("bootstrap_method", "bootstrap_method"), ("point_weights", "point_weights")]:
        if getattr(args, attr, None) is not None:
            clu = replace(clu, **{field_name: getattr(args, attr)})
    return replace(cfg, network=net, ppo=ppo, features=feat, surrogate=sur, cluster=clu)


