"""An upstream exchange as operators read it (never users)."""

from __future__ import annotations

from pydantic import BaseModel


class ExchangeOut(BaseModel):
    id: int
    # submit | poll | cancel | late_poll | download
    step: str
    protocol: str
    channelId: int | None
    keyId: int | None
    method: str
    # Signatures and key-bearing query values masked.
    url: str
    # Credentials masked ("***"); the request's own headers otherwise.
    requestHeaders: dict[str, str]
    # JSON or form fields as text; files and base64 pictures as their size; capped.
    requestBody: str | None
    # None: no answer (``error`` says why: a timeout, a refused connection …).
    status: int | None
    # The answer's type, size, waits and request ids.
    responseHeaders: dict[str, str]
    responseBody: str | None
    error: str | None
    elapsedMs: float
    # When the request went out, local time with milliseconds.
    time: str
    # A poll's answer that came again on the task's next polls: how many more times, and
    # when last (local time, as ``time``); 0 and None for any other.
    repeats: int
    lastTime: str | None
