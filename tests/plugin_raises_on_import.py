"""A plug-in module that fails while it is imported (a user's bug, not ours): the CLI must say so in one line."""

raise RuntimeError("this plug-in is broken at import time")
