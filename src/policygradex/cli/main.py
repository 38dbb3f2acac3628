"""The ``policygradex`` command line: run, families, show, adapt, check-linear, ground-truth, compare, train,
evaluate, meta, stability, hessian (``cli/parser.py`` holds their options).

Every user error is printed as one line ``policygradex: error: ...`` with exit status 2; Ctrl-C exits 130 and
the same command resumes from the finished stages.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from policygradex.cli.options import config_from_args, default_out, launcher_config
from policygradex.cli.parser import build_parser
from policygradex.common.errors import PolicyGradExError
from policygradex.common.signals import end_by_default
from policygradex.envs.registry import FAMILIES


def _evaluate(args: argparse.Namespace, console: Console, run: Any, markdown: Any, cfg: Any, name: str) -> None:
    """Run an evaluation command on RUN_DIR, print its Markdown table and where it was written."""
    record = run(args.run_dir, cfg, launcher_config(args), console)
    print(markdown(record))
    console.print(f"-> {args.run_dir}/{name}/{name}.md")


def cmd_check_linear(args: argparse.Namespace, console: Console) -> None:
    from policygradex.analysis.check_linear import CheckLinearConfig, check_linear, markdown

    cc = CheckLinearConfig(num_subsets=args.num_subsets, subset_size=args.subset_size, distances=args.distances,
                           max_steps_per_task=args.max_steps_per_task, learning_rate=args.lr, seed=args.seed)
    _evaluate(args, console, check_linear, markdown, cc, "check_linear")


def cmd_ground_truth(args: argparse.Namespace, console: Console) -> None:
    from policygradex.analysis.ground_truth import GroundTruthConfig, ground_truth, markdown

    gt = GroundTruthConfig(steps_per_task=args.steps_per_task, learning_rate=args.lr, max_subsets=args.max_subsets,
                           eval_episodes=args.eval_episodes, target=args.target, seed=args.seed,
                           seeds_per_subset=args.seeds_per_subset)
    _evaluate(args, console, ground_truth, markdown, gt, "ground_truth")


def cmd_compare(args: argparse.Namespace, console: Console) -> None:
    from policygradex.analysis.compare import CompareConfig, compare, markdown

    cc = CompareConfig(seeds=args.seeds, steps_per_task=args.steps_per_task, eval_episodes=args.eval_episodes,
                       ablate_k=args.ablate_k, ablate_d=args.ablate_d, extra_groups=tuple(args.groups),
                       single=args.single, group_network=args.group_network, network_rows=args.network_rows,
                       seed=args.seed, trainings_from=tuple(str(r) for r in args.trainings_from))
    _evaluate(args, console, compare, markdown, cc, "compare")


def cmd_train(args: argparse.Namespace, console: Console) -> None:
    from policygradex.analysis.train import TrainConfig, markdown, train_policies

    tc = TrainConfig(groups_file=None if args.groups is None else str(args.groups), network=args.network,
                     steps_per_task=args.steps_per_task, seeds=args.seeds, eval_episodes=args.eval_episodes,
                     deterministic=not args.stochastic, out=None if args.out is None else str(args.out),
                     seed=args.seed)
    record = train_policies(args.run_dir, tc, launcher_config(args), console)
    print(markdown(record))
    first = record["policies"][0]["path"]
    console.print(f"-> {record['out']}/train.md; load one with policygradex.load_policy(\"{first}\")")


def cmd_evaluate(args: argparse.Namespace, console: Console) -> None:
    from policygradex.analysis.evaluate_policy import EvaluateConfig, evaluate_policy, markdown

    ec = EvaluateConfig(episodes=args.episodes, tasks=tuple(args.tasks), deterministic=not args.stochastic,
                        seed=args.seed, video=None if args.video is None else str(args.video),
                        video_episodes=args.video_episodes)
    print(markdown(evaluate_policy(args.policy, ec)))


def cmd_meta(args: argparse.Namespace, console: Console) -> None:
    from policygradex.analysis.meta import MetaConfig, markdown, meta
    from policygradex.rl.config import MAMLConfig

    maml = MAMLConfig(iterations=args.iterations, env_steps=args.env_steps, meta_batch=args.meta_batch,
                      trajectories=args.trajectories,
                      inner_steps=args.inner_steps, inner_lr=args.inner_lr, first_order=args.first_order,
                      outer_lr=args.outer_lr, outer_epochs=args.outer_epochs)
    mc = MetaConfig(seeds=args.seeds, unseen_tasks=args.unseen_tasks, unseen_seed=args.unseen_seed,
                    adapt_steps=args.adapt_steps, representatives=args.representatives, maml=maml, seed=args.seed)
    _evaluate(args, console, meta, markdown, mc, "meta")


def cmd_stability(args: argparse.Namespace, console: Console) -> None:
    from policygradex.analysis.stability import StabilityConfig, markdown, stability

    sc = StabilityConfig(resamples=args.resamples, transitions_per_task=args.transitions, seed=args.seed)
    _evaluate(args, console, stability, markdown, sc, "stability")


def cmd_hessian(args: argparse.Namespace, console: Console) -> None:
    from policygradex.analysis.generalization import HessianConfig, hessian_analysis, markdown

    hc = HessianConfig(iterations=args.iterations, envs_per_task=args.envs_per_task, num_steps=args.num_steps,
                       every=args.every, probes=args.probes, estimator=args.estimator,
                       slq_probes=args.slq_probes, slq_steps=args.slq_steps, quad_steps=args.quad_steps,
                       block_len=args.block_len, bound_measure=args.bound_measure, eigenvalue=not args.no_eigenvalue,
                       alphas=args.alphas, init=args.init, seed=args.seed)
    _evaluate(args, console, hessian_analysis, markdown, hc, "hessian")


def cmd_run(args: argparse.Namespace, console: Console) -> None:
    from policygradex.pipeline.runner import run_pipeline

    cfg = config_from_args(args)
    out = default_out(args)
    st = run_pipeline(cfg, out, console, threads=args.threads, launcher=launcher_config(args))
    # the result goes to stdout (progress and logs went to stderr)
    assert st.groups is not None
    print(f"{st.family.name}: {st.groups.k} groups -> {out}/groups.json")
    for gi, grp in enumerate(st.groups.names):
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
    table.add_row("mo:ENV_ID", "n weights", "any MO-Gymnasium environment, one task per preference weight vector "
                  "(--weights CSV, or 'mo:ENV_ID(weights=N)'; the mo extra)")
    console.print(table)
    console.print("Your own: `policygradex run package.module:function`, a function returning a "
                  "policygradex.envs.TaskFamily; parameters: `policygradex run 'planted(n=12,groups=4)'`")


def cmd_show(args: argparse.Namespace, console: Console) -> None:
    from policygradex.pipeline.clustering import standardize
    from policygradex.pipeline.report import MATRIX_MAX_N, affinity_summary, matrix_text, weak_task_lines
    from policygradex.pipeline.rundir import load_run

    record, groups, U = load_run(args.run_dir)
    names = [t["name"] for t in record["family"]["tasks"]]
    if U.shape != (len(names), len(names)):
        raise PolicyGradExError(f"{args.run_dir}/affinity.npy has shape {U.shape}, expected {len(names)} tasks")
    print(f"{record['family']['name']} ({args.run_dir}): k = {groups.k}")
    for gi, grp in enumerate(groups.names):
        print(f"  group {gi + 1}: {', '.join(grp)}")
    conf = groups.confidence
    if conf:
        print(textwrap.fill(f"How sure: {conf.verdict}", width=78, subsequent_indent="  "))
        for gi, j in enumerate(conf.group_jaccard):
            also = (f", {conf.transition_jaccard[gi]:.0%} of {conf.transition_reps} of the transitions"
                    if conf.transition_jaccard else "")
            print(textwrap.fill(f"group {gi + 1} stays together in {j:.0%} (Jaccard, {conf.reps} resamples of "
                                f"the {conf.resampled}{also}): {conf.word(gi)}", width=78, initial_indent="  ",
                                subsequent_indent="    "))
        config = record.get("config")
        features = config.get("features") if isinstance(config, dict) else None
        baseline = str(features.get("baseline", "policy")) if isinstance(features, dict) else "policy"
        for line in weak_task_lines(conf, names, baseline=baseline):
            if line:
                print(textwrap.fill(line.replace("**", ""), width=78, subsequent_indent="  "))
    print()
    if len(names) > MATRIX_MAX_N:
        print("\n".join(affinity_summary(standardize(U), names, groups.index_lists())))
        print(f"\n({len(names)} tasks: affinity.csv and affinity.png in {args.run_dir} hold the whole matrix)")
    else:
        print(matrix_text(standardize(U), names, [i for g in groups.indices for i in g]))


def cmd_adapt(args: argparse.Namespace, console: Console) -> None:
    from policygradex.analysis.adapt import adapt_subset

    console.print(adapt_subset(args.run_dir, args.subset, args.output))


COMMANDS = {"run": cmd_run, "adapt": cmd_adapt, "check-linear": cmd_check_linear, "ground-truth": cmd_ground_truth,
            "compare": cmd_compare, "train": cmd_train, "evaluate": cmd_evaluate, "hessian": cmd_hessian,
            "meta": cmd_meta, "stability": cmd_stability}


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``), handled as Ctrl-C is: the launcher stops its worker processes and the finished jobs
    stay cached. Without it the workers of a killed command ran on, orphaned."""


_MAIN_PID: int | None = None
"""The process that installed :func:`_terminate`: the command itself."""


def _terminate(signum: int, frame: Any) -> None:
    if os.getpid() != _MAIN_PID:
        # A process forked from the command (a vector env's subprocess) inherits this handler. Raised there, the
        # Terminated surfaced as a traceback per subprocess when a scheduler or `pkill -f` signals every process of
        # the command. Such a process ends as SIGTERM's default does, quietly; the command itself cleans up.
        end_by_default(signum)
        return
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    console = Console()
    err = Console(stderr=True)
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    previous = signal.signal(signal.SIGTERM, _terminate)
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
    except KeyboardInterrupt as exc:
        print(f"policygradex: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}; finished stages and "
              "jobs are saved, rerun the same command to resume", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
