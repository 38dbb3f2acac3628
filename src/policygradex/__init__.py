"""policygradex: which of my n RL tasks should be trained together? (PolicyGradEx, AAAI 2026)."""

__version__ = "0.1.0"
