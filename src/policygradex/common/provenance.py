"""Where a result came from: the package version and, in a git checkout, the commit of the source."""

from __future__ import annotations

import subprocess
from pathlib import Path

from policygradex import __version__


def source_commit() -> str | None:
    """The git commit of the policygradex source in use (``+dirty`` when tracked files differ from it); None when the
    package is not installed from a git checkout, or git is not there."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def provenance() -> dict[str, str | None]:
    """The versions a saved artifact records: policygradex, its commit, torch and gymnasium."""
    import gymnasium
    import torch

    return {"policygradex": __version__, "commit": source_commit(), "torch": str(torch.__version__),
            "gymnasium": str(gymnasium.__version__)}
