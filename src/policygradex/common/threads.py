"""One place that fixes how many threads the numerical libraries use, so that results do not depend on the machine.

torch's intra-op pool, and the BLAS / OpenMP pools that numpy, scipy and scikit-learn use, split reductions
differently for different thread counts, so a sum comes out different in its last bits, PPO amplifies that over
thousands of updates, and the groups change (make demo with OMP_NUM_THREADS=1 vs 2 gave a U correlated only 0.89
between the two on main c4a3cbb). Every command therefore runs with a fixed count, 1 by default, whatever
OMP_NUM_THREADS says. Measured on the demo (results/bench_threads.md, 2 idle cores): one thread is the fastest for
meta-training, two make the features and the batched fits 1.4x and 2.7x faster (the whole run 1.3x) but give
other groups; on a loaded machine two threads oversubscribe (the demo took 689 s instead of 44 s on main).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits


@contextmanager
def thread_limit(threads: int = 1) -> Iterator[None]:
    """Run the body with ``threads`` torch intra-op threads and at most ``threads`` BLAS / OpenMP threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(old)
