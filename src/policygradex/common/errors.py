"""The one exception type users see: the CLI prints its message on one line and exits non-zero."""


class PolicyGradExError(Exception):
    """A user-facing error: bad input, a corrupt run directory, an impossible configuration.

    The message says what was wrong and what to do about it; no traceback is shown for it.
    """
