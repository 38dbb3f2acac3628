"""Commands that evaluate a finished run against real training (check-linear, ground-truth, compare, stability,
hessian, adapt), and the job launcher they share."""
