"""Benchmark of the PolicyGradEx pipeline stages: one real ``run_pipeline`` run, timed stage by stage.

1. Stage timings of ``pipeline.runner.run_pipeline`` (what ``policygradex run`` executes) on a task family at a
   modest budget, read from the run's timings.json: meta-training PPO, features (transition collection + vmap
   gradients + projection), surrogate fits (batched L-BFGS), affinity, clustering (with the bootstrap of the groups).
   Details per stage come from the run's own artifacts.
2. Meta-training throughput at torch threads = 1 vs torch's default: short ``rl.ppo.train_ppo`` runs.

The run directory it produces (always afresh) is the one bench_gradients.py and bench_surrogate.py reuse.

Usage (from the repository root):

    .venv/bin/python bench/bench_stages.py --out results/bench.md            # full run
    .venv/bin/python bench/bench_stages.py --quick --out /tmp/bench.md       # smoke test

The markdown written to --out is also printed to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from common import (
    LoadMonitor,
    add_arguments,
    bench_config,
    bench_run,
    fmt_load,
    fmt_s,
    header,
    log,
    machine_info,
    run_dir_for,
    table,
    timed,
    write_report,
)

from policygradex.common.artifacts import load_json
from policygradex.envs.base import TaskFamily
from policygradex.envs.registry import load_family
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.gradients import auto_grad_chunk
from policygradex.pipeline.rundir import RunDir
from policygradex.pipeline.stages import STAGES, read_curve
from policygradex.rl.ppo import train_ppo

THREAD_CHECK = {"quick": (2, 1), "full": (4, 2)}
"""(PPO iterations per run, repeats) of the threads check."""


def stage_rows(rd: RunDir, cfg: RunConfig, n: int) -> list[list[str]]:
    """One row per stage: seconds from timings.json, details from the artifacts the stage wrote."""
    seconds: dict[str, float] = load_json(rd.timings)
    curve = read_curve(rd.curve)
    meta, sub = load_json(rd.features_meta), load_json(rd.surrogate_record)
    groups, stats = load_json(rd.groups), load_json(rd.affinity_stats)
    fc, sc, cc = cfg.features, cfg.surrogate, cfg.cluster

    env_steps = int(curve[-1]["env_steps_per_task"]) * n
    per_iter = np.diff([0.0] + [r["seconds"] for r in curve])
    solver = sub["solver"]
    split = stats["split_half"]
    confidence = groups["confidence"]
    check = groups["exhaustive_check"]
    details = {
        "meta_train": f"PPO, {len(curve)} iterations, {env_steps:,} env-steps: "
                      f"**{env_steps / seconds['meta_train']:,.0f} env-steps/s** incl. updates; s/iteration min "
                      f"{per_iter.min():.2f} / median {np.median(per_iter):.2f} / max {per_iter.max():.2f}; final mean "
                      f"return {curve[-1]['mean_return']:.1f}",
        "features": f"collect N={meta['N']} valid transitions x {n} tasks (rollouts + GAE), then per task vmap "
                    f"gradients + projection (p={meta['p']:,}, d={meta['d']}, chunk="
                    f"{fc.grad_chunk or auto_grad_chunk(meta['p'])}; P generated on first use) and its feature file "
                    "written; all read back",
        "surrogate": f"m={sub['num_subsets']} ({sub['topped_up']} top-up) subsets of {sub['subset_size']}, batched "
                     f"L-BFGS ({solver['iterations']} iterations, {solver['converged']}/{sub['num_subsets']} converged "
                     f"to tol {sc.tol:g}), f_hat in/out of sample, \\|\\|P v_S\\|\\| / \\|\\|theta_star\\|\\|",
        "affinity": f"eq. 5 ({cc.affinity}, interaction {cc.interaction}), {n}x{n}, + split-half reliability over "
                    f"{split['splits']} halvings of the subsets ({split['reliability']:.2f})"
                    if split else f"eq. 5 ({cc.affinity}, interaction {cc.interaction}), {n}x{n}",
        "cluster": f"{groups['method']} ({groups['selection']}, {cc.lam_grid_size}-point grid), k={groups['k']}"
                   + (f", exhaustive check: SDP optimal = {check['sdp_is_optimal']}" if check else "")
                   + "; **includes** gradient reliability"
                   + (f" and the bootstrap of the groups ({confidence['reps']} resamples of the subsets reclustered)"
                      if "reps" in confidence else ""),
    }
    rows = [[s, fmt_s(seconds[s]), details[s]] for s in STAGES]
    rows.append(["**total**", f"**{fmt_s(sum(seconds[s] for s in STAGES))}**", ""])
    return rows


def ppo_threads(family: TaskFamily, cfg: RunConfig, iters: int, repeats: int) -> list[list[str]]:
    """Short PPO runs at torch threads = 1 and at the default, interleaved: env-steps/s of each."""
    default = torch.get_num_threads()
    if default == 1:
        return []
    short = replace(cfg.ppo, steps_per_task=iters * cfg.ppo.envs_per_task * cfg.ppo.num_steps, checkpoint_every=0)
    env_steps = iters * cfg.ppo.envs_per_task * cfg.ppo.num_steps * family.n
    res: dict[int, list[tuple[float, float]]] = {1: [], default: []}
    log(f"PPO threads check: {iters} iterations at torch threads 1 and {default}, x{repeats}")
    try:
        for _ in range(repeats):
            for nt in (1, default):
                torch.set_num_threads(nt)
                mon = LoadMonitor()
                t, _ = timed(lambda: train_ppo(family, range(family.n), cfg.network, short, cfg.seed))
                res[nt].append((t[0], mon.other_cores()))
    finally:
        torch.set_num_threads(default)
    rows = []
    for nt, runs in res.items():
        best = min(t for t, _ in runs)
        rows.append([str(nt), " / ".join(fmt_s(t) for t, _ in runs), f"{env_steps / best:,.0f}",
                     " / ".join(fmt_load(x) for _, x in runs)])
    return rows


def render(cfg: RunConfig, n: int, stages: list[list[str]], run_wall: float, run_load: float,
           threads_rows: list[list[str]], iters: int) -> list[str]:
    L = ["## Pipeline stages", ""]
    L.append(f"Budget: PPO steps_per_task={cfg.ppo.steps_per_task:,} (envs_per_task={cfg.ppo.envs_per_task}, "
             f"num_steps={cfg.ppo.num_steps}), N={cfg.features.transitions_per_task} transitions/task, "
             f"d={cfg.features.projection_dim}, m={cfg.surrogate.num_subsets} subsets (l2={cfg.surrogate.l2:g}, "
             f"tol={cfg.surrogate.tol:g}), network {'-'.join(map(str, cfg.network.hidden_sizes))} MLP; everything "
             "else `policygradex run`'s defaults. One `run_pipeline` run, each stage computed once, cold; seconds are "
             "the stage's own timing from the run's timings.json, which includes writing its artifacts. The features "
             "stage includes collecting the transitions; the cluster stage includes the confidence checks (gradient "
             "reliability, bootstrap of the groups).")
    L += ["", table(["stage", "seconds", "details"], stages), ""]
    L.append(f"The whole `run_pipeline` call took {fmt_s(run_wall)} s (the stages plus loading the family and writing "
             f"report.md and its plots); other load during it: {fmt_load(run_load)} cores (for the whole run only: "
             "`run_pipeline` has no per-stage hook to sample the load at).")
    if threads_rows:
        L += ["", f"Meta-training throughput vs torch intra-op threads: short `train_ppo` runs of {iters} iterations "
              f"({iters * cfg.ppo.envs_per_task * cfg.ppo.num_steps * n:,} env-steps), same config and seed, thread "
              "counts interleaved; env-steps/s from the best run.", ""]
        L.append(table(["torch threads", "seconds per run", "env-steps/s (best)", "other load (cores) per run"],
                       threads_rows))
    return L + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap, "results/bench.md", "threads of the run (run_pipeline's threads; default 1, as `policygradex "
                                          "run`); the PPO threads check sets its own")
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    mon_all = LoadMonitor()
    info = machine_info()
    log(f"machine: {info}")
    cfg = bench_config(args.family, args.seed, args.quick)
    family = load_family(args.family)
    threads = args.threads or 1
    mon = LoadMonitor()
    t0 = time.perf_counter()
    rd, run_line = bench_run(cfg, run_dir_for(args), fresh=True, threads=threads)
    run_wall, run_load = time.perf_counter() - t0, mon.other_cores()
    iters, repeats = THREAD_CHECK["quick" if args.quick else "full"]
    threads_rows = ppo_threads(family, cfg, iters, repeats)
    text: list[str] = header("policygradex stage benchmark", args, info, time.perf_counter() - t_all,
                             mon_all.other_cores(), run_line,
                             f"{threads} for the run (`run_pipeline(threads={threads})`); the PPO check sets its own")
    text += render(cfg, family.n, stage_rows(rd, cfg, family.n), run_wall, run_load, threads_rows, iters)
    write_report(args.out, "\n".join(text), t_all)
    return 0


if __name__ == "__main__":
    sys.exit(main())
