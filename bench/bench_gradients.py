"""Benchmark of per-transition gradients + projection: vmap against a per-sample autograd loop, on a real run's data.

``pipeline.gradients.projected_gradients`` (vmap of grad, chunked by ``auto_grad_chunk``, projected
``project_rows`` at a time: what the feature stage runs) against ``pipeline.gradients.loop_grads`` followed by the
same ``RandomProjection.project``, on the same transitions: those of the benchmark's run (bench_stages.py's run
directory, produced here if missing), re-collected with the feature stage's ``run_transitions`` and
``cfg.feature_seed``, with the run's projection (``projection_for``). Networks: the run's meta-trained 64-64-64 MLP
at theta_star and a freshly initialised 256-256-256 MLP. Also: agreement, time split gradients / projection, and a
vmap chunk-size sweep around ``auto_grad_chunk`` (full mode).

Usage (from the repository root):

    .venv/bin/python bench/bench_gradients.py --out results/bench_gradients.md      # full run
    .venv/bin/python bench/bench_gradients.py --quick --out /tmp/bench_gradients.md # smoke test

The markdown written to --out is also printed to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

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
from torch import nn

from policygradex.analysis.context import load_context
from policygradex.common.artifacts import load_npz
from policygradex.common.threads import thread_limit
from policygradex.pipeline.config import FeatureConfig
from policygradex.pipeline.features import projection_for, run_transitions
from policygradex.pipeline.gradients import auto_grad_chunk, loop_grads, per_sample_grad_fn, projected_gradients
from policygradex.pipeline.projection import RandomProjection
from policygradex.pipeline.stages import make_model

WIDE = (256, 256, 256)


@dataclass(frozen=True)
class Settings:
    rows: int
    """Transitions of task 0 that both paths process."""
    vmap_repeats: tuple[int, int]
    """Timed vmap calls for the run's network and the wide one."""
    loop_repeats: tuple[int, int]
    sweep: bool
    """Also time the vmap gradients at other chunk sizes."""


QUICK = Settings(rows=256, vmap_repeats=(2, 1), loop_repeats=(1, 1), sweep=False)
FULL = Settings(rows=2048, vmap_repeats=(5, 3), loop_repeats=(3, 2), sweep=True)


@dataclass
class Tables:
    rows: list[list[str]]
    split_rows: list[list[str]]
    sweep_rows: list[list[str]]


