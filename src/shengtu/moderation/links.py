"""Addresses of result pictures that are not delivered yet: ``/files/`` serves a result
only once it is its task's (nobody gets a picture the service has not passed), yet the
service that fetches a picture by URL (Aliyun's) and the operator reviewing a held one
must see it. Each gets an address of its own, signed with the installation's secret and
good for a while: ``/moderation/pictures/{key}?expires=…&signature=…``."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote, urlencode

PATH = "/moderation/pictures/"
# A picture's address for the service lives minutes; the operator's, an hour.
SERVICE_SECONDS = 600
OPERATOR_SECONDS = 3600


class PictureLinks:
    def __init__(self, secret: str, base_url: str) -> None:
        # A key of its own, derived from the installation's: a link signature reveals
        # nothing that signs anything else.
        self._key = hashlib.sha256(b"shengtu moderation pictures\0" + secret.encode()).digest()
        self._base = base_url.rstrip("/") + PATH

    def _signature(self, key: str, expires: int) -> str:
        message = f"{key}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:40]

    def url(self, key: str, seconds: int, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + seconds)
        query = urlencode({"expires": expires, "signature": self._signature(key, expires)})
        return f"{self._base}{quote(key)}?{query}"

    def valid(self, key: str, expires: int, signature: str, now: float | None = None) -> bool:
        if expires < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(self._signature(key, expires), signature)
