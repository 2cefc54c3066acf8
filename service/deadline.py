"""Bounding one request's work: a time limit, and stopping when the client leaves.

Linking runs in a worker thread, which Python cannot stop from outside. So the worker runs the workflow
step by step and checks a :class:`Deadline` between steps: once the time is up or the client is gone, it
stops at the next step boundary instead of finishing the request for nobody. The step that is running
then is bounded on its own (caption parsing is capped, model requests have ``--llm-timeout``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from starlette.requests import Request
from vplink.agent.linker import RESULT, Linker
from vplink.agent.state import LinkResult
from vplink.service.errors import RequestError

from vplink.core.records import LinkQuery

log = logging.getLogger("vplink.service")
#: How often the waiting request looks whether its client is still connected.
POLL_S = 0.25


class RequestTimeout(RequestError):
    """Linking took longer than the server's per-request limit (504)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"linking took longer than this server's limit of {seconds:g} s per request",
                         "retry with a shorter caption, or start the server with a larger --request-timeout",
                         status=504)


class ClientGone(Exception):
    """The client closed the connection before the answer was ready: nobody waits for it."""


class Deadline:
    """A request's time limit and whether its client left, checked by the linking thread between steps."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ends = time.monotonic() + seconds
        self._gone = threading.Event()
        #: The step after which the work stopped, once it has (None while it runs, or when it finished).
        self.stopped_after: str | None = None

    @property
    def remaining(self) -> float:
        """Seconds left (negative once the limit has passed)."""
        return self._ends - time.monotonic()

    def client_left(self) -> None:
        """Tell the work that nobody waits for its answer any more."""
        self._gone.set()

    def check(self, step: str) -> None:
        """Raise :class:`ClientGone` or :class:`RequestTimeout` when the work should stop after ``step``."""
        if self._gone.is_set():
            error: Exception = ClientGone()
            why = "the client left"
        elif self.remaining < 0:
            error = RequestTimeout(self.seconds)
            why = f"the request passed its {self.seconds:g} s limit"
        else:
            return
        self.stopped_after = step
        log.info("linking stopped after step %r: %s", step, why)
        raise error


def link_within(linker: Linker, query: LinkQuery, deadline: Deadline) -> LinkResult:
    """Run the workflow step by step, stopping between steps once the deadline passes or the client leaves."""
    for node, update in linker.stream_query(query):
        if node == RESULT:
            return update
        deadline.check(node)
    raise RuntimeError("the workflow ended without a result")  # stream_query always ends with one


async def wait_for(work: asyncio.Future, request: Request, deadline: Deadline) -> Any:
    """The work's result; :class:`RequestTimeout` at the deadline; :class:`ClientGone` when the client leaves.

    Either way the work itself stops at its next step (it checks the same deadline).
    """
    # The work may end after we stopped waiting for it: take its outcome so asyncio does not report it as lost.
    work.add_done_callback(lambda done: done.cancelled() or done.exception())
    while True:
        finished, _ = await asyncio.wait({work}, timeout=max(0.0, min(POLL_S, deadline.remaining)))
        if finished:
            return work.result()
        if await request.is_disconnected():
            deadline.client_left()
            raise ClientGone()
        if deadline.remaining < 0:
            raise RequestTimeout(deadline.seconds)