def measure(label: str, model: nn.Module, projection: RandomProjection, obs: torch.Tensor, actions: torch.Tensor,
            fc: FeatureConfig, repeats: tuple[int, int], sweep: bool, out: Tables) -> torch.Tensor:
    """vmap vs loop on one network: adds its rows to ``out``; returns the vmap path's features."""
    rv, rl = repeats
    mon = LoadMonitor()
    fn, p = per_sample_grad_fn(model)
    chunk = fc.grad_chunk or auto_grad_chunk(p)
    log(f"vmap vs loop: {label}, p={p}, chunk={chunk}, B={obs.shape[0]}")
    t_gen_p, _ = timed(lambda: [projection.block(b) for b in range(projection.num_blocks)])

    def vmap_path(c: int | None = None) -> torch.Tensor:  # what the feature stage runs
        return projected_gradients(model, obs, actions, projection, replace(fc, grad_chunk=c) if c else fc)

    def loop_path() -> torch.Tensor:  # the alternative; like projected_gradients it frees its B x p buffer
        return projection.project(loop_grads(model, obs, actions))

    def vmap_grads(c: int = chunk) -> torch.Tensor:  # the gradient half of projected_gradients, same chunking
        return torch.cat([fn(obs[s : s + c], actions[s : s + c]) for s in range(0, obs.shape[0], c)])

    # warm-up: the first vmap call sets up / allocates (P is already cached); first loop call likewise
    projected_gradients(model, obs[: chunk * 2], actions[: chunk * 2], projection, fc)
    loop_grads(model, obs[:4], actions[:4])
    # repeats are interleaved (vmap, loop, vmap, loop, ...) so that load from other processes hits both alike
    t_vmap: list[float] = []
    t_loop: list[float] = []
    for r in range(max(rv, rl)):
        if r < rv:
            ts, feats_vmap = timed(vmap_path)
            t_vmap += ts
        if r < rl:
            ts, feats_loop = timed(loop_path)
            t_loop += ts
    # the split, timed separately (these exclude freeing the B x p gradient buffer; the totals above include it)
    t_vg, t_vp, t_lg, t_lp = [], [], [], []
    for _ in range(rl):
        ts, g_vmap = timed(vmap_grads)
        t_vg += ts
        t_vp += timed(lambda g=g_vmap: projection.project(g))[0]
        ts, g_loop = timed(lambda: loop_grads(model, obs, actions))
        t_lg += ts
        t_lp += timed(lambda g=g_loop: projection.project(g))[0]
    diff_proj, scale_proj = float((feats_vmap - feats_loop).abs().max()), float(feats_loop.abs().max())
    diff_raw, scale_raw = float((g_vmap - g_loop).abs().max()), float(g_loop.abs().max())
    del g_vmap, g_loop
    best_v, best_l = min(t_vmap), min(t_loop)
    med_v, med_l = statistics.median(t_vmap), statistics.median(t_loop)
    out.rows.append([label, f"{p:,}", f"{chunk} (auto)", f"{fmt_s(best_v)} / {fmt_s(med_v)}",
                     f"{fmt_s(best_l)} / {fmt_s(med_l)}", f"**{best_l / best_v:.1f}x** ({med_l / med_v:.1f}x)",
                     f"{diff_proj:.1e} (max \\|g~\\| {scale_proj:.2g}); raw grads {diff_raw:.1e} "
                     f"(max \\|g\\| {scale_raw:.2g})", fmt_load(mon.other_cores())])
    out.split_rows.append([label, f"{fmt_s(min(t_vg))} + {fmt_s(min(t_vp))}",
                           f"{100 * min(t_vp) / (min(t_vg) + min(t_vp)):.0f}%",
                           f"{fmt_s(min(t_lg))} + {fmt_s(min(t_lp))}",
                           f"{100 * min(t_lp) / (min(t_lg) + min(t_lp)):.0f}%",
                           f"{min(t_lg) / min(t_vg):.1f}x", fmt_s(t_gen_p[0])])
    if sweep:
        fastest = chunk_sweep(label, p, chunk, vmap_grads, out)
        if fastest != chunk:  # the whole vmap path again at the sweep's fastest chunk, vs the same loop timings
            mon = LoadMonitor()
            ts, _ = timed(lambda: vmap_path(fastest), 2)
            out.rows.append([label, f"{p:,}", f"{fastest} (sweep's fastest)",
                             f"{fmt_s(min(ts))} / {fmt_s(statistics.median(ts))}",
                             f"{fmt_s(best_l)} / {fmt_s(med_l)} (above)",
                             f"**{best_l / min(ts):.1f}x** ({med_l / statistics.median(ts):.1f}x)", "",
                             fmt_load(mon.other_cores())])
    return feats_vmap


