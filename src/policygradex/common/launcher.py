"""Job launcher: many independent trainings (subsets, groups, seeds) through one interface.

A :class:`JobSpec` names a job function (``package.module:function``), its JSON-able arguments and an explicit
seed. Its result (a JSON-able dict) is cached under ``cache_dir/<sha256 of the spec>.json``, written atomically
when the job finishes, so an interrupted evaluation resumes where it stopped and a spec seen before is never
recomputed. Three backends run the jobs that are not cached yet:

- ``sequential``: one after the other in this process;
- ``process`` (default): a local pool of worker processes (``spawn``, so no forked torch state);
- ``ray``: Ray tasks on a local or remote cluster (``pip install policygradex[ray]``; the cache directory and the
  run directory must be on storage the workers can read).

Every job runs with ``threads_per_job`` torch and BLAS threads (1 by default; ``threads.thread_limit``) whatever the
backend, so that a job's floating-point results do not depend on where it ran: the same spec gives the same result
in all three.

A stopped command (Ctrl-C, SIGTERM) terminates its pool workers; each worker first ends the processes its job
started (a subprocess vector env's), so nothing runs on and nothing prints a traceback. Finished jobs stay cached.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib
import json
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from policygradex.common.artifacts import atomic_write_json, load_json
from policygradex.common.errors import PolicyGradExError
from policygradex.common.progress import make_progress
from policygradex.common.signals import end_by_default

Backend = Literal["sequential", "process", "ray"]
BACKENDS: tuple[str, ...] = ("sequential", "process", "ray")


@dataclass(frozen=True)
class JobSpec:
    """One independent job. Everything that changes its result must be in ``args`` or ``seed``."""

    fn: str
    """The job function as ``package.module:function``; it takes (args: dict, seed: int) and returns a JSON-able dict."""
    args: dict[str, Any] = field(default_factory=dict)
    """JSON-able keyword arguments (paths, task ids, configs as dicts)."""
    seed: int = 0
    """The job's own seed (derive it from the master seed and the job's identity, never from its position)."""
    label: str = ""
    """Human-readable name for progress bars and tables; not part of the cache key."""
    paths: dict[str, str] = field(default_factory=dict)
    """Where the job finds its inputs (the run directory, saved transitions), passed to the function together with
    ``args`` but not part of the cache key: a run directory that moves keeps its cached jobs. What the inputs hold
    must be pinned in ``args`` (a configuration, theta_star's sha256)."""

    def key(self) -> str:
        """sha256 of (fn, args, seed): the cache key."""
        blob = json.dumps({"fn": self.fn, "args": self.args, "seed": self.seed}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class LauncherConfig:
    """How jobs are run."""

    backend: Backend = "process"
    """``sequential``, ``process`` (a local process pool, the default) or ``ray``."""
    workers: int | None = None
    """Parallel jobs for ``process`` (None: the number of CPU cores, at most the number of jobs)."""
    ray_address: str | None = None
    """Ray cluster address for ``ray`` (None: start a local Ray instance)."""
    threads_per_job: int = 1
    """torch threads inside each job (1 keeps results identical across backends and avoids oversubscription)."""


def _resolve(fn: str) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    module_name, _, attr = fn.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PolicyGradExError(f"job function {fn!r} cannot be loaded ({exc})") from None
    return func


def execute(spec: JobSpec, threads: int = 1) -> dict[str, Any]:
    """Run one job here (the body every backend calls); adds ``seconds`` (wall clock) to its result."""
    from policygradex.common.threads import thread_limit

    t0 = time.perf_counter()
    with thread_limit(threads):
        result = _resolve(spec.fn)({**spec.args, **spec.paths}, spec.seed)
    result = dict(result)
    result["seconds"] = time.perf_counter() - t0
    return result


def _execute_to_cache(spec: JobSpec, threads: int, path: str) -> dict[str, Any]:
    result = execute(spec, threads)
    atomic_write_json(Path(path), {"spec": {"fn": spec.fn, "args": spec.args, "seed": spec.seed, "paths": spec.paths},
                                  "result": result})
    return result


_WORKER_PID: int | None = None
"""The pool worker that installed :func:`_end_worker` (None outside a pool worker)."""


def _init_worker() -> None:
    """Pool-worker set-up: SIGTERM (the launcher stopping its pool) ends the worker and the processes it started."""
    global _WORKER_PID
    _WORKER_PID = os.getpid()
    signal.signal(signal.SIGTERM, _end_worker)


def _end_worker(signum: int, frame: Any) -> None:
    if os.getpid() == _WORKER_PID:
        # A job may own processes (a subprocess vector env's). Left behind by a worker that died at once, each found
        # its pipe to the worker closed and printed a BrokenPipeError traceback. They end first, by the same signal.
        children = mp.active_children()
        for child in children:
            child.terminate()
        for child in children:
            child.join(timeout=5)
    end_by_default(signum)  # here, and in a forked child, which inherits this handler


def cache_path(cache_dir: Path, spec: JobSpec) -> Path:
    return Path(cache_dir) / f"{spec.key()}.json"


def load_cached(cache_dir: Path, spec: JobSpec) -> dict[str, Any] | None:
    path = cache_path(cache_dir, spec)
    if not path.exists():
        return None
    try:
        blob = load_json(path)
    except PolicyGradExError:
        path.unlink()  # a corrupt cache entry is recomputed, never trusted
        return None
    return blob.get("result") if isinstance(blob, dict) else None


def run_jobs(
    specs: Sequence[JobSpec],
    cache_dir: Path,
    cfg: LauncherConfig = LauncherConfig(),
    console: Console | None = None,
    description: str = "jobs",
) -> list[dict[str, Any]]:
    """Run every spec not already cached under ``cache_dir``; return all results in the order of ``specs``."""
    if cfg.backend not in BACKENDS:
        raise PolicyGradExError(f"unknown backend {cfg.backend!r}; choose one of {', '.join(BACKENDS)}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any] | None] = [load_cached(cache_dir, s) for s in specs]
    todo = [i for i, r in enumerate(results) if r is None]
    # duplicated specs run once
    first: dict[str, int] = {}
    for i in todo:
        first.setdefault(specs[i].key(), i)
    unique = sorted(first.values())
    console = console or Console(stderr=True)
    with make_progress(console) as progress:
        bar = progress.add_task(description, total=len(specs), info=f"{len(specs) - len(todo)} cached")
        progress.update(bar, completed=len(specs) - len(todo))

        def finished(i: int, result: dict[str, Any]) -> None:
            results[i] = result
            progress.update(bar, advance=1, info=specs[i].label)

        if unique:
            _BACKEND_RUNNERS[cfg.backend]([specs[i] for i in unique], cache_dir, cfg,
                                          lambda j, r: finished(unique[j], r))
        for i in todo:
            if results[i] is None:  # a duplicate of a spec that just ran
                results[i] = results[first[specs[i].key()]]
                progress.update(bar, advance=1)
    return [r for r in results if r is not None]


def _run_sequential(specs: list[JobSpec], cache_dir: Path, cfg: LauncherConfig,
                    done: Callable[[int, dict[str, Any]], None]) -> None:
    for j, spec in enumerate(specs):  # execute restores the caller's thread counts after each job
        done(j, _execute_to_cache(spec, cfg.threads_per_job, str(cache_path(cache_dir, spec))))


def _run_process(specs: list[JobSpec], cache_dir: Path, cfg: LauncherConfig,
                 done: Callable[[int, dict[str, Any]], None]) -> None:
    workers = max(1, min(cfg.workers or os.cpu_count() or 1, len(specs)))
    if workers == 1:
        _run_sequential(specs, cache_dir, cfg, done)
        return
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)
    try:
        futures = {pool.submit(_execute_to_cache, s, cfg.threads_per_job, str(cache_path(cache_dir, s))): j
                   for j, s in enumerate(specs)}
        for fut in cf.as_completed(futures):
            done(futures[fut], _unwrap(fut, specs[futures[fut]]))
    except BaseException:
        # the workers must be read before shutdown(), which drops the executor's list of them: reading it after
        # terminated nothing, and the workers of an interrupted command ran on, orphaned
        procs = list((getattr(pool, "_processes", None) or {}).values())
        manager = getattr(pool, "_executor_manager_thread", None)
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
        if manager is not None:
            # The executor's manager thread closes its wake-up pipe once it sees the workers gone. Still doing so when
            # this process exits, it raced CPython's exit hook, which writes to that pipe without the lock: an
            # "OSError: [Errno 9] Bad file descriptor" traceback now and then (seen in CI). It finishes first.
            manager.join(timeout=10)
        raise
    pool.shutdown()


def _unwrap(fut: cf.Future, spec: JobSpec) -> dict[str, Any]:
    try:
        return fut.result()
    except PolicyGradExError:
        raise
    except cf.process.BrokenProcessPool as exc:
        raise PolicyGradExError(f"a worker process died while running {spec.label or spec.fn} ({exc}); "
                                "rerun to resume (finished jobs are cached) or use --backend sequential. From a "
                                "Python script: the pool's workers import the script, so its calls must be under "
                                "`if __name__ == \"__main__\":`") from None


def _run_ray(specs: list[JobSpec], cache_dir: Path, cfg: LauncherConfig,
             done: Callable[[int, dict[str, Any]], None]) -> None:
    try:
        import ray
    except ImportError:
        raise PolicyGradExError("--backend ray needs Ray: pip install 'policygradex[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"address": cfg.ray_address} if cfg.ray_address else {"num_cpus": cfg.workers}
        ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False, **kwargs)
    try:
        remote = ray.remote(num_cpus=cfg.threads_per_job)(_execute_to_cache)
        refs = {remote.remote(s, cfg.threads_per_job, str(cache_path(cache_dir, s))): j for j, s in enumerate(specs)}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # a user error inside the job stays a one-line error
                    if isinstance(exc.cause, PolicyGradExError):
                        raise exc.cause from None
                    raise
                done(refs[ref], result)
    finally:
        if started_here:
            ray.shutdown()


_BACKEND_RUNNERS: dict[str, Callable[..., None]] = {
    "sequential": _run_sequential,
    "process": _run_process,
    "ray": _run_ray,
}
