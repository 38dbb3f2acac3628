"""``adapt``: the surrogate's adapted parameters for one sampled subset, theta^(S) = theta_star + P v_S, written as a
state_dict of the run's network (actor moved, critic unchanged)."""

from __future__ import annotations

from pathlib import Path

from policygradex.analysis.context import load_context
from policygradex.common.artifacts import atomic_torch_save, load_npy
from policygradex.common.errors import PolicyGradExError
from policygradex.nets.base import flat_params
from policygradex.pipeline.features import projection_for
from policygradex.pipeline.subset_table import SubsetTable
from policygradex.pipeline.surrogate import reconstruct_theta, relative_distance


def adapt_subset(run_dir: Path, subset: int, output: Path) -> str:
    """Write theta^(S) for subset number ``subset`` of subsets.npz to ``output``; returns a one-line summary."""
    if Path(output).is_dir():
        raise PolicyGradExError(f"--output {output} is a directory; give a file name such as theta_0.pt")
    ctx = load_context(run_dir, need=("subsets",))
    if not ctx.rd.surrogate_v.exists():
        raise PolicyGradExError(f"{ctx.rd.surrogate_v} is missing; finish the run first "
                                f"(`policygradex run ... --out {ctx.rd.path}`)")
    V = load_npy(ctx.rd.surrogate_v)
    if not 0 <= subset < len(V):
        raise PolicyGradExError(f"--subset {subset} out of range: the run has {len(V)} subsets (0..{len(V) - 1})")
    model, names = ctx.model, ctx.model.policy_parameter_names()
    theta_star = flat_params(model, names)
    theta = reconstruct_theta(theta_star, projection_for(ctx.cfg, model), V[subset])
    state = model.state_dict()
    offset = 0
    for name in names:
        size = state[name].numel()
        state[name] = theta[offset : offset + size].reshape(state[name].shape).clone()
        offset += size
    atomic_torch_save({"state_dict": state}, output)
    members = [ctx.names[i] for i in SubsetTable.load(ctx.rd.subsets).subsets[subset]]
    return (f"theta^(S) for subset {subset} {members} -> {output} "
            f"(||theta - theta_star|| / ||theta_star|| = {relative_distance(theta_star, theta):.3%})")