def chunk_sweep(label: str, p: int, chunk: int, vmap_grads: Callable[[int], torch.Tensor], out: Tables) -> int:
    """Best time of the vmap gradients at chunk sizes around ``chunk``; adds a row, returns the fastest size."""
    mon = LoadMonitor()
    cand = sorted({max(8, chunk // 2), chunk, min(1024, chunk * 2), min(1024, chunk * 4)})
    for c in cand:
        vmap_grads(c)  # warm-up at this chunk size
    best = {c: float("inf") for c in cand}
    for _ in range(2 if p > 50_000 else 3):  # interleaved over chunk sizes
        for c in cand:
            best[c] = min(best[c], timed(lambda: vmap_grads(c))[0][0])
    fastest = min(best, key=lambda c: best[c])
    out.sweep_rows.append([label, f"{p:,}", str(chunk)]
                          + [f"{c}: {fmt_s(t)}" + (" (fastest)" if c == fastest else "") for c, t in best.items()]
                          + [fmt_load(mon.other_cores())])
    return fastest


def render(S: Settings, fc: FeatureConfig, B: int, data_line: str, t: Tables) -> list[str]:
    L = ["## Per-transition gradients + projection: vmap vs per-sample autograd loop", ""]
    L.append(f"{data_line} d={fc.projection_dim}, the run's FeatureConfig (grad_chunk="
             f"{fc.grad_chunk or 'auto'}, project_rows={fc.project_rows}). vmap = `gradients.projected_gradients`; "
             "loop = `gradients.loop_grads` + the same `RandomProjection.project`. One warm-up call first (P cached); "
             f"times are best / median of {S.vmap_repeats[0]} (64-wide) and {S.vmap_repeats[1]} (256-wide) vmap "
             f"repeats and {S.loop_repeats[0]} / {S.loop_repeats[1]} loop repeats. Ratios are \"ours vs "
             "alternative, measured in the same run\" (loop time / vmap time; >1: vmap is faster).")
    L += ["", table(["network", "p", "vmap chunk", "vmap s (best / median)", "loop s (best / median)",
                     "speedup ours vs loop (best (median))", "agreement: max abs diff of projected features",
                     "other load (cores)"], t.rows), ""]
    L.append("Time split (best of the repeats, timed separately from the totals above; unlike them it excludes "
             f"freeing the {B} x p gradient buffer). \"project share\" is the projection's share of the path; "
             "\"P gen\" is generating the p x d projection once (cached afterwards; paid once per features stage).")
    L += ["", table(["network", "vmap: grads + project s", "project share", "loop: grads + project s", "project share",
                     "grad-only speedup", "P gen s"], t.split_rows)]
    if t.sweep_rows:
        width = max(len(r) for r in t.sweep_rows)
        hdr = ["network", "p", "auto"] + ["chunk: s"] * (width - 4) + ["other load (cores)"]
        L += ["", "vmap chunk-size sweep (gradients only, best of 2-3, same transitions); `auto` is "
              "`gradients.auto_grad_chunk(p)`:", "",
              table(hdr, [r[:-1] + [""] * (width - len(r)) + r[-1:] for r in t.sweep_rows])]
    return L + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap, "results/bench_gradients.md", "torch / BLAS threads of the measurements (default: torch's own "
                                                    "default); the run, if produced here, uses 1")
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    mon_all = LoadMonitor()
    info = machine_info()
    S = QUICK if args.quick else FULL
    rd, run_line = bench_run(bench_config(args.family, args.seed, args.quick), run_dir_for(args), fresh=False)
    ctx = load_context(rd.path)
    cfg, fc = ctx.cfg, ctx.cfg.features
    log(f"re-collecting the feature stage's transitions (seed {cfg.feature_seed})")
    transitions = run_transitions(cfg, ctx.family, ctx.model)
    stored = load_npz(rd.task_features(0))
    B = min(S.rows, fc.transitions_per_task)
    obs, actions = transitions[0].obs[:B], transitions[0].actions[:B]
    torch.manual_seed(cfg.seed)
    wide = make_model(replace(cfg, network=replace(cfg.network, hidden_sizes=WIDE)), ctx.family)
    t = Tables([], [], [])
    with thread_limit(args.threads) if args.threads else contextlib.nullcontext():
        feats = measure(f"{'-'.join(map(str, cfg.network.hidden_sizes))} (the run's theta_star)", ctx.model,
                        projection_for(cfg, ctx.model), obs, actions, fc, (S.vmap_repeats[0], S.loop_repeats[0]),
                        S.sweep, t)
        measure(f"{'-'.join(map(str, WIDE))} (fresh init)", wide, projection_for(cfg, wide), obs, actions, fc,
                (S.vmap_repeats[1], S.loop_repeats[1]), S.sweep, t)
    adv_diff = float(np.abs(stored["advantages"] - transitions[0].advantages).max())
    feat_diff = float(np.abs(stored["features"][:B] - feats.numpy()).max())
    data_line = (f"Both paths process the first {B} transitions of task 0 of the run, re-collected with "
                 f"`run_transitions`, with the feature stage's seed (their advantages match the run's feature file "
                 f"to {adv_diff:.1e}, and the vmap features of theta_star match its stored features to "
                 f"{feat_diff:.1e}), with the run's projection P (`projection_for`, seed {cfg.projection_seed});")
    threads = f"set by --threads {args.threads} (torch and BLAS)" if args.threads else "torch default"
    text = header("policygradex gradient benchmark", args, info, time.perf_counter() - t_all, mon_all.other_cores(),
                  run_line, threads)
    write_report(args.out, "\n".join(text + render(S, fc, B, data_line, t)), t_all)
    return 0


if __name__ == "__main__":
    sys.exit(main())
