"""Plumbing every layer may use: the user-facing error, atomic artifacts, thread limits, progress, figures."""
