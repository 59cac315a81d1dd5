"""A moderation service's double, served over real HTTP on loopback from a thread of the
test's process: the platform under test talks to it as to the real service, and the
test steers it (``double.failing``) and reads what it was shown (``double.seen``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from shengtu.moderation.sandbox.common import ModerationDouble
from tests.support import free_port, wait_for


class ServedDouble:
    def __init__(self, double: ModerationDouble) -> None:
        self.double = double
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}{double.prefix}"
        app = Starlette(routes=[Mount(double.prefix, routes=double.routes())])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(self._server.serve())
        loop.run_until_complete(self.double.aclose())
        loop.close()

    def settings(self) -> dict[str, str]:
        """The platform's SHENGTU_MODERATION_* settings for this double."""
        return self.double.settings(self.base_url)

    def start(self) -> None:
        self._thread.start()
        wait_for("the double to listen", lambda: self._server.started, timeout=10)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


@contextmanager
def served(double: ModerationDouble) -> Iterator[ServedDouble]:
    server = ServedDouble(double)
    server.start()
    try:
        yield server
    finally:
        server.stop()
