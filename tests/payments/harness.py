"""A payment provider's double, served over real HTTP on loopback from a thread of the
test's process, so a test can both talk to it over HTTP and steer it directly."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from shengtu.payments.sandbox.common import PaymentDouble, PreparedNotify
from tests.support import free_port, wait_for

T = TypeVar("T")


class DoubleServer:
    def __init__(self, double: PaymentDouble) -> None:
        self.double = double
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.gateway = self.url + double.prefix
        app = Starlette(routes=[Mount(double.prefix, routes=double.routes())])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._server.serve())
        loop.run_until_complete(self.double.aclose())
        loop.close()

    def start(self) -> None:
        self._thread.start()
        wait_for("the double to listen", lambda: self._server.started, timeout=10)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the double's event loop (where it may start its notifies)."""
        return self.await_(_call(fn))

    def await_(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def pay(self, order_no: str, *, notify: bool = True) -> None:
        """The payer pays; the double notifies (or, ``notify=False``, loses the notify)."""
        self.run(lambda: self.double.pay(order_no, notify=notify))

    def send(self, notify: PreparedNotify, order_no: str) -> None:
        """Has the double deliver ``notify`` (with its retries)."""
        self.run(lambda: self.double.send(notify, order_no))

    def merchant_config(self) -> dict[str, str]:
        return self.double.merchant_config(self.gateway)


async def _call(fn: Callable[[], T]) -> T:
    return fn()


@contextmanager
def served(double: PaymentDouble) -> Iterator[DoubleServer]:
    server = DoubleServer(double)
    server.start()
    try:
        yield server
    finally:
        server.stop()
