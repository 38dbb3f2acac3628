"""Policy networks: the interface the pipeline relies on (``base.Policy``), the registry, the MLP actor-critic."""
