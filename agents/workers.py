"""Worker processes for the agents' expensive, independent jobs: a generation's Atari episodes
(:mod:`agents.atari.workers`), a generation's growth candidates
(:mod:`agents.classification.candidates`). Local processes, one per core by default
(``--workers``), or a Ray cluster's (``--executor ray``).

:meth:`Workers.map` runs ``function(shared, *job)`` for every job and returns the results in
job order. ``shared`` is what every job of a call reads (a generation's networks, a task's data
and library): with Ray it goes into the object store once a call (``ray.put``), locally it
travels with each job (torch tensors through shared memory). Given each job's predicted
``cost``, the costliest start first (longest-processing-time-first: a worker that frees up takes
the costliest job left, so none waits long at the end of a call). Jobs must not depend on which
worker runs them; then the results do not depend on how many there are, and a call whose worker
died (killed, out of memory) is simply run again: Ray restarts the actor and retries its jobs,
a local pool is replaced. The library is only ever written by the driver: workers return
results, nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from typing import Any, TypeVar

import torch

from agents import spawn_context, start_worker

EXECUTORS = ("local", "ray")
RETRIES = 3  # times a call's jobs run again when a worker died under them

R = TypeVar("R")
_RUNNERS: dict[str, list[Any]] = {}  # Ray job (one per connection) → this process's Ray actors
_SHARED: dict[tuple[int | None, str, str | None], Workers] = {}  # shared()'s pools


class Workers:
    """``workers`` processes (0 or 1: :meth:`map` runs every job in this process): a local pool,
    or with ``executor="ray"`` actors on the Ray cluster at ``address`` (None: the one
    ``RAY_ADDRESS`` names, else a local one Ray starts; ``workers`` None: one per CPU of the
    cluster). Each worker runs :attr:`threads` torch threads (its share of the cores unless
    ``threads`` is given). The pool starts on first use and lives until :meth:`close` (or the
    ``with`` block's end, or the process's); its processes keep what they load between calls (an
    Atari worker its emulators), so a ROM loads once per process, not once per generation. This
    is the project's one process pool: growth, Atari generations, evaluation and the
    benchmarks all run on it."""

    def __init__(
        self,
        workers: int | None,
        *,
        executor: str = "local",
        address: str | None = None,
        threads: int | None = None,
    ) -> None:
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be at least 0, got {workers}")
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if workers is None and executor == "local":
            workers = os.cpu_count() or 1
        self.workers, self.executor, self.address = workers, executor, address
        self._threads = threads
        self._submitted = 0  # jobs submitted so far: the next goes to the next Ray actor
        self._pool: Executor | None = None

    @property
    def parts(self) -> int:
        """How many jobs run at once: the workers, or with Ray and no count the cluster's CPUs."""
        if self.workers is None:
            return int(self._ray().cluster_resources().get("CPU", 1))
        return max(1, self.workers)

    @property
    def threads(self) -> int:
        """Torch threads of each worker (and what a job should use) so the jobs running at once
        share the cores: as given, else this machine's cores over the local workers; 1 on Ray
        (an actor holds one CPU)."""
        if self.executor == "ray":
            return 1
        return self._threads or max(1, (os.cpu_count() or 1) // self.parts)

    def submit(self, function: Callable[..., R], *args: Any) -> Future[R]:
        """``function(*args)`` started on a worker now (a process of the local pool, or the
        pool's Ray actors in turn: a Ray task would wait for a CPU the actors hold); the future
        holds its result. For long jobs this process waits on while it works itself (a
        benchmark's controls beside its agent); a local job whose worker dies is not run again."""
        if self.executor == "ray":
            actors = self._runners(self.parts)
            self._submitted += 1
            return actors[self._submitted % len(actors)].run.remote(function, *args).future()
        return self._executor().submit(function, *args)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def map(
        self,
        function: Callable[..., R],
        shared: Any,
        jobs: Sequence[tuple[Any, ...]],
        *,
        cost: Sequence[float] | None = None,
        device: torch.device | None = None,
    ) -> list[R]:
        """``[function(shared, *job) for job in jobs]``, the jobs spread over the workers
        (``function`` must be importable: a module-level function). With ``cost`` (a prediction
        per job, any unit) the costliest jobs start first; the results stay in job order. Jobs
        that compute on a CUDA ``device`` run as :attr:`parts` threads of this process instead
        (:func:`in_threads`): worker processes would each hold a CUDA context and contend."""
        if self.parts <= 1 or len(jobs) <= 1:
            return [function(shared, *job) for job in jobs]
        order = longest_first(cost) if cost is not None else list(range(len(jobs)))
        queued = [jobs[k] for k in order]
        if device is not None and device.type == "cuda":
            done = in_threads(function, shared, queued, self.parts, device)
        elif self.executor == "ray":
            done = self._on_ray(function, shared, queued)
        else:
            done = self._local(function, shared, queued)
        results: list[R] = [None] * len(jobs)  # type: ignore[list-item]
        for k, result in zip(order, done, strict=True):
            results[k] = result
        return results

    def _local(self, function: Callable[..., R], shared: Any, jobs: Sequence[tuple[Any, ...]]) -> list[R]:
        """The jobs on the local pool, started in their order; a call whose worker died runs again."""
        retries = RETRIES
        while True:
            futures = [self._executor().submit(function, shared, *job) for job in jobs]
            try:
                return [future.result() for future in futures]
            except BrokenProcessPool:  # a worker died (killed, out of memory): a fresh pool, again
                self.close()
                if retries == 0:
                    raise
                retries -= 1

    def _on_ray(self, function: Callable[..., R], shared: Any, jobs: Sequence[tuple[Any, ...]]) -> list[R]:
        """The jobs on Ray's actors, started in their order: an actor that finishes takes the next
        job (Ray's ``ActorPool.map`` would hand actors back in submission order instead)."""
        ray = self._ray()
        reference = ray.put(shared)  # once per call, however many jobs
        idle = list(self._runners(min(len(jobs), self.parts)))
        running: dict[Any, tuple[int, Any]] = {}  # result reference → (job, actor)
        done: list[R] = [None] * len(jobs)  # type: ignore[list-item]
        started = 0
        while running or started < len(jobs):
            while idle and started < len(jobs):
                actor = idle.pop()
                running[actor.run.remote(function, reference, *jobs[started])] = (started, actor)
                started += 1
            [finished], _ = ray.wait(list(running), num_returns=1)
            job, actor = running.pop(finished)
            done[job] = ray.get(finished)
            idle.append(actor)
        return done

    def _runners(self, count: int) -> list[Any]:
        """``count`` Ray actors, each keeping its process (and what it loaded) between calls; a
        killed one is restarted and its jobs run again. They are this process's, shared by all
        its pools: an actor holds a CPU of the cluster, and a second set would wait for the first."""
        ray = self._ray()
        actors = _RUNNERS.setdefault(ray.get_runtime_context().get_job_id(), [])
        while len(actors) < count:
            actors.append(ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=RETRIES)(Runner).remote())
        return actors[:count]

    def _ray(self) -> Any:
        """Ray, connected: to ``address``, else to ``RAY_ADDRESS``, else to a local instance it
        starts (or the one this process already started)."""
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR"
            )
        return ray

    def _executor(self) -> Executor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=spawn_context(),
                initializer=start_worker,
                initargs=(self.threads, os.getpid()),
            )
        return self._pool

    def close(self) -> None:
        """Stop the local processes (Ray's actors end with this process's Ray connection)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def in_threads(
    function: Callable[..., R],
    shared: Any,
    jobs: Sequence[tuple[Any, ...]],
    parallel: int,
    device: torch.device,
) -> list[R]:
    """``jobs`` run by up to ``parallel`` threads of this process, started in their order; on CUDA
    each on a stream of its own, so their kernels overlap. A job the device had no memory left
    for runs again alone once the others are done: concurrently where memory allows. Jobs share
    ``shared``: a job must not change it (copy what it would)."""
    cuda = device.type == "cuda"

    def one(job: tuple[Any, ...]) -> R:
        with torch.cuda.stream(torch.cuda.Stream(device)) if cuda else nullcontext():
            result = function(shared, *job)
        if cuda:
            torch.cuda.synchronize(device)
        return result

    with ThreadPoolExecutor(max(1, min(parallel, len(jobs)))) as pool:
        futures = [pool.submit(one, job) for job in jobs]
    results = []
    for job, future in zip(jobs, futures, strict=True):
        try:
            results.append(future.result())
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            results.append(one(job))
    return results


def longest_first(cost: Sequence[float]) -> list[int]:
    """Job indices, costliest first (equal costs in job order)."""
    return sorted(range(len(cost)), key=lambda k: -cost[k])


class Runner:
    """A Ray actor's body: runs jobs (``function(*args)``) in its own process."""

    def run(self, function: Callable[..., R], *args: Any) -> R:
        return function(*args)


def shared(workers: int | None, executor: str = "local", address: str | None = None) -> Workers:
    """This process's pool (the same one for every task of a run, Atari or image)."""
    key = (workers, executor, address)
    if key not in _SHARED:
        _SHARED[key] = Workers(workers, executor=executor, address=address)
    return _SHARED[key]


def close_shared() -> None:
    """Stop this process's pools (before a process ends without finalizing: their semaphores
    would be reported as leaked)."""
    for pool in _SHARED.values():
        pool.close()
