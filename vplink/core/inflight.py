"""Work on a thread pool with a bounded number of items in flight, results as they finish."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def in_flight(work: Callable[[T], R], items: Iterable[T], *, concurrency: int, name: str) -> Iterator[R]:
    """``work(item)`` for every item on ``concurrency`` threads, each result as it finishes.

    At most ``concurrency`` items are in flight, so an interrupt wastes little work; when the caller stops (an
    interrupt, an error) the items not started are cancelled and nobody waits for the running ones.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix=name)
    pending: set[Future[R]] = set()
    queue = iter(items)
    try:
        while True:
            for item in queue:
                pending.add(pool.submit(work, item))
                if len(pending) >= concurrency:
                    break
            if not pending:
                return
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()  # re-raises what the work raised (a KeyboardInterrupt included)
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
