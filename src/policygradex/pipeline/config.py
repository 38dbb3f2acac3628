"""Configuration of every pipeline stage: frozen dataclasses, one docstring per field.

A run is fully described by a :class:`RunConfig`; it is written to ``config.json`` in the run directory, and a
resumed run must match it. Presets (``tiny``, ``demo``, ``paper``) give budgets for tests, the README demo and the
paper's settings.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from policygradex.common.errors import PolicyGradExError
from policygradex.nets.config import NetworkConfig
from policygradex.rl.config import PPOConfig


@dataclass(frozen=True)
class FeatureConfig:
    """Gradient features at theta_star (paper Algorithm 1, lines 3-10)."""

    transitions_per_task: int = 16_384
    """N: valid transitions collected per task with theta_star frozen (the paper uses 2048; ``--preset paper``).

    16384 by default because the per-task gradient signal at a trained theta_star is small against its sampling
    noise: on the planted family (demo budget, 3 seeds) the split-half reliability over transitions of the gradient
    interaction G G^T was ~0 at N = 2048, and the planted groups came back at NMI 0.60 / 0.79 / 0.79 at N = 2048,
    1.0 / 1.0 / 0.79 at 8192 and 1.0 / 1.0 / 1.0 at 16384. Costs ~20 s of gradients and ~30 s of fits on 2 cores for
    10 tasks. The report prints that reliability; below 0.5 it says to raise N."""
    envs_per_task: int = 4
    """Sub-environments per task during collection."""
    task_block: int = 64
    """Tasks per block of the feature stage. Each block's transitions are collected in one vector env seeded by
    (feature seed, block), its features computed and written before the next block starts, so memory holds one
    block's transitions, not all n tasks'; blocks are the jobs that ``run --backend process/ray`` spreads over
    workers, with the same files as one by one. With n <= task_block there is one block, as before blocks."""
    projection_dim: int = 400
    """d: dimension of the random projection P (p x d, entries N(0, 1/d)); the paper finds d = 400 enough."""
    projection: Literal["dense", "factorised"] = "dense"
    """``dense``: the paper's p x d Gaussian P applied to each transition's full gradient. ``factorised``: LoGra's
    projection of linear layers' gradients as outer products (:class:`~.projection.FactorisedProjection`), from one
    batched forward and backward, without per-sample gradients; results/factorised-projection.md compares the two
    (inner-product error, time, groups)."""
    store: Literal["auto", "features", "statistics"] = "auto"
    """What the feature stage writes. ``features``: every transition's projected gradient (N x d per task), which
    every surrogate and analysis can read. ``statistics``: only what the closed-form surrogate reads, per block of
    tasks, from one forward and backward per block of rows plus per-sample gradients of a curvature subsample
    (:mod:`~.gradient_statistics`; no N x d array). ``auto`` (default): ``statistics`` where the run's surrogate is
    the closed form with the shared curvature (n > 40 by default), else ``features``; results/statistics-store.md
    measures the time saved and what the subsampled curvature changes."""
    projection_block_rows: int = 16_384
    """P is generated this many parameter-rows at a time from (seed, block index); it never sits whole in memory."""
    projection_cache_mb: float = 256.0
    """Keep generated blocks of P in memory while their total stays under this many MiB (0: regenerate always)."""
    grad_chunk: int | None = None
    """Transitions per vmap call for per-transition gradients. None: the largest power of two with
    chunk * p <= 4M floats (256 for the default 64-wide MLP, 16 for a 256-wide one)."""
    project_rows: int = 2048
    """Gradients are buffered and projected this many rows at a time (projecting small chunks is slow)."""
    advantage_normalization: Literal["per_task", "batch", "none"] = "per_task"
    """How advantages are scaled before labels sign(A) and weights |A| are taken.

    ``per_task`` (default) standardises each task's GAE advantages, as PPO does per batch, so that a task's
    reward scale does not dominate the weighted loss and the affinity reflects compatibility of updates rather
    than reward magnitude; ``batch`` standardises over all tasks at once; ``none`` keeps raw GAE advantages."""
    baseline: Literal["policy", "per_task", "auto"] = "per_task"
    """The value estimates behind each task's advantages. ``per_task`` (default): each task's own value function, a
    ridge regression of its discounted returns-to-go on quadratic features of its observations
    (:func:`~policygradex.pipeline.features.task_baselines`). ``policy``: theta_star's own value head, as the paper
    does. Without a task id it is one value function for every task, so for tasks paid differently it is biased per
    task, and GAE's truncation (lambda < 1) then hides whatever pays off over more steps than it looks ahead.
    The default is per_task with ``common_random_numbers``: the planted suite's best variant on its held-out seeds,
    with the demo's and the paper families' groups no worse (results/crn-defaults.md). results/weak-signal.md
    measures the suspects one at a time on the planted suite (more transitions, advantage normalisation, GAE lambda,
    this): the shared value head is what leaves reward-conflict tasks' gradients below their noise, and
    results/planted.md gives the recovery with each baseline. ``auto``: both from the same transitions and the same
    projected gradients, keeping the one whose gradient signal has the higher split-half reliability (per_task's
    with each half's baseline fitted apart; :mod:`~policygradex.pipeline.baseline_choice`), recorded in
    features/meta.json; with feature files or ``--store statistics`` (both baselines' statistics per block).
    results/baseline-choice.md applies the rule to the planted suite."""
    target_reliability: float | None = None
    """Grow N until the gradient signal reaches this split-half reliability (``--target-reliability``; None: off,
    N stays ``transitions_per_task``). After collecting N transitions per task the feature stage measures the
    split-half reliability over transitions of the gradient interaction G G^T (the number the report prints); while
    it is below the target and N is below ``max_transitions_per_task``, it collects again at the N that
    Spearman-Brown projects to reach the target (r_t (1 - r) / (r (1 - r_t)) times N, rounded up to a power-of-two
    multiple; straight to the cap when r <= 0), and measures again. Only runs whose signal is weak pay for it: a run
    already at the target is unchanged, byte for byte. results/adaptive-transitions.md measures it on the planted
    suite (the objective kind, whose tasks differ only in their reward weights, is where N is the bottleneck)."""
    max_transitions_per_task: int | None = None
    """The most transitions per task that ``target_reliability`` may grow N to; None (default): 4 x
    ``transitions_per_task``, 65,536 at the default N. A multiple of N rather than a fixed number, so that a run
    that chose a small N because its environment is slow (Highway's 2,048 at ~55 steps per second) is not grown to
    a fixed cap that would take hours. At 4 x the features store holds 4 times the bytes (105 MB per task at the
    default N and d = 400) and the feature stage takes up to ~4 + 1 times as long."""
    common_random_numbers: bool = True
    """Roll every task out from the same environment seeds and the same action noise
    (:func:`~policygradex.pipeline.features.paired_rollouts`): common random numbers, the classic way to compare
    alternatives on the same luck. Tasks that share dynamics then visit the same states and take the same actions,
    so whatever their gradients share (the base reward's advantages) carries the same sampling noise in every task,
    and what tells them apart (their own rewards) is no longer buried under independent noise. False: one vector
    env for all tasks, each sub-env its own seed. Where tasks differ only in their rewards (the planted objective
    kind, MO preference weights) the split-half reliability of the gradient signal rises most; where their dynamics
    differ the trajectories part and it helps less (results/common-random-numbers.md). Costs no environment steps,
    but each task is rolled out on its own: n times as many forward passes of ``envs_per_task`` rows each, which
    shows on vectorised toy environments (the page gives the feature stage's seconds with and without) and not where
    stepping the environment dominates. On by default (results/crn-defaults.md: the paper's families rerun with it);
    ``--no-common-random-numbers`` gives the unpaired rollouts of earlier versions."""
    expansion_points: tuple[float, ...] = (0.5, 1.0)
    """Where in meta-training the gradient features are taken, as fractions of its iterations, the last always 1
    (theta_star). ``(1.0,)`` (``--expansion-points 1``): at theta_star alone, as the paper does. With more, as the
    default ``(0.5, 1.0)``, each earlier point's policy (``points/F/theta_star.pt``) is a snapshot of
    meta-training or a shorter meta-training of its own (``expansion_policy``); the features, surrogate and affinity
    stages run at every point in its own folder (``points/F/``), and the U that is clustered is the mean of the
    points' standardised affinities (as TracIn sums influence over checkpoints); the confidence resamples every
    point. A group that theta_star already serves has
    a small, noisy gradient there; an earlier policy has not yet settled on it (results/expansion-points.md).
    The points weigh the same: one whose U is noise dilutes the others' structure rather than being outvoted.
    Costs one more feature, surrogate and affinity stage per point (and, with ``retrain``, its meta-training).
    theta_star, its features and its own U (``affinity_theta_star.npy``) are those of the run without points.
    ``(0.5, 1.0)`` is the default since results/expansion-defaults.md: on the planted suite's held-out seeds it
    recovers CartPole's reward and actuation groups that theta_star alone misses (results/planted.md), and the demo's
    and the paper families' groups are the same or train no worse. Left at the default, it resolves to ``(1.0,)``
    where a half-way policy cannot exist or cannot be used (:func:`~policygradex.pipeline.runner.with_family_defaults`:
    a meta-training of one PPO iteration, or ``--affinity per_target``); ``--expansion-points 1`` gives results
    made before the change."""
    group_points: float | None = None
    """``--group-points F``: besides the expansion points, one more point per group of a first clustering: theta_star
    fine-tuned on that group's tasks alone for F of the meta-training budget per task (:mod:`.group_points`). Every
    task's features, surrogate and U are taken there too, and the U clustered combines them with the other points'
    (``cluster.point_weights`` as for any point). An affinity from theta_star sees a conflict only where theta_star's
    own states show it: two groups paid for different places that theta_star never reaches look alike there
    (results/reward-geometry.md), while a policy serving one of them goes where they differ. None (default): off.
    Costs per group a fine-tuning (F of the budget, over that group's tasks) and a feature, surrogate and affinity
    stage over all n tasks: O(k n N) more transitions for k groups."""
    expansion_policy: Literal["snapshot", "retrain"] = "retrain"
    """Where an earlier expansion point's policy comes from. ``snapshot``: meta-training's own policy after that
    fraction of its iterations, its learning rate not yet annealed (no extra training). ``retrain``: a meta-training
    of its own, same seed, on that fraction of the budget, annealed to its end (costs that fraction of
    meta-training again; what results/expansion-points.md measured first as separate runs). ``retrain`` is the
    default: on the tuning seeds it is level with ``snapshot`` (+0.05 +- 0.04 NMI over 10 runs, not resolved) but
    keeps every run at or above 0.8, where ``snapshot`` drops one to 0.72."""
    holdout_fraction: float = 0.25
    """Fraction of each task's transitions (the last ones in time) held out from the fits, to evaluate f^ out of
    sample (``surrogate.evaluation``) and to report the in-sample vs held-out gap, a measure of how much the v_S
    overfit. With the default in-sample evaluation, 0 fits on every transition as the paper does; the measurements
    behind the default were taken at 0.25."""


@dataclass(frozen=True)
class SurrogateConfig:
    """Subset sampling and the weighted logistic-regression surrogate (paper eq. 3-4)."""

    method: Literal["auto", "exact", "newton", "closed_form"] = "auto"
    """How f^ and the affinity are computed (:mod:`policygradex.pipeline.statistics` derives the fast ones).
    ``exact``: the paper's m weighted logistic fits (batched L-BFGS) on sampled subsets, O(m) fits with m = 3 n^2.
    ``newton``: the same subsets, each f^ from one Newton step on per-task sufficient statistics (the quadratic
    model of the loss at theta_star): one d x d solve per subset and no pass over the transitions. ``closed_form``:
    no subsets; U is the limit of the subset average over all subsets under a curvature shared by every subset,
    from per-task statistics alone (O(n d^2 + n^2 d)); the confidence then resamples blocks of transitions.
    ``auto`` (default): ``exact`` up to 12 tasks, ``newton`` up to 40, ``closed_form`` above
    (:data:`policygradex.pipeline.surrogate.AUTO_NEWTON_MAX_N`; results/surrogate-reduction.md measures the
    agreement behind it: Newton 1.000 with the exact fits on six families, the closed form 0.50-0.999)."""
    curvature: Literal["shared", "first_order"] = "shared"
    """``closed_form`` only: how the per-task curvatures H_k enter U. ``shared`` (default): one mean curvature for
    every subset, U quadratic in the per-task b_k. ``first_order``: plus the first-order term of each task's own
    H_k - mean H (:mod:`policygradex.pipeline.closed_form`; one more pass over the features). Measured against the
    exact fits on 10-task runs (results/surrogate-reduction.md), the first-order term raised U's agreement on
    cartpole (0.94 -> 0.99), lunarlander and mt10 and broke it on highway (0.98 -> 0.33), where the curvature series
    needs its second-order term (0.998 by brute force): not a default until that is in."""
    blocks: int = 32
    """Contiguous blocks in time of each task's fitting transitions whose gradient sums are kept (statistics.npz):
    the replicates behind the bootstrap and the split-half reliability over transitions."""
    curvature_rows: int | None = None
    """Transitions per task (evenly spaced in time) the shared curvature of ``closed_form`` averages over. None: all
    fitting transitions from stored features; under ``--store statistics``, where each costs a per-sample gradient,
    about 32,768 in all spread over the tasks (:func:`~.gradient_statistics.auto_curvature_rows`). The curvature
    costs O(rows d^2) per task, the rest O(rows d)."""
    subset_size: int | None = None
    """alpha: tasks per sampled subset. None: min(5, max(2, n // 2)), i.e. 5 for the paper's 10-task families."""
    num_subsets: int | None = None
    """m: number of subsets. None: 3 n^2 (the paper's m = O(n^2)); more are added until every pair is covered."""
    l2: float = 0.1
    """L2 strength lambda2 in (1/|D_S|) sum w log(1 + exp(-y g.v)) + lambda2/2 ||v||^2. The default keeps the
    adapted policy near theta_star, where the first-order model holds: on the cartpole demo, ||P v|| / ||theta_star||
    has median ~2% at 0.1 but ~28% at 1e-3 (the paper's Table 1 finds the linearisation good to ~1% distance)."""
    evaluation: Literal["in_sample", "held_out"] = "in_sample"
    """Evaluate f^(S) = -L_S(v_S) on the fitting transitions, the paper's L^ (default), or on each task's held-out
    ones. Both are always computed and stored in subsets.npz; this picks the one eq. 5 averages into U.

    Measured against real fine-tuning (results/evaluation.md), in-sample is the better estimate at the run's N:
    on cartpole, whose ground truth is reproducible (seed reliability 0.86), its standardised U correlates 0.43
    (run's transitions) and 0.57 (fresh transition samples) with the true one, held-out's 0.18 and -0.30; on
    lunarlander, whose ground truth at our budget is mostly seed noise (reliability 0.25), neither is distinguishable
    from zero. At N = 2048 the held-out loss is dominated by each v_S's overfitting to its few fitting transitions,
    which is noise for the affinity; held-out becomes competitive only at N >= 8192."""
    max_iter: int = 500
    """Iteration cap of the batched L-BFGS solver."""
    tol: float = 1e-6
    """Stop when every subset's gradient infinity-norm is below tol."""
    history: int = 10
    """L-BFGS memory."""
    dtype: Literal["float32", "float64"] = "float64"
    """Precision of the solver (features are stored as float32)."""


@dataclass(frozen=True)
class ClusterConfig:
    """Affinity matrix and clustering (paper eq. 5 and the trace-regularised SDP of Awasthi et al. 2015)."""

    affinity: Literal["subset", "per_target"] = "subset"
    """``subset``: U_ij = mean f^(S) over subsets holding i and j (eq. 5). ``per_target``: mean of task i's own
    held-out loss (negated) over those subsets, symmetrised (U + U^T)/2 before clustering."""
    interaction: Literal["subsets", "matrix"] = "subsets"
    """Where per-task (additive) effects are removed before clustering. ``subsets`` (default): f^(S) minus its
    least-squares fit c + sum_{k in S} a_k over the subsets, then eq. 5 (``affinity.npy`` is that interaction U,
    diagonal 0). ``matrix``: eq. 5 on f^ itself, as the paper writes it, and the additive part removed from U.
    They agree when all C(n, alpha) subsets are used; otherwise each pair's U_ij in ``matrix`` also carries the
    per-task effects of the third tasks it shared subsets with, which are orders of magnitude above the pairwise
    part of f^ (the split-half check made that visible: halves of the subsets anti-correlated at r ~ -0.95)."""
    k: int | None = None
    """Fixed number of groups (tr X = k). None: the penalty form with lambda given or chosen on a grid."""
    lam: float | None = None
    """Trace penalty lambda on the standardised affinity (units: standard deviations). None: chosen on a grid."""
    lam_grid_size: int = 25
    """Points of the log-spaced lambda grid used when neither k nor lam is given."""
    min_silhouette: float = 0.25
    """On the lambda grid: below this best silhouette the tasks show no substantial structure and form one group."""
    solver: Literal["SCS", "CLARABEL"] = "SCS"
    """cvxpy solver for the SDP (SCS is ~50x faster at n = 100; Clarabel is more accurate)."""
    method: Literal["auto", "exact", "sdp", "exhaustive", "fast"] = "auto"
    """How the partition is found: ``exact`` scores every partition (n <= 12; ``exhaustive`` is the same); ``sdp``
    solves the relaxation, rounds X several ways and improves each rounding by moves and swaps; ``auto`` (default):
    exact for n <= 12, sdp up to 100 tasks, fast above. ``fast``: spectral and pivoted-QR starts, an incremental
    local search, merge-split moves and a Burer-Monteiro polish, with Fan's spectral bound instead of the SDP's
    (results/bench_clustering.md). Either way the report gives the relaxation gap. (Before, the SDP's
    average-linkage rounding alone missed the best k = 3 partition of the cartpole demo's U: 4.08 vs 4.37.)"""
    bootstrap_method: Literal["auto", "exact", "sdp", "fast"] = "auto"
    """How each bootstrap resample is reclustered (always at the run's k, warm-started from the run's groups).
    ``auto`` (default): exact for n <= 12, fast above. A resample asks whether the run's groups survive, not for a
    certificate, and 50 SDPs dominated the cluster stage at 100 tasks; results/confidence-at-scale.md compares the
    group Jaccards and the time under sdp and fast resamples."""
    exhaustive_check: bool = True
    """For n <= 12 with ``sdp``, also search all partitions with the same k and report whether the SDP groups are
    optimal."""
    point_weights: Literal["equal", "reliability"] = "equal"
    """How the expansion points' U's are weighted in the U clustered (``--point-weights``; one point: unused).
    ``equal`` (default): each point's standardised U the same. ``reliability``: each point by max(r, 0), r the
    split-half reliability over transitions of its gradient interaction (the confidence's gradient signal, measured
    at that point alone): the share of its U that reproduces, so a point whose tasks' gradients are noise there
    counts for little (all r <= 0: equal weights). results/third-point.md measures it on planted runs (ahead of
    equal by a few hundredths, not resolved); on the LunarLander demo it drops theta_star (r < 0) and the groups
    it gives train worse than equal weights' (results/choice-defaults.md)."""


@dataclass(frozen=True)
class RunConfig:
    """A whole PolicyGradEx run on one task family."""

    family: str = "cartpole"
    """Built-in family name or ``package.module:function`` returning a TaskFamily."""
    seed: int = 0
    """Master seed: torch, numpy, environments, the projection and the subset sampler derive from it."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """Policy network."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """Meta-training (stage 1)."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    """Gradient features (stage 2)."""
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    """Surrogate fits (stage 3)."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    """Affinity and clustering (stages 4-5)."""

    # every random stream of a run derives from ``seed`` here, and only here
    @property
    def feature_seed(self) -> int:
        """Seed of the rollouts of theta_star whose transitions become the gradient features."""
        return self.seed + 1

    def feature_block_seed(self, block: int) -> int:
        """Seed of block ``block``'s rollouts in the feature stage (block 0: ``feature_seed`` itself). With
        ``common_random_numbers`` every block's is ``feature_seed``: every task then shares the same luck, whichever
        block it is in, and its transitions do not depend on the block size."""
        return self.feature_seed + (0 if self.features.common_random_numbers else 1_000_003 * block)

    @property
    def projection_seed(self) -> int:
        """Seed of the random projection P (any d: P's blocks are drawn from (projection_seed, block))."""
        return self.seed + 2

    @property
    def earlier_points(self) -> dict[float, int]:
        """The expansion points before theta_star (``features.expansion_points`` without the last, 1): each
        fraction and the iteration whose policy it is: round(fraction x iterations) of meta-training (at least 1)
        for ``snapshot``, the last of its own shorter meta-training for ``retrain``."""
        fractions = self.features.expansion_points[:-1]
        if self.features.expansion_policy == "retrain":
            return {f: replace(self.ppo, steps_per_task=max(1, round(f * self.ppo.steps_per_task))).iterations
                    for f in fractions}
        return {f: max(1, round(f * self.ppo.iterations)) for f in fractions}

    @property
    def subset_seed(self) -> int:
        """Seed of the subset sampler."""
        return self.seed + 3

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """The configuration a stored record (a run's config.json, a job's arguments) describes. A field the record
        lacks was added after it was written: it takes the value the run actually ran with, which is the field's
        default unless the default has changed since (:data:`LEGACY_VALUES`)."""
        return _from_dict(cls, data)


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise PolicyGradExError(f"unknown {cls.__name__} field(s) {sorted(unknown)}; known: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        sub = _NESTED.get((cls, name))
        if sub is not None and isinstance(value, dict):
            value = _from_dict(sub, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    for (owner, name), value in LEGACY_VALUES.items():
        if owner is cls and name not in data:
            kwargs[name] = value
    return cls(**kwargs)


LEGACY_VALUES: dict[tuple[type, str], Any] = {
    (FeatureConfig, "baseline"): "policy",
    (FeatureConfig, "common_random_numbers"): False,
    (FeatureConfig, "max_transitions_per_task"): 65536,
    (FeatureConfig, "expansion_points"): (1.0,),
}
"""Fields whose default has changed since they were added, with what a record written before they existed ran with:
the value advantages came from the policy's value head, each task rolled out unpaired, the growth cap was a
fixed 65,536 transitions, and the features were taken at theta_star alone. :meth:`RunConfig.from_dict` fills a
missing field with it, so that an older run directory reads as what it ran (``variant``, ``show``) and is not
resumed as if it matched the new defaults. A default changed in future adds its field here."""

_NESTED = {
    (RunConfig, "network"): NetworkConfig,
    (RunConfig, "ppo"): PPOConfig,
    (RunConfig, "features"): FeatureConfig,
    (RunConfig, "surrogate"): SurrogateConfig,
    (RunConfig, "cluster"): ClusterConfig,
}


def _preset_tiny(cfg: RunConfig) -> RunConfig:
    """Seconds: for tests. Enough to exercise every stage, not to learn anything."""
    return replace(
        cfg,
        network=replace(cfg.network, hidden_sizes=(16, 16, 16)),
        ppo=replace(cfg.ppo, steps_per_task=512, envs_per_task=2, num_steps=64, checkpoint_every=2),
        features=replace(cfg.features, transitions_per_task=128, envs_per_task=2, projection_dim=32),
        surrogate=replace(cfg.surrogate, max_iter=200),
        cluster=replace(cfg.cluster, lam_grid_size=8),
    )


def _preset_demo(cfg: RunConfig) -> RunConfig:
    """About two minutes on 2 CPU cores: the README demo (100k steps per task)."""
    return replace(cfg, ppo=replace(cfg.ppo, steps_per_task=100_000))


def _preset_paper(cfg: RunConfig) -> RunConfig:
    """The paper's settings: 2048 steps per task per rollout, 1M steps per task, N = 2048, d = 400."""
    return replace(cfg, ppo=replace(cfg.ppo, envs_per_task=4, num_steps=512, steps_per_task=1_000_000),
                   features=replace(cfg.features, transitions_per_task=2048))


def preset_summary() -> str:
    """One line per preset with its budget, for --help."""
    out = []
    for name in ("tiny", "demo", "default", "paper"):
        c = PRESETS[name](RunConfig())
        out.append(f"{name}: {c.ppo.steps_per_task:,} steps/task, N = {c.features.transitions_per_task:,}, "
                   f"d = {c.features.projection_dim}, hidden {list(c.network.hidden_sizes)}")
    return "; ".join(out)


PRESETS = {"tiny": _preset_tiny, "demo": _preset_demo, "paper": _preset_paper, "default": lambda c: c}


def apply_preset(cfg: RunConfig, preset: str) -> RunConfig:
    if preset not in PRESETS:
        raise PolicyGradExError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset](cfg)
