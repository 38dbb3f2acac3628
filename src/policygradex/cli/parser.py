"""The ``policygradex`` argument parser: every subcommand and its options (the commands are in :mod:`.main`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from policygradex import __version__
from policygradex.cli.options import (
    Parser,
    add_launcher_options,
    add_run_dir_command,
    finish_evaluation_command,
    float_list,
    int_list,
    name_list,
    named_path,
)
from policygradex.nets.base import NETWORKS
from policygradex.pipeline.config import PRESETS, RunConfig, preset_summary


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="policygradex", description="Which of my n RL tasks should be trained together? "
                     "PolicyGradEx: task affinity from projected policy gradients, then convex clustering.")
    parser.add_argument("--version", action="version", version=f"policygradex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser("run", help="run all stages on a task family (resumes an existing --out)")
    run.add_argument("family", help="built-in family (see `policygradex families`), mo:ENV_ID (an MO-Gymnasium "
                                    "environment) or package.module:function")
    run.add_argument("--out", type=Path, help="run directory (default runs/FAMILY-seedS)")
    run.add_argument("--weights", type=Path, metavar="CSV",
                     help="for an mo:ENV_ID family: preference weights, one task per row (n x r, comma-separated; "
                          "a header row names the columns)")
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
    g.add_argument("--point-weights", choices=["equal", "reliability"],
                   help="weigh the expansion points' U's equally, or each by its gradient signal's split-half "
                        f"reliability over transitions (default: {d.cluster.point_weights})")
    g.add_argument("--cluster-method", choices=["auto", "exact", "sdp", "exhaustive", "fast"],
                   help="exact search over all partitions (n <= 12), SDP + rounding + local search, fast (spectral "
                        "starts + local search, a spectral bound), or auto: exact for n <= 12, SDP up to 100, fast "
                        f"above; exhaustive = exact (default: {d.cluster.method})")
    g.add_argument("--bootstrap-method", choices=["auto", "exact", "sdp", "fast"],
                   help="how each bootstrap resample of the groups is reclustered, warm-started from the run's "
                        f"groups (default: {d.cluster.bootstrap_method}: exact for n <= 12, fast above)")
    g = run.add_argument_group("meta-training")
    g.add_argument("--steps-per-task", type=int,
                   help=f"PPO environment steps per task (default: the preset's; {d.ppo.steps_per_task:,} without one)")
    g.add_argument("--hidden", type=int_list,
                   help=f"hidden widths (default: {','.join(map(str, d.network.hidden_sizes))}, a 4-layer MLP)")
    g.add_argument("--network", metavar="NAME",
                   help=f"policy network: {', '.join(NETWORKS)} or package.module:function (default: "
                        f"{d.network.name}); multihead, softmod, care and paco route by task and turn --task-id on")
    g.add_argument("--task-id", action=argparse.BooleanOptionalAction, default=None,
                   help="append a one-hot task id to every policy's observations (default: off; see README)")
    g.add_argument("--lr", type=float, help=f"PPO learning rate (default: {d.ppo.learning_rate:g})")
    g.add_argument("--tasks-per-iteration", type=int, metavar="B",
                   help="tasks in each PPO iteration's rollout; with more tasks than B each iteration trains on a "
                        "batch of B, so the total budget is B x steps-per-task whatever n is (0: all tasks; "
                        f"default: {d.ppo.tasks_per_iteration})")
    g = run.add_argument_group("features and surrogate")
    g.add_argument("--transitions", type=int,
                   help=f"N: transitions per task for gradient features (default: {d.features.transitions_per_task:,})")
    g.add_argument("--target-reliability", type=float, metavar="R",
                   help="grow N (up to --max-transitions) until the split-half reliability of the gradient signal "
                        "reaches R, e.g. 0.9; only runs whose signal is weaker pay for it (default: off)")
    g.add_argument("--max-transitions", type=int, metavar="N",
                   help="the largest N that --target-reliability may grow to (default: 4 x --transitions)")
    g.add_argument("--common-random-numbers", action=argparse.BooleanOptionalAction, default=None,
                   help="collect every task's feature transitions from the same environment seeds and action noise, "
                        "so tasks that share dynamics differ only in their rewards (default: "
                        f"{'on' if d.features.common_random_numbers else 'off'})")
    g.add_argument("--expansion-points", type=float_list, metavar="F,...,1",
                   help="fractions of meta-training at whose policies the features are taken, the last 1 "
                        "(theta_star); with more than one the clustered U averages the points' standardised "
                        "affinities; 1: theta_star alone, as the paper (default: "
                        f"{','.join(f'{f:g}' for f in d.features.expansion_points)})")
    g.add_argument("--group-points", type=float, metavar="F",
                   help="after a first clustering, fine-tune theta_star on each group's tasks for F of the budget "
                        "and take every task's features there too, so that conflicts theta_star's states do not "
                        "show are seen where a group's own policy goes; costs k more feature stages (default: off)")
    g.add_argument("--expansion-policy", choices=["snapshot", "retrain"],
                   help="an earlier expansion point's policy: meta-training's own at that fraction, or a "
                        "meta-training of its own on that fraction of the budget (default: "
                        f"{d.features.expansion_policy})")
    g.add_argument("--projection-dim", type=int, help=f"d: projection dimension (default: {d.features.projection_dim})")
    g.add_argument("--projection", choices=["dense", "factorised"],
                   help="P: the paper's dense Gaussian matrix on full per-transition gradients, or LoGra's factorised "
                        f"projection of linear layers' gradients (default: {d.features.projection})")
    g.add_argument("--store", choices=["auto", "features", "statistics"],
                   help="what the feature stage writes: every transition's projected gradient, or only the closed "
                        "form's per-task statistics, without per-sample gradients except a curvature subsample "
                        "(default: auto: statistics wherever the surrogate is the closed form with a shared curvature)")
    g.add_argument("--task-block", type=int, metavar="TASKS",
                   help="tasks per block of the feature stage: one block's transitions in memory at a time, and the "
                        f"unit of work of --backend (default: {d.features.task_block})")
    g.add_argument("--advantage-normalization", choices=["per_task", "batch", "none"],
                   help=f"scaling of advantages before labels and weights (default: "
                        f"{d.features.advantage_normalization})")
    g.add_argument("--baseline", choices=["policy", "per_task", "auto"],
                   help="value estimates behind each task's advantages: theta_star's value head, each task's own "
                        "value function fitted on its transitions, or auto: the one whose gradient signal "
                        f"reproduces better across halves of the transitions (default: {d.features.baseline})")
    g.add_argument("--holdout-fraction", type=float,
                   help=f"share of transitions held out for f^ (default: {d.features.holdout_fraction:g})")
    g.add_argument("--surrogate", choices=["auto", "exact", "newton", "closed_form"],
                   help="how f^ and U are computed: exact logistic fits on subsets, a Newton step per subset from "
                        "per-task statistics, or the closed form with no subsets (default: auto: exact up to 12 "
                        "tasks, newton up to 40, closed_form above)")
    g.add_argument("--curvature", choices=["shared", "first_order"],
                   help="closed_form: one shared curvature, or plus each task's own to first order (default: shared)")
    g.add_argument("--curvature-rows", type=int,
                   help="transitions per task behind closed_form's shared curvature (default: all fitting ones from "
                        "features; about 32,768 in all spread over the tasks under --store statistics)")
    g.add_argument("--subset-size", type=int, help="alpha: tasks per subset (default: min(5, n // 2))")
    g.add_argument("--num-subsets", type=int, help="m: distinct subsets (default: 3 n^2, or all C(n, alpha) subsets "
                                                   "when fewer; topped up until every pair is covered)")
    g.add_argument("--l2", type=float, help=f"L2 strength of the surrogate logistic regression (default: {d.surrogate.l2:g})")
    g.add_argument("--evaluation", choices=["in_sample", "held_out"],
                   help=f"f^ on the fitting transitions (the paper's L^) or on held-out ones (default: "
                        f"{d.surrogate.evaluation})")

    sub.add_parser("families", help="list the built-in task families")

    add_launcher_options(run, default="sequential", what="the feature stage's blocks of tasks (--task-block)",
                         title="where the feature stage runs (the same files on every backend)")
    add_run_dir_command(sub, "show", "print a run's groups and affinity matrix")

    adapt = add_run_dir_command(sub, "adapt", "write theta^(S) = theta_star + P v_S for one sampled subset")
    adapt.add_argument("--subset", type=int, required=True, help="index of the subset (row of subsets.npz)")
    adapt.add_argument("--output", type=Path, required=True, help="file for the adapted state_dict (.pt)")
    _add_run_dir_commands(sub)
    return parser


def _add_run_dir_commands(sub: argparse._SubParsersAction) -> None:
    cl = add_run_dir_command(sub, "check-linear", "first-order approximation error of log pi near theta_star (Table 1)")
    cl.add_argument("--num-subsets", type=int, default=10, help="random subsets fine-tuned (default 10)")
    cl.add_argument("--subset-size", type=int, default=5, help="tasks per subset (default 5)")
    cl.add_argument("--distances", type=float_list, default=(0.001, 0.005, 0.01, 0.05),
                    help="relative parameter distances (default 0.001,0.005,0.01,0.05)")
    cl.add_argument("--max-steps-per-task", type=int, default=50_000, help="fine-tuning budget cap per task")
    cl.add_argument("--lr", type=float, help="fine-tuning learning rate (default: the run's)")
    finish_evaluation_command(cl)

    gt = add_run_dir_command(sub, "ground-truth", "real fine-tuning on the surrogate's subsets: NMI, Spearman, speedup (Table 3)")
    gt.add_argument("--steps-per-task", type=int, default=20_000, help="fine-tuning budget per task (default 20000)")
    gt.add_argument("--lr", type=float, help="fine-tuning learning rate (default: the run's)")
    gt.add_argument("--max-subsets", type=int, help="train only the first M subsets (default: all the surrogate used)")
    gt.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per task (default 10)")
    gt.add_argument("--seeds-per-subset", type=int, default=1, help="fine-tunings per subset, averaged (default 1)")
    gt.add_argument("--target", choices=["return", "ppo", "logistic"], default="return",
                    help="real f(S) behind U_true: mean return (default), negative PPO loss, or logistic objective")
    finish_evaluation_command(gt)

    cp = add_run_dir_command(sub, "compare", "train one policy per group for several groupings, same budget (Table 2)")
    cp.add_argument("--seeds", type=int, default=5, help="seeds per grouping (default 5)")
    cp.add_argument("--steps-per-task", type=int, help="environment steps per task (default: the run's meta-training budget)")
    cp.add_argument("--eval-episodes", type=int,
                    help="evaluation episodes per task (default: the family's: 10, or 50 for mt10, one per goal)")
    cp.add_argument("--ablate-k", type=int_list, default=(), help="also PolicyGradEx groups with these k, e.g. 1,2,3,4,5")
    cp.add_argument("--ablate-d", type=int_list, default=(), help="also groups from projections of these d, e.g. 100,200,400,1000")
    cp.add_argument("--groups", action="append", default=[], metavar="NAME=PATH", type=named_path,
                    help="also train this grouping: a groups.json of another run, or a JSON list of lists of task "
                         "indices (repeatable)")
    cp.add_argument("--single", action="store_true",
                    help="also train every task alone, and warn where one multitask policy falls far below it")
    cp.add_argument("--group-network", metavar="NAME",
                    help="network of every grouping's policies (default: the run's); e.g. softmod, as the paper on "
                         "Meta-World")
    cp.add_argument("--network-rows", type=name_list, default=(), metavar="NAMES",
                    help="also one network of each kind on all tasks, e.g. softmod,care,paco (the paper's baselines)")
    cp.add_argument("--trainings-from", action="append", default=[], type=Path, metavar="RUN_DIR",
                    help="reuse the trainings another run's compare already made (same family, network, budget, "
                         "tasks and seed: the same training); repeatable")
    finish_evaluation_command(cp)

    tr = add_run_dir_command(sub, "train", "train and save one policy per group (load with policygradex.load_policy)")
    tr.add_argument("--groups", type=Path, metavar="FILE",
                    help="the groups to train: a groups.json or a JSON list of lists of task indices (default: the "
                         "run's groups.json)")
    tr.add_argument("--network", metavar="NAME",
                    help=f"the policies' network: {', '.join(NETWORKS)} or package.module:function (default: the "
                         "run's); multihead, softmod, care and paco read the task id")
    tr.add_argument("--steps-per-task", type=int,
                    help="environment steps per task (default: the run's meta-training budget)")
    tr.add_argument("--seeds", type=int, default=1, help="policies per group, one per seed")
    tr.add_argument("--eval-episodes", type=int,
                    help="evaluation episodes per task behind each card (default: the family's, 10 for most)")
    tr.add_argument("--stochastic", action="store_true",
                    help="score the cards with sampled actions (default: the most likely action, as predict does)")
    tr.add_argument("--out", type=Path, help="where the policies go (default: RUN_DIR/policies)")
    finish_evaluation_command(tr)

    ev = sub.add_parser("evaluate", help="returns of a saved policy on its tasks (or others), optionally videos")
    ev.add_argument("policy", type=Path, help="a policy.pt written by `policygradex train`, or its directory")
    ev.add_argument("--episodes", type=int, default=10, help="fresh episodes per task")
    ev.add_argument("--tasks", type=name_list, default=(), metavar="TASKS",
                    help="comma-separated task names or family indices (default: the tasks it was trained on)")
    ev.add_argument("--stochastic", action="store_true", help="sample actions (default: the most likely action)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes")
    ev.add_argument("--video", type=Path, metavar="DIR",
                    help="also record episodes into DIR with Gymnasium's RecordVideo (needs moviepy: "
                         "pip install 'policygradex[video]')")
    ev.add_argument("--video-episodes", type=int, default=1, help="episodes recorded per task with --video")

    mt = add_run_dir_command(sub, "meta", "meta-RL: MAML on one representative per group, adapted to unseen tasks "
                                          "(Table 2, control environments)")
    mt.add_argument("--seeds", type=int, default=5, help="seeds per row (default 5)")
    mt.add_argument("--unseen-tasks", type=int, default=50, help="target tasks from the family's range (default 50)")
    mt.add_argument("--unseen-seed", type=int, default=0, help="seed of the target tasks' draw (default 0)")
    mt.add_argument("--adapt-steps", type=int, default=200, help="adaptation steps on each target (default 200)")
    mt.add_argument("--representatives", choices=["random", "medoid"], default="random",
                    help="a random member per group and seed (the paper, default) or the medoid by affinity")
    mg = mt.add_argument_group("MAML (training and adaptation)")
    mg.add_argument("--iterations", type=int, default=100, help="meta-iterations (default 100)")
    mg.add_argument("--env-steps", type=int,
                    help="stop each MAML training once it has taken this many environment steps, e.g. theta_star's "
                         "budget (n x steps per task); --iterations stays the cap (default: no limit)")
    mg.add_argument("--meta-batch", type=int, default=10, help="task slots per meta-iteration (default 10)")
    mg.add_argument("--trajectories", type=int, default=10, help="episodes per task slot per step (default 10)")
    mg.add_argument("--inner-steps", type=int, default=1, help="inner policy-gradient steps (default 1)")
    mg.add_argument("--inner-lr", type=float, default=0.1, help="inner step size (default 0.1)")
    mg.add_argument("--first-order", action="store_true", help="first-order MAML (no second derivatives)")
    mg.add_argument("--outer-lr", type=float, default=1e-3, help="Adam learning rate of the meta-update (default 1e-3)")
    mg.add_argument("--outer-epochs", type=int, default=5, help="clipped outer steps per meta-batch (default 5)")
    finish_evaluation_command(mt)

    st = add_run_dir_command(sub, "stability", "would the groups come out the same from fresh transitions? "
                                          "(U and groups over resampled transitions, co-clustering, pooled groups)")
    st.add_argument("--resamples", type=int, default=5, help="fresh transition samples (default 5)")
    st.add_argument("--transitions", type=int, help="transitions per task in each resample (default: the run's N)")
    finish_evaluation_command(st)

    hs = add_run_dir_command(sub, "hessian", "Hessian trace, generalization error and the Theorem 1 bound over training (Fig. 2)")
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
    hs.add_argument("--alphas", type=int_list, default=(1, 2, 3, 5, 10), help="subset sizes for the alpha sweep")
    hs.add_argument("--init", choices=["scratch", "theta_star"], default="scratch")
    finish_evaluation_command(hs)


