"""The paper's Table 2, transcribed once for the results scripts: mean ± std over 5 runs.

Meta-World is the success rate (%) of one policy per group trained with Soft Modularization (k = 3); the control
columns are returns after 200 MAML adaptation steps on 50 unseen tasks (the meta-RL setting). CARE has no control
entries ("does not apply to the control tasks in the meta-RL setting").
"""

from __future__ import annotations

ROWS = {  # row key -> the paper's row name, in the paper's order
    "multitask": "Multi-task training",
    "softmod": "Soft Modularization",
    "paco": "PaCo",
    "care": "CARE",
    "random": "Random groups",
    "gradient_similarity": "Gradient-similarity groups",
    "policygradex": "Algorithm 2 (PolicyGradEx)",
}

TABLE2: dict[str, dict[str, str]] = {
    "metaworld": {"multitask": "71.3 ± 1.2", "softmod": "82.0 ± 1.1", "paco": "73.1 ± 1.1", "care": "84.0 ± 1.8",
                  "random": "58.2 ± 6.2", "gradient_similarity": "69.6 ± 1.9", "policygradex": "94.0 ± 2.8"},
    "cartpole": {"multitask": "145.9 ± 9.0", "softmod": "139.3 ± 9.5", "paco": "144.5 ± 5.2",
                 "random": "144.1 ± 10.1", "gradient_similarity": "142.0 ± 8.2", "policygradex": "159.2 ± 3.8"},
    "highway": {"multitask": "140.0 ± 4.6", "softmod": "141.3 ± 3.5", "paco": "136.6 ± 6.4",
                "random": "143.4 ± 5.4", "gradient_similarity": "135.6 ± 7.6", "policygradex": "153.5 ± 7.8"},
    "lunarlander": {"multitask": "53.8 ± 14.6", "softmod": "66.1 ± 13.0", "paco": "62.6 ± 11.4",
                    "random": "73.1 ± 11.7", "gradient_similarity": "80.8 ± 6.9", "policygradex": "82.8 ± 6.9"},
}
"""Column (family) -> row key -> the paper's "mean ± std"."""


def paper_rows(column: str, keys: dict[str, str]) -> dict[str, tuple[str, str]]:
    """{our row key: (the paper's row name, its entry)} for the paper rows a results table has, in the paper's order.
    ``keys`` maps the paper's row key to ours (e.g. "softmod" -> "all tasks (softmod)")."""
    column_entries = TABLE2[column]
    return {keys.get(row, row): (name, column_entries[row]) for row, name in ROWS.items() if row in column_entries}
