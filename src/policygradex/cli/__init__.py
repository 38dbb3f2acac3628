"""The ``policygradex`` command line: argument parsing (``parser``, ``options``) and the commands (``main``)."""
