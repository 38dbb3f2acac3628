"""The ``policygradex`` command line: run, show, families, adapt.

Every user error is printed as one line ``policygradex: error: ...`` with exit status 2; Ctrl-C exits 130 and
the same command resumes from the finished stages.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from rich.console import Console
from rich.table import Table

from . import __version__
from .config import PRESETS, RunConfig, apply_preset, preset_summary
from .errors import PolicyGradExError
from .families import FAMILIES

if TYPE_CHECKING:
    from .launcher import LauncherConfig


class _Formatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to every option whose help does not state its default already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise PolicyGradExError(f"{message} (see `{self.prog} --help`)")


def _named_path(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, e.g. in_sample=runs/other/groups.json, got {text!r}")
    return name.strip(), path.strip()


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"values must be positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="policygradex", description="Which of my n RL tasks should be trained together? "
                     "PolicyGradEx: task affinity from projected policy gradients, then convex clustering.")
    parser.add_argument("--version", action="version", version=f"policygradex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run all stages on a task family (resumes an existing --out)")
    run.add_argument("family", help="built-in family (see `policygradex families`) or package.module:function")
    run.add_argument("--out", type=Path, help="run directory (default runs/FAMILY-seedS)")
    run.add_argument("--seed", type=int, default=0, help="master seed (default: 0)")
    run.add_argument("--threads", type=int, default=1,
                     help="torch / BLAS threads (default: 1: the same groups whatever OMP_NUM_THREADS is; 2 runs the "
                          "demo 1.3x faster on an idle 2-core machine but changes results in the last bits, which PPO "
                          "amplifies into other groups: see results/bench_threads.md)")
    run.add_argument("--preset", default="default", choices=sorted(PRESETS),
                     help=f"budget preset (default: default). {preset_summary()}")
    d = RunConfig()
    g = run.add_argument_group("clustering")
    g.add_argument("--k", type=int, help="fixed number of groups (default: chosen on a lambda grid)")
    g.add_argument("--lam", type=float, help="trace penalty lambda on the standardised affinity (default: chosen on a "
                                             "grid, or unused with --k)")
    g.add_argument("--affinity", choices=["subset", "per_target"],
                   help=f"eq. 5 over subsets or per-target (default: {d.cluster.affinity})")
    g.add_argument("--solver", choices=["SCS", "CLARABEL"], help=f"SDP solver (default: {d.cluster.solver})")
    g.add_argument("--interaction", choices=["subsets", "matrix"],
                   help="remove per-task effects from f^ over the subsets before eq. 5, or from U after it (the "
                        f"paper's eq. 5 as written) (default: {d.cluster.interaction})")
    g.add_argument("--cluster-method", choices=["auto", "exact", "sdp", "exhaustive"],
                   help="exact search over all partitions (n <= 12), SDP + rounding + local search, or auto: exact "
                        f"for n <= 12, SDP above; exhaustive = exact (default: {d.cluster.method})")
    g = run.add_argument_group("meta-training")
    g.add_argument("--steps-per-task", type=int,
                   help=f"PPO environment steps per task (default: the preset's; {d.ppo.steps_per_task:,} without one)")
    g.add_argument("--hidden", type=_int_list,
                   help=f"hidden widths (default: {','.join(map(str, d.network.hidden_sizes))}, a 4-layer MLP)")
    g.add_argument("--task-id", action=argparse.BooleanOptionalAction, default=None,
                   help="append a one-hot task id to every policy's observations (default: off; see README)")
    g.add_argument("--lr", type=float, help=f"PPO learning rate (default: {d.ppo.learning_rate:g})")
    g = run.add_argument_group("features and surrogate")
    g.add_argument("--transitions", type=int,
                   help=f"N: transitions per task for gradient features (default: {d.features.transitions_per_task:,})")
    g.add_argument("--projection-dim", type=int, help=f"d: projection dimension (default: {d.features.projection_dim})")
    g.add_argument("--advantage-normalization", choices=["per_task", "batch", "none"],
                   help=f"scaling of advantages before labels and weights (default: "
                        f"{d.features.advantage_normalization})")
    g.add_argument("--holdout-fraction", type=float,
                   help=f"share of transitions held out for f^ (default: {d.features.holdout_fraction:g})")
    g.add_argument("--subset-size", type=int, help="alpha: tasks per subset (default: min(5, n // 2))")
    g.add_argument("--num-subsets", type=int, help="m: distinct subsets (default: 3 n^2, or all C(n, alpha) subsets "
                                                   "when fewer; topped up until every pair is covered)")
    g.add_argument("--l2", type=float, help=f"L2 strength of the surrogate logistic regression (default: {d.surrogate.l2:g})")
    g.add_argument("--evaluation", choices=["in_sample", "held_out"],
                   help=f"f^ on the fitting transitions (the paper's L^) or on held-out ones (default: "
                        f"{d.surrogate.evaluation})")

    sub.add_parser("families", help="list the built-in task families")

    show = sub.add_parser("show", help="print a run's groups and affinity matrix")
    show.add_argument("run_dir", type=Path)

    adapt = sub.add_parser("adapt", help="write theta^(S) = theta_star + P v_S for one sampled subset")
    adapt.add_argument("run_dir", type=Path)
    adapt.add_argument("--subset", type=int, required=True, help="index of the subset in subsets.json")
    adapt.add_argument("--output", type=Path, required=True, help="file for the adapted state_dict (.pt)")
    _add_evaluation_commands(sub)
    return parser


def _float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.001,0.01, got {text!r}") from None
    return values


def _add_launcher_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("job launcher (finished jobs are cached in RUN_DIR/jobs: rerun to resume)")
    g.add_argument("--backend", choices=["sequential", "process", "ray"], default="process",
                   help="where trainings run: one by one, a local process pool (default) or Ray")
    g.add_argument("--workers", type=int, help="parallel jobs for the process pool (default: CPU cores)")
    g.add_argument("--ray-address", help="Ray cluster address for --backend ray (default: a local Ray)")


def _add_evaluation_commands(sub: argparse._SubParsersAction) -> None:
    cl = sub.add_parser("check-linear", help="first-order approximation error of log pi near theta_star (Table 1)")
    cl.add_argument("run_dir", type=Path)
    cl.add_argument("--num-subsets", type=int, default=10, help="random subsets fine-tuned (default 10)")
    cl.add_argument("--subset-size", type=int, default=5, help="tasks per subset (default 5)")
    cl.add_argument("--distances", type=_float_list, default=(0.001, 0.005, 0.01, 0.05),
                    help="relative parameter distances (default 0.001,0.005,0.01,0.05)")
    cl.add_argument("--max-steps-per-task", type=int, default=50_000, help="fine-tuning budget cap per task")
    cl.add_argument("--lr", type=float, help="fine-tuning learning rate (default: the run's)")
    cl.add_argument("--seed", type=int, default=0, help="base seed of the jobs")
    _add_launcher_options(cl)

    gt = sub.add_parser("ground-truth", help="real fine-tuning on the surrogate's subsets: NMI, Spearman, speedup (Table 3)")
    gt.add_argument("run_dir", type=Path)
    gt.add_argument("--steps-per-task", type=int, default=20_000, help="fine-tuning budget per task (default 20000)")
    gt.add_argument("--lr", type=float, help="fine-tuning learning rate (default: the run's)")
    gt.add_argument("--max-subsets", type=int, help="train only the first M subsets (default: all the surrogate used)")
    gt.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per task (default 10)")
    gt.add_argument("--seeds-per-subset", type=int, default=1, help="fine-tunings per subset, averaged (default 1)")
    gt.add_argument("--target", choices=["return", "ppo", "logistic"], default="return",
                    help="real f(S) behind U_true: mean return (default), negative PPO loss, or logistic objective")
    gt.add_argument("--seed", type=int, default=0, help="base seed of the jobs")
    _add_launcher_options(gt)

    cp = sub.add_parser("compare", help="train one policy per group for several groupings, same budget (Table 2)")
    cp.add_argument("run_dir", type=Path)
    cp.add_argument("--seeds", type=int, default=5, help="seeds per grouping (default 5)")
    cp.add_argument("--steps-per-task", type=int, help="environment steps per task (default: the run's meta-training budget)")
    cp.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per task (default 10)")
    cp.add_argument("--ablate-k", type=_int_list, default=(), help="also PolicyGradEx groups with these k, e.g. 1,2,3,4,5")
    cp.add_argument("--ablate-d", type=_int_list, default=(), help="also groups from projections of these d, e.g. 100,200,400,1000")
    cp.add_argument("--groups", action="append", default=[], metavar="NAME=PATH", type=_named_path,
                    help="also train this grouping: a groups.json of another run, or a JSON list of lists of task "
                         "indices (repeatable)")
    cp.add_argument("--single", action="store_true",
                    help="also train every task alone, and warn where one multitask policy falls far below it")
    cp.add_argument("--seed", type=int, default=0, help="base seed of the jobs")
    _add_launcher_options(cp)

    st = sub.add_parser("stability", help="would the groups come out the same from fresh transitions? "
                                          "(U and groups over resampled transitions, co-clustering, pooled groups)")
    st.add_argument("run_dir", type=Path)
    st.add_argument("--resamples", type=int, default=5, help="fresh transition samples (default 5)")
    st.add_argument("--transitions", type=int, help="transitions per task in each resample (default: the run's N)")
    st.add_argument("--seed", type=int, default=0, help="base seed of the jobs")
    _add_launcher_options(st)

    hs = sub.add_parser("hessian", help="Hessian trace, generalization error and the Theorem 1 bound over training (Fig. 2)")
    hs.add_argument("run_dir", type=Path)
    hs.add_argument("--iterations", type=int, default=100, help="PPO iterations per configuration (default 100)")
    hs.add_argument("--envs-per-task", type=int, default=4, help="sub-environments per task (default 4)")
    hs.add_argument("--num-steps", type=int, default=512, help="steps per sub-environment per iteration (default 512)")
    hs.add_argument("--every", type=int, default=10, help="measure every this many iterations (default 10)")
    hs.add_argument("--probes", type=int, default=60, help="Hessian-vector products per trace estimate (default 60)")
    hs.add_argument("--estimator", choices=["hutchpp", "hutchinson"], default="hutchpp")
    hs.add_argument("--slq-probes", type=int, default=6, help="Lanczos-quadrature probes for tr(H+) (default 6)")
    hs.add_argument("--slq-steps", type=int, default=10, help="Lanczos steps per probe for tr(H+) (default 10)")
    hs.add_argument("--block-len", type=int, default=64,
                    help="steps per block for the batch-means standard error of the generalization error (default 64)")
    hs.add_argument("--quad-steps", type=int, default=30,
                    help="Lanczos steps for the weighted Hessians W^T H+ W and (W-W0)^T H+ (W-W0) (default 30)")
    hs.add_argument("--bound-measure", choices=["weighted", "weighted_from_init", "trace"], default="weighted",
                    help="the H in the bound sqrt(C H / n): W^T H+ W (Theorem 1's definition, default), "
                         "(W-W0)^T H+ (W-W0) or tr(H+); all three are reported")
    hs.add_argument("--no-eigenvalue", action="store_true", help="skip the top eigenvalue (Lanczos)")
    hs.add_argument("--alphas", type=_int_list, default=(1, 2, 3, 5, 10), help="subset sizes for the alpha sweep")
    hs.add_argument("--init", choices=["scratch", "theta_star"], default="scratch")
    hs.add_argument("--seed", type=int, default=0, help="base seed of the jobs")
    _add_launcher_options(hs)


def _launcher(args: argparse.Namespace) -> "LauncherConfig":
    from .launcher import LauncherConfig

    if args.workers is not None and args.workers < 1:
        raise PolicyGradExError(f"--workers must be >= 1, got {args.workers}")
    if args.ray_address and args.backend != "ray":
        raise PolicyGradExError("--ray-address needs --backend ray")
    return LauncherConfig(backend=args.backend, workers=args.workers, ray_address=args.ray_address)


def _evaluate(args: argparse.Namespace, console: Console, run: Any, markdown: Any, cfg: Any, name: str) -> None:
    """Run an evaluation command on RUN_DIR, print its Markdown table and where it was written."""
    record = run(args.run_dir, cfg, _launcher(args), console)
    print(markdown(record))
    console.print(f"-> {args.run_dir}/{name}/{name}.md")


def cmd_check_linear(args: argparse.Namespace, console: Console) -> None:
    from .check_linear import CheckLinearConfig, check_linear, markdown

    cc = CheckLinearConfig(num_subsets=args.num_subsets, subset_size=args.subset_size, distances=args.distances,
                           max_steps_per_task=args.max_steps_per_task, learning_rate=args.lr, seed=args.seed)
    _evaluate(args, console, check_linear, markdown, cc, "check_linear")


def cmd_ground_truth(args: argparse.Namespace, console: Console) -> None:
    from .ground_truth import GroundTruthConfig, ground_truth, markdown

    gt = GroundTruthConfig(steps_per_task=args.steps_per_task, learning_rate=args.lr, max_subsets=args.max_subsets,
                           eval_episodes=args.eval_episodes, target=args.target, seed=args.seed,
                           seeds_per_subset=args.seeds_per_subset)
    _evaluate(args, console, ground_truth, markdown, gt, "ground_truth")


def cmd_compare(args: argparse.Namespace, console: Console) -> None:
    from .compare import CompareConfig, compare, markdown

    cc = CompareConfig(seeds=args.seeds, steps_per_task=args.steps_per_task, eval_episodes=args.eval_episodes,
                       ablate_k=args.ablate_k, ablate_d=args.ablate_d, extra_groups=tuple(args.groups),
                       single=args.single, seed=args.seed)
    _evaluate(args, console, compare, markdown, cc, "compare")


def cmd_stability(args: argparse.Namespace, console: Console) -> None:
    from .stability import StabilityConfig, markdown, stability

    sc = StabilityConfig(resamples=args.resamples, transitions_per_task=args.transitions, seed=args.seed)
    _evaluate(args, console, stability, markdown, sc, "stability")


def cmd_hessian(args: argparse.Namespace, console: Console) -> None:
    from .generalization import HessianConfig, hessian_analysis, markdown

    hc = HessianConfig(iterations=args.iterations, envs_per_task=args.envs_per_task, num_steps=args.num_steps,
                       every=args.every, probes=args.probes, estimator=args.estimator,
                       slq_probes=args.slq_probes, slq_steps=args.slq_steps, quad_steps=args.quad_steps,
                       block_len=args.block_len, bound_measure=args.bound_measure, eigenvalue=not args.no_eigenvalue,
                       alphas=args.alphas, init=args.init, seed=args.seed)
    _evaluate(args, console, hessian_analysis, markdown, hc, "hessian")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    cfg = apply_preset(RunConfig(family=args.family, seed=args.seed), args.preset)
    net, ppo, feat, sur, clu = cfg.network, cfg.ppo, cfg.features, cfg.surrogate, cfg.cluster
    if args.hidden is not None:
        net = replace(net, hidden_sizes=args.hidden)
    if args.task_id is not None:
        net = replace(net, task_id=args.task_id)
    if args.steps_per_task is not None:
        ppo = replace(ppo, steps_per_task=args.steps_per_task)
    if args.lr is not None:
        ppo = replace(ppo, learning_rate=args.lr)
    for attr, field_name in [("transitions", "transitions_per_task"), ("projection_dim", "projection_dim"),
                             ("advantage_normalization", "advantage_normalization"),
                             ("holdout_fraction", "holdout_fraction")]:
        if getattr(args, attr) is not None:
            feat = replace(feat, **{field_name: getattr(args, attr)})
    for attr in ("subset_size", "num_subsets", "l2", "evaluation"):
        if getattr(args, attr) is not None:
            sur = replace(sur, **{attr: getattr(args, attr)})
    for attr, field_name in [("k", "k"), ("lam", "lam"), ("affinity", "affinity"), ("solver", "solver"),
                             ("cluster_method", "method"), ("interaction", "interaction")]:
        if getattr(args, attr) is not None:
            clu = replace(clu, **{field_name: getattr(args, attr)})
    return replace(cfg, network=net, ppo=ppo, features=feat, surrogate=sur, cluster=clu)


def cmd_run(args: argparse.Namespace, console: Console) -> None:
    from .pipeline import run_pipeline

    if args.k is not None and args.k < 1:
        raise PolicyGradExError(f"--k must be >= 1, got {args.k}")
    cfg = config_from_args(args)
    out = args.out or Path("runs") / f"{Path(args.family.replace(':', '-')).name}-seed{args.seed}"
    st = run_pipeline(cfg, out, console, threads=args.threads)
    # the result goes to stdout (progress and logs went to stderr)
    print(f"{st.family.name}: {len(st.groups['groups'])} groups -> {out}/groups.json")
    for gi, grp in enumerate(st.groups["groups"]):
        print(f"  group {gi + 1}: {', '.join(grp)}")
    console.print(f"report: {out}/report.md   heatmap: {out}/affinity.png")


def cmd_families(console: Console) -> None:
    table = Table(title="built-in task families")
    table.add_column("name")
    table.add_column("tasks")
    table.add_column("description")
    for name, factory in sorted(FAMILIES.items()):
        fam = factory()
        table.add_row(name, str(fam.n), fam.description)
    console.print(table)
    console.print("Your own: `policygradex run package.module:function`, a function returning a "
                  "policygradex.families.TaskFamily; parameters: `policygradex run 'planted(n=12,groups=4)'`")


def cmd_show(args: argparse.Namespace, console: Console) -> None:
    from .clustering import standardize
    from .pipeline import load_run

    record, groups, U = load_run(args.run_dir)
    names = [t["name"] for t in record["family"]["tasks"]]
    if U.shape != (len(names), len(names)):
        raise PolicyGradExError(f"{args.run_dir}/affinity.npy has shape {U.shape}, expected {len(names)} tasks")
    print(f"{record['family']['name']} ({args.run_dir}): k = {groups['k']}")
    for gi, grp in enumerate(groups["groups"]):
        print(f"  group {gi + 1}: {', '.join(grp)}")
    conf = groups.get("confidence")
    if conf:
        print(textwrap.fill(f"How sure: {conf['verdict']}", width=78, subsequent_indent="  "))
        for gi, j in enumerate(conf.get("group_jaccard") or []):
            print(f"  group {gi + 1} stays together in {j:.0%} (Jaccard, {conf['reps']} resamples of the subsets)")
    print()
    print(matrix_text(standardize(U), names, [i for g in groups["group_indices"] for i in g]))


def matrix_text(U: np.ndarray, names: list[str], order: list[int], width: int = 80) -> str:
    """The standardised U (what is clustered) ordered by group as plain text that fits ``width`` columns: task
    names abbreviated to T1.. with a legend, 2 decimals, and the columns wrapped into blocks when they still do not
    fit. Nothing is truncated."""
    n = len(names)
    short = [f"T{i + 1}" for i in range(n)]
    cells = [[f"{U[i, j]:.2f}" for j in order] for i in order]
    cw = max(len(c) for row in cells for c in row) + 1
    cw = max(cw, max(len(s) for s in short) + 1)
    lw = max(len(short[i]) for i in order) + 1
    per_block = max(1, (width - lw) // cw)
    lines = textwrap.wrap("affinity U in standard deviations, as clustered (rows and columns ordered by group; "
                          "affinity.csv has the raw values):", width=width)
    for lo in range(0, n, per_block):
        cols = list(range(lo, min(n, lo + per_block)))
        lines.append(" " * lw + "".join(short[order[c]].rjust(cw) for c in cols))
        for r, i in enumerate(order):
            lines.append(short[i].ljust(lw) + "".join(cells[r][c].rjust(cw) for c in cols))
        lines.append("")
    legend = ", ".join(f"{short[i]} = {names[i]}" for i in range(n))
    lines.append(textwrap.fill("tasks: " + legend, width=width))
    return "\n".join(lines)


def cmd_adapt(args: argparse.Namespace, console: Console) -> None:
    import torch

    from .artifacts import atomic_torch_save, load_json, load_npy, load_torch
    from .families import MultiTaskVectorEnv, load_family
    from .networks import flat_params, make_network
    from .pipeline import RunDir, projection_for
    from .surrogate import reconstruct_theta, relative_distance

    rd = RunDir(args.run_dir)
    if args.output.is_dir():
        raise PolicyGradExError(f"--output {args.output} is a directory; give a file name such as theta_0.pt")
    for p in (rd.config, rd.theta_star, rd.surrogate_v):
        if not p.exists():
            raise PolicyGradExError(f"{p} is missing; finish the run first (`policygradex run ... --out {rd.path}`)")
    cfg = RunConfig.from_dict(load_json(rd.config)["config"])
    V = load_npy(rd.surrogate_v)
    if not 0 <= args.subset < len(V):
        raise PolicyGradExError(f"--subset {args.subset} out of range: the run has {len(V)} subsets (0..{len(V) - 1})")
    family = load_family(cfg.family)
    probe = MultiTaskVectorEnv(family, [0], 1, 0, cfg.network.task_id)
    model = make_network(probe.obs_dim, probe.single_action_space, cfg.network)
    probe.close()
    model.load_state_dict(load_torch(rd.theta_star)["state_dict"])
    names = model.policy_parameter_names()
    theta_star = flat_params(model, names)
    theta = reconstruct_theta(theta_star, projection_for(cfg, model), V[args.subset])
    state = model.state_dict()
    offset = 0
    for name in names:
        size = state[name].numel()
        state[name] = theta[offset : offset + size].reshape(state[name].shape).clone()
        offset += size
    atomic_torch_save({"state_dict": state}, args.output)
    subsets = load_json(rd.subsets)["subsets"]
    console.print(f"theta^(S) for subset {args.subset} {subsets[args.subset]['task_names']} -> {args.output} "
                  f"(||theta - theta_star|| / ||theta_star|| = {relative_distance(theta_star, theta):.3%})")


COMMANDS = {"run": cmd_run, "adapt": cmd_adapt, "check-linear": cmd_check_linear, "ground-truth": cmd_ground_truth,
            "compare": cmd_compare, "hessian": cmd_hessian, "stability": cmd_stability}


def main(argv: list[str] | None = None) -> int:
    console = Console()
    err = Console(stderr=True)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "families":
            cmd_families(console)
        elif args.command == "show":
            cmd_show(args, console)
        else:  # long-running commands report progress on stderr and keep stdout for results
            COMMANDS[args.command](args, err)
        return 0
    except PolicyGradExError as exc:
        print(f"policygradex: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be read or written: the environment, not a bug
        where = f": {exc.filename}" if exc.filename else ""
        print(f"policygradex: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("policygradex: interrupted; finished stages and jobs are saved, rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
