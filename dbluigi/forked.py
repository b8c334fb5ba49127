"""Work spread over all cores in forked processes: a cold scan of a large project.

Only on Linux, with more than one core, from a process running a single thread (a fork
copies no other thread, so a lock one of them held would stay held in the child) that
is not itself a daemonic worker. The children inherit the parent's memory at the fork,
so the function and its data are never pickled: only the ranges of indices go to them,
and only their results come back.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

_T = TypeVar("_T")
_task: Callable[[int, int], Any] | None = None  # what the children run, set before the fork


def cores() -> int:
    """The processors this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available() -> bool:
    """Whether ``map_ranges`` may fork here (see the module's docstring)."""
    import multiprocessing  # with the first cold scan, not with every command

    if sys.platform != "linux" or cores() < 2 or multiprocessing.current_process().daemon:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1  # threads of any kind, native ones too
    except OSError:
        return False


def map_ranges(task: Callable[[int, int], _T], count: int, *, chunk: int) -> Iterator[_T]:
    """``task(start, end)`` for consecutive ranges of ``chunk`` indices covering
    ``range(count)``, run in forked processes, one per core; yields the results in order.

    ``task`` should not raise (an exception is raised here as is). When a child dies
    (killed, out of memory), the results stop early: the caller does the rest itself."""
    global _task
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    starts = range(0, count, chunk)
    context = multiprocessing.get_context("fork")
    _task = task
    gc.freeze()  # collections skip what was there at the fork: fewer pages copied, less work
    try:
        with ProcessPoolExecutor(min(cores(), len(starts)), mp_context=context) as pool:
            try:
                yield from pool.map(_run, starts, [min(s + chunk, count) for s in starts])
            except BrokenProcessPool:
                return
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        gc.unfreeze()
        _task = None


def _run(start: int, end: int) -> Any:
    assert _task is not None
    return _task(start, end)
