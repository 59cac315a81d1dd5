"""Task events to the users' open WebSockets, and wake-ups to the workers.

``EventBus`` delivers inside one process. ``RedisEventBus`` (events/redis_bus.py) carries
the same events between processes. Neither is needed for correctness: the database holds
every task's state, and ``events/relay.py`` re-reads it for the connected users.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

QUEUE_LIMIT = 1000
VERSIONS_KEPT = 50_000
ENDED = frozenset({"completed", "failed"})


class Endings:
    """Futures for the ends of given tasks (their event), from :meth:`EventBus.endings`."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._mine: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []

    def watch(self, task_nos: list[str]) -> list[asyncio.Future[dict[str, Any]]]:
        loop = asyncio.get_running_loop()
        futures = []
        for task_no in task_nos:
            future: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._bus._endings[task_no].append(future)
            self._mine.append((task_no, future))
            futures.append(future)
        return futures

    def close(self) -> None:
        for task_no, future in self._mine:
            waiting = self._bus._endings.get(task_no)
            if waiting is not None and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._bus._endings[task_no]
            future.cancel()


class EventBus:
    # publish() hands the event to this process's waiters before it returns (no await in
    # between): what a request starts, it can watch after without missing the end.
    delivers_inline = True

    def __init__(self) -> None:
        self._subscribers: dict[int, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        # task number → version (updated_at, ISO) last delivered here, so that a state
        # that arrives by two paths (bus and sweep) is delivered once, and never an older
        # state after a newer one.
        self._delivered: OrderedDict[str, str] = OrderedDict()
        # Set on submit so a worker starts at once instead of at its next tick.
        self.wakeup = asyncio.Event()
        # task number → futures of requests waiting for its end; and how many such
        # requests each user has (the relay sweeps their tasks, as a subscriber's).
        self._endings: dict[str, list[asyncio.Future[dict[str, Any]]]] = defaultdict(list)
        self._watching: dict[int, int] = defaultdict(int)
        # How many of the subscribers are free accounts' (events/service.py).
        self._free = 0

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def publish(self, user_id: int, event: dict[str, Any], version: str) -> None:
        self.deliver(user_id, event, version)

    async def nudge_workers(self) -> None:
        self.wakeup.set()

    def deliver(self, user_id: int, event: dict[str, Any], version: str) -> None:
        """Hand an event to this process's subscribers, unless it is not news."""
        queues = self._subscribers.get(user_id)
        task_no = str(event.get("data", {}).get("taskNo", ""))
        if task_no:
            # Before the news check: a request that began watching after the end went by
            # is woken by the next sweep's copy of it.
            if task_no in self._endings and event.get("data", {}).get("status") in ENDED:
                for future in self._endings.pop(task_no):
                    if not future.done():
                        future.set_result(event)
            seen = self._delivered.get(task_no)
            if seen is not None and seen >= version:
                return
            self._delivered[task_no] = version
            self._delivered.move_to_end(task_no)
            while len(self._delivered) > VERSIONS_KEPT:
                self._delivered.popitem(last=False)
        for queue in tuple(queues or ()):
            if queue.full():
                # A client too slow to read loses its oldest events, never the newest:
                # the newest carries the task's current state.
                queue.get_nowait()
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(
        self, user_id: int, *, free: bool = False
    ) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of ``user_id``'s events; counted among the free accounts' with ``free``.
        Entering awaits nothing: caps checked just before it hold."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers[user_id].add(queue)
        self._free += int(free)
        try:
            yield queue
        finally:
            self._free -= int(free)
            self._subscribers[user_id].discard(queue)
            if not self._subscribers[user_id]:
                del self._subscribers[user_id]

    @asynccontextmanager
    async def endings(self, user_id: int) -> AsyncIterator[Endings]:
        """Wait for the ends of some of ``user_id``'s tasks: one future per task, set by
        its terminal event (no fan-out of the user's other events)."""
        endings = Endings(self)
        self._watching[user_id] += 1
        try:
            yield endings
        finally:
            endings.close()
            self._watching[user_id] -= 1
            if not self._watching[user_id]:
                del self._watching[user_id]

    def subscribed_users(self) -> list[int]:
        return list(set(self._subscribers) | set(self._watching))

    def subscribers_of(self, user_id: int) -> int:
        return len(self._subscribers.get(user_id, ()))

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def free_subscriber_count(self) -> int:
        return self._free
