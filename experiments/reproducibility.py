r"""results/reproducibility.md: the same run on other floating-point paths (another machine, another math-kernel
branch). Same input gives byte-identical output on one machine at any thread count and after any interruption (the
tests guard that); this page shows what changes when the arithmetic itself changes in its last bits.

    policygradex run cartpole --preset demo --k 3 --out runs/demo-cartpole
    ATEN_CPU_CAPABILITY=avx2 policygradex run cartpole --preset demo --k 3 --out runs/demo-cartpole-avx2
    MKL_CBWR=AVX2 policygradex run cartpole --preset demo --k 3 --out runs/demo-cartpole-mkl-AVX2
    MKL_CBWR=AVX512 policygradex run cartpole --preset demo --k 3 --out runs/demo-cartpole-mkl-AVX512
    git worktree add /tmp/old8a 8a0bfcf    # the code that wrote results/demo.md on 2026-11-25
    (cd /tmp/old8a && PYTHONPATH=src python -c "import sys; from policygradex.cli import main; sys.exit(main())" \
        run cartpole --preset demo --k 3 --out /tmp/old-demo)
    python experiments/reproducibility.py \
        "this machine, today's code=runs/demo-cartpole" \
        "this machine, the code of 2026-11-25 (8a0bfcf)=/tmp/old-demo" \
        "this machine, ATEN_CPU_CAPABILITY=avx2=runs/demo-cartpole-avx2" \
        "this machine, MKL_CBWR=AVX2=runs/demo-cartpole-mkl-AVX2" \
        "this machine, MKL_CBWR=AVX512=runs/demo-cartpole-mkl-AVX512" \
        --earlier 8a0bfcf:results/demo.md --out results/reproducibility.md

The first run is the reference: every other row says whether its theta_star and affinity equal the reference's
byte for byte. ``--earlier COMMIT:PAGE`` adds the groups and signal that a committed demo page printed (made on the
machine of that time).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_results import cpu_model, cpuinfo, versions  # noqa: E402


def cpu_description() -> str:
    """The CPU's model name and its widest vector extension, as /proc/cpuinfo says."""
    flags = set((cpuinfo("flags") or "").split())
    widest = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{cpu_model()} ({widest}; torch's CPU capability {torch.backends.cpu.get_cpu_capability()})"


def same_theta(a: Path, b: Path) -> bool:
    sa = torch.load(a / "theta_star.pt", weights_only=False)["state_dict"]
    sb = torch.load(b / "theta_star.pt", weights_only=False)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def groups_text(groups: list[list[str]]) -> str:
    return " ".join("{" + ", ".join(t.split("=")[-1] for t in g) + "}" for g in groups)


def run_row(label: str, run: Path, equal: tuple[bool, bool] | None) -> str:
    """A table row; ``equal``: whether theta_star and the affinity equal the reference's (None: the reference)."""
    g = json.loads((run / "groups.json").read_text())
    conf = g["confidence"]
    rel = conf.get("gradient_reliability")
    theta, aff = ("reference", "reference") if equal is None else ("yes" if same else "no" for same in equal)
    word = conf.get("verdict", "").split(":")[0]
    return (f"| {label} | {groups_text(g['groups'])} | {'-' if rel is None else f'{rel:.2f}'} | {word} | "
            f"{theta} | {aff} |")


def earlier_row(spec: str) -> str:
    """The groups and gradient signal of the cartpole section of a committed demo page."""
    commit, page = spec.split(":", 1)
    text = subprocess.run(["git", "show", f"{commit}:{page}"], check=True, capture_output=True, text=True).stdout
    section = text.split("## cartpole", 1)[1].split("\n## ", 1)[0]
    groups = [line.split(":", 1)[1].strip().split(", ") for line in section.splitlines()
              if re.match(r"- group \d+:", line)]
    rel = re.search(r"split-half reliability of the gradient interaction\): (-?\d+(?:\.\d+)?)", section)
    word = re.search(r"\*\*How sure:\*\* ([^:]+):", section)
    return (f"| the machine of {commit}'s {page} | {groups_text(groups)} | {rel.group(1) if rel else '-'} | "
            f"{word.group(1) if word else ''} | - | - |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR; the first is the reference")
    ap.add_argument("--earlier", default=None, help="COMMIT:PAGE of a committed demo page to add as a row")
    ap.add_argument("--out", type=Path, default=Path("results/reproducibility.md"))
    args = ap.parse_args()
    pairs = [(s.rsplit("=", 1)[0], Path(s.rsplit("=", 1)[1])) for s in args.runs]
    reference = pairs[0][1]
    lines = [
        "# Reproducibility: the same run on other floating-point paths",
        "",
        "On one machine, the same seed and options give byte-identical theta_star, affinity and groups at any thread",
        "count and after any interruption (tests/pipeline/test_determinism.py). Across machines they need not: the",
        "math kernels (MKL's, behind torch's matrix products) choose their code path by CPU, the last bits of a",
        "matrix product differ with it, and PPO's meta-training amplifies a last-bit difference into another",
        "theta_star within a few iterations. Below, the CartPole demo (`--preset demo --k 3`, seed 0) on several",
        "floating-point paths.",
        "",
        f"This machine: {cpu_description()}, 2 cores, one torch thread (the default).",
        f"Package versions: {versions()}.",
        "",
        "```",
        *textwrap.dedent(__doc__.split("\n\n")[1]).splitlines(),
        "```",
        "",
        "| floating-point path | groups (pole lengths) | gradient signal reliability | verdict | theta_star equal | "
        "affinity equal |",
        "|---|---|---|---|---|---|",
    ]
    if args.earlier:
        lines.append(earlier_row(args.earlier))
    affinity = (reference / "affinity.npy").read_bytes()
    equal = {label: (same_theta(run, reference), (run / "affinity.npy").read_bytes() == affinity)
             for label, run in pairs[1:]}
    lines += [run_row(label, run, equal.get(label)) for label, run in pairs]
    lines += ["", "What this says:", ""]
    for label, (theta, aff) in equal.items():
        path = label.split(", ", 1)[-1]
        if "code of" in label:
            same = theta and aff
            lines.append(f"- {path.capitalize()} gives {'the same' if same else 'another'} theta_star and affinity "
                         f"as today's code on this machine" + (", byte for byte: the machine, not the code, moved "
                                                               "the groups away from the earlier page"
                                                               if same and args.earlier else "") + ".")
        else:
            lines.append(f"- {path}: {'no byte changes' if theta and aff else 'another theta_star and affinity'}.")
    lines += [
        "- Where the verdict says the gradient signal is noise, the groups change with the last bits of the",
        "  arithmetic, as the verdict warns: the demo's groups are one seed's theta_star, not a property of the",
        "  family. Compare seeds (or a larger --transitions) before acting on groups the verdict calls noise.",
        "- Bitwise reproducibility across machines would need every kernel pinned to one code path (MKL_CBWR for",
        "  MKL, and likewise for the other libraries); not attempted here: it cannot be checked without the other",
        "  machine.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
