"""Signal handling shared by the command and the launcher's pool workers."""

from __future__ import annotations

import os
import signal


def end_by_default(signum: int) -> None:
    """End this process as the signal's default action does: quietly, with the signal as its exit status.

    For a handler that must not act in this process, e.g. one a vector env's subprocess inherited by fork from the
    command or from a pool worker: raised there, its exception printed a traceback per subprocess."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
