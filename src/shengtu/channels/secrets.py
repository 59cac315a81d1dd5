"""Upstream keys at rest: sealed with a key derived from ``SHENGTU_SECRET_KEY``.

Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) under a key derived by HKDF
from the operator's secret, so the same secret can serve other purposes under other
``info`` labels. A database dump holds only sealed keys; answers and logs show a mask.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class KeyBox:
    def __init__(self, secret: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"shengtu channel keys v1"
        ).derive(secret.encode("utf-8"))
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, key: str) -> str:
        return self._fernet.encrypt(key.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            raise ValueError("上游密钥无法解密:SHENGTU_SECRET_KEY 与加密时的不同") from exc


def mask(key: str) -> str:
    """``…abcd``: enough to tell keys apart, never enough to use one."""
    return "…" + key[-4:] if len(key) >= 12 else "…"
