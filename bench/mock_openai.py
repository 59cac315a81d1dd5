"""A mock OpenAI Images upstream that answers at once: a fixed 64×64 PNG, inline as
``b64_json`` or as a URL to itself. The upstream of the OpenAI-compatible comparison, the
same for Shengtu and for the LiteLLM proxy, so neither waits on a picture being drawn.

    python -m bench.mock_openai --port 8098
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import time
from typing import Any

from PIL import Image

from bench.baseline import app as lifespan_only
from shengtu.config import Settings
from shengtu.runner import bind, run, serve_asgi


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (230, 120, 40)).save(out, "PNG")
    return out.getvalue()


PNG = _png()
B64 = base64.b64encode(PNG).decode()
JSON = [(b"content-type", b"application/json")]


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def make_app(base_url: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan_only(scope, receive, send)
            return
        path = scope["path"]
        status, headers, body = 404, JSON, b'{"error":{"message":"not found"}}'
        if path.endswith("/images/generations") and scope["method"] == "POST":
            request = json.loads(await _body(receive) or b"{}")
            item = (
                {"b64_json": B64}
                if request.get("response_format") == "b64_json"
                else {"url": base_url + "/img.png"}
            )
            status, body = 200, json.dumps({"created": int(time.time()), "data": [item]}).encode()
        elif path == "/img.png":
            status, headers, body = 200, [(b"content-type", b"image/png")], PNG
        elif path.endswith("/models"):
            status, body = 200, b'{"object":"list","data":[{"id":"gpt-image-1","object":"model"}]}'
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    base = f"http://{args.host}:{args.port}"
    run(serve_asgi(make_app(base), bind(args.host, args.port), Settings()))


if __name__ == "__main__":
    main()
