"""The benchmark's baseline: a bare ASGI endpoint that answers a constant JSON body.

Served through ``shengtu.runner.serve_asgi``, with the API's own server settings (uvicorn,
its loop and HTTP parser), so each figure's ratio to it measures Shengtu, not the server.

    python -m bench.baseline --port 8099
"""

from __future__ import annotations

import argparse
from typing import Any

from shengtu.config import Settings
from shengtu.runner import bind, run, serve_asgi

BODY = b'{"code":200,"message":"success","data":{"ok":true}}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    run(serve_asgi(app, bind(args.host, args.port), Settings()))


if __name__ == "__main__":
    main()
