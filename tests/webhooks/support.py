"""The webhook tests' calls of the user's webhook API."""

from __future__ import annotations

from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support import User, free_port, serve_http


@dataclass
class LoopbackReceiver:
    """A webhook receiver on loopback; a subclass serves its handler with ``serve``."""

    port: int = field(default_factory=free_port)

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = serve_http(handler, self.port)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def endpoint(user: User, url: str) -> dict[str, Any]:
    body = user.client.post("/user/webhooks", json={"url": url, "description": url}).json()
    assert body["code"] == 200, body
    return body["data"]  # type: ignore[no-any-return]


def messages(user: User, **params: Any) -> list[dict[str, Any]]:
    body = user.client.get("/user/webhooks/messages", params={"size": 100, **params}).json()
    assert body["code"] == 200, body
    return body["data"]["records"]  # type: ignore[no-any-return]


def detail(user: User, msg_id: str) -> dict[str, Any]:
    body = user.client.get(f"/user/webhooks/messages/{msg_id}").json()
    assert body["code"] == 200, body
    return body["data"]  # type: ignore[no-any-return]
