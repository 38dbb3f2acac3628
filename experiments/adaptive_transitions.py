"""results/adaptive-transitions.md: what ``--target-reliability`` changes on the planted suite, run by run.

For each run under ``--grown`` (runs with ``--baseline per_task --target-reliability R``, started from the same
theta_star as their twin under ``--twins``, the per_task runs at the fixed N = 16,384), the N the feature stage grew
to with the reliability measured at each step, the NMI against the planted groups before and after, the stable
groups and whether they match, and the feature stage's seconds with and without the growth.

    python experiments/adaptive_transitions.py --grown runs/suite-tr --twins runs/suite-pt \
        --out results/adaptive-transitions.md

Only runs whose reliability at N = 16,384 was below the target are under ``--grown``: the others are unchanged by
the option, byte for byte (tests/pipeline/test_transitions_budget.py guards that).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_suite import TUNING_SEEDS, kind_and_env, mean_se, paired, score, versions  # noqa: E402

from policygradex.common.artifacts import load_json  # noqa: E402


def same_bytes(a: Path, b: Path, names: tuple[str, ...] = ("affinity.npy", "subsets.npz", "groups.json")) -> bool:
    """Whether the two runs wrote the same affinity, subsets and groups (groups.json less its cluster_config)."""
    for name in names:
        x, y = (p / name for p in (a, b))
        if x.exists() != y.exists():
            return False
        if name == "groups.json" and x.exists():
            gx, gy = (load_json(p) for p in (x, y))
            gx.pop("cluster_config", None), gy.pop("cluster_config", None)
            if gx != gy:
                return False
        elif x.exists() and x.read_bytes() != y.read_bytes():
            return False
    return True


def row(grown: Path, twin: Path) -> dict:
    cfg = load_json(grown / "config.json")["config"]
    kind, env = kind_and_env(cfg["family"])
    meta = load_json(grown / "features" / "meta.json")
    a, b = score(twin), score(grown)
    seconds = [load_json(p / "timings.json").get("features") for p in (twin, grown)]
    return {"family": env, "kind": kind, "seed": int(cfg["seed"]), "growth": meta.get("growth", []),
            "nmi_fixed": a["nmi"], "nmi_grown": b["nmi"], "stable_fixed": (a["stable_groups_correct"], a["stable_groups"]),
            "stable_grown": (b["stable_groups_correct"], b["stable_groups"]), "seconds": seconds,
            "target": cfg["features"]["target_reliability"], "same_bytes": same_bytes(grown, twin)}


def tuning_text(rows: list[dict], what: str) -> str:
    """The objective kind's tuning seeds at the fixed N, in seed order: reliability or NMI, e.g. ``0.79, 0.81 and
    0.33 (seeds 0, 1, 2)``."""
    if not rows:
        return "-"
    values = [r["growth"][0]["reliability"] if what == "reliability" else r["nmi_fixed"] for r in rows]
    cells = [f"{v:.2f}" for v in values]
    text = cells[0] if len(cells) == 1 else ", ".join(cells[:-1]) + " and " + cells[-1]
    return f"{text} (seed{'s' if len(rows) > 1 else ''} {', '.join(str(r['seed']) for r in rows)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grown", type=Path, required=True)
    ap.add_argument("--twins", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    for run in sorted(p.parent for p in args.grown.glob("*/groups.json")):
        twin = args.twins / run.name
        if (twin / "groups.json").exists():
            rows.append(row(run, twin))
    rows.sort(key=lambda r: (r["family"], r["kind"], r["seed"]))
    target = rows[0]["target"] if rows else None
    tuning = [r for r in rows if r["kind"] == "objective" and r["seed"] in TUNING_SEEDS]
    kept = [r for r in rows if len(r["growth"]) == 1]  # at the target already: the option must change nothing
    rows = [r for r in rows if len(r["growth"]) > 1]
    lines = [
        "# Transitions per task chosen by the reliability of the gradient signal (`--target-reliability`)", "",
        f"Each run below is a planted-suite run (`planted(kind=K,env=E,n=12,groups=3)`, `--preset demo --k 3 "
        f"--baseline per_task`) whose gradient signal at the fixed N = 16,384 had a split-half reliability below "
        f"{target}, run again from the same theta_star with `--target-reliability {target}` (cap: "
        "65,536, the default `--max-transitions` of 4 x N). The feature stage measures the reliability, grows N by the "
        "Spearman-Brown projection (rounded up to a power-of-two multiple) and measures again "
        "(pipeline/transitions_budget.py). Runs at or above the target are unchanged by the option, byte for byte.", "",
        "Why 0.9: chosen on the tuning seeds 0-2 of the objective kind, the one kind whose fixed-N runs were short "
        "of signal there: under the per-task baseline's first reliability statistic (its value functions fitted on "
        "both halves at once, which overstated it; results/baseline-reliability.md) a target of 0.8 would have left "
        "seed 1 as it was (0.81, NMI 0.67), and 0.9 grew all three. Measured as the feature stage now measures it, "
        f"with each half's value functions fitted apart, those seeds read {tuning_text(tuning, 'reliability')} at "
        f"N = 16,384 (NMI {tuning_text(tuning, 'nmi')}), so "
        + (f"any target above {max(r['growth'][0]['reliability'] for r in tuning):.2f} grows all three and the tuning "
           "seeds no longer tell 0.8 from 0.9; 0.9 is kept. " if tuning else "")
        + "A higher target would grow more of the other kinds' runs at no gain on the tuning seeds. Seeds 10 and up "
        "are held out: reported, never used to choose. Only the objective kind has been rerun with the honest "
        "statistic (the other kinds' per_task runs below 0.9 would grow too).", "",
        f"Package versions: {versions()}.", "",
        "```", " ".join(["python experiments/adaptive_transitions.py", *sys.argv[1:]]), "```", "",
        "| family | kind | seed | reliability by N | NMI at N = 16,384 | NMI grown | stable groups correct / called "
        "(fixed, grown) | feature stage seconds (fixed, grown) |",
        "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        trail = ", ".join(f"{g['reliability']:.2f} at {g['N']:,}" if g["reliability"] is not None
                          else f"- at {g['N']:,}" for g in r["growth"])
        held = "" if r["seed"] in TUNING_SEEDS else " (held out)"
        sec = " / ".join("-" if s is None else f"{s:.0f}" for s in r["seconds"])
        lines.append(f"| {r['family']} | {r['kind']} | {r['seed']}{held} | {trail} | {r['nmi_fixed']:.2f} | "
                     f"{r['nmi_grown']:.2f} | {r['stable_fixed'][0]} / {r['stable_fixed'][1]}, "
                     f"{r['stable_grown'][0]} / {r['stable_grown'][1]} | {sec} |")
    if kept:
        lines += ["", "## Runs already at the target: unchanged", "",
                  "The same runs with the option, where the reliability at N = 16,384 met the target: no growth, and "
                  "the affinity, subsets and groups compared byte for byte with the per_task twin's.", "",
                  "| family | kind | seed | reliability at N = 16,384 | same affinity, subsets and groups |",
                  "|---|---|---|---|---|"]
        for r in kept:
            rel = r["growth"][0]["reliability"]
            lines.append(f"| {r['family']} | {r['kind']} | {r['seed']} | {'-' if rel is None else f'{rel:.2f}'} | "
                         f"{'yes' if r['same_bytes'] else 'NO'} |")
    lines += ["", "## By kind", "",
              "| family | kind | seeds | runs grown | NMI at N = 16,384 | NMI grown | grown - fixed (paired) |",
              "|---|---|---|---|---|---|---|"]
    for is_held, which in ((False, "tuning"), (True, "held out")):
        sel = [r for r in rows if (r["seed"] not in TUNING_SEEDS) == is_held]
        for fam, kind in sorted({(r["family"], r["kind"]) for r in sel}):
            rs = [r for r in sel if (r["family"], r["kind"]) == (fam, kind)]
            a, b = [r["nmi_fixed"] for r in rs], [r["nmi_grown"] for r in rs]
            lines.append(f"| {fam} | {kind} | {which} | {len(rs)} | {mean_se(a)} | {mean_se(b)} | {paired(b, a)} |")
    lines += ["", "NMI against the planted groups; mean ± standard error over the runs grown (only the runs below "
              "the target are here, so the kind's mean over all its seeds is in results/planted.md)."]
    if rows:
        ratio = np.array([r["seconds"][1] / r["seconds"][0] for r in rows if None not in r["seconds"]])
        if len(ratio):
            lines += ["", f"Cost: the feature stage of a grown run took {ratio.mean():.1f} x its fixed-N twin's "
                          f"(min {ratio.min():.1f}, max {ratio.max():.1f}; N = 16,384 once, then the grown N)."]
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
