"""The PolicyGradEx pipeline: meta-train theta_star, gradient features, surrogate, affinity, clustering, and the
runner that keeps them in a resumable run directory (``runner.run_pipeline``)."""
