"""Aliyun 内容安全 (Green, API version 2022-03-02): ``TextModerationPlus`` (or the older
``TextModeration``) for a prompt and ``ImageModeration`` for a picture, called the RPC
way: every parameter in a form body, signed with the AccessKey secret (signature version
1.0, HMAC-SHA1 over the sorted, percent-encoded parameters: :func:`sign_rpc`).

The image service fetches the picture from its ``imageUrl``: our stored picture's URL,
which must be reachable from Aliyun (a public SHENGTU_PUBLIC_BASE_URL or object storage).
A verdict is a refusal at risk level ``high`` or ``medium`` (Aliyun's advice for
``medium`` is a human look, which the ``hold`` policy gives it); its labels say why.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from shengtu.moderation import http
from shengtu.moderation.base import ModerationUnavailable, Verdict

SERVICE = "阿里云内容安全服务"
DEFAULT_BASE_URL = "https://green-cip.cn-shanghai.aliyuncs.com"
VERSION = "2022-03-02"
TEXT_ACTIONS = ("TextModerationPlus", "TextModeration")
DEFAULT_TEXT_SERVICE = "llm_query_moderation"
DEFAULT_IMAGE_SERVICE = "baselineCheck"
FLAGGED_LEVELS = frozenset({"high", "medium"})
# The label of a picture or text with nothing found.
NO_LABEL = "nonLabel"


def percent_encode(value: str) -> str:
    """RFC 3986 as Aliyun's signature wants it: only A-Z a-z 0-9 - _ . ~ left as they
    are (a space is %20, ``*`` is %2A)."""
    return quote(value, safe="-_.~")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items())
    )
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def sign_rpc(method: str, params: Mapping[str, str], secret: str) -> str:
    """The ``Signature`` of ``params`` (every one but Signature itself)."""
    digest = hmac.new(
        f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


def timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _labels(items: Any, key: str) -> tuple[str, ...]:
    if not isinstance(items, list):
        return ()
    found = (str(i.get(key) or "") for i in items if isinstance(i, dict))
    return tuple(dict.fromkeys(label for label in found if label and label != NO_LABEL))


def verdict_of(body: dict[str, Any]) -> Verdict:
    """The verdict of a Green answer (text or image; the old text answer's ``labels``
    is a comma-separated string, the newer ones carry ``RiskLevel`` and ``Result``)."""
    code = body.get("Code")
    data = body.get("Data")
    if code != 200 or not isinstance(data, dict):
        said = body.get("Message") or body.get("Msg") or ""
        raise ModerationUnavailable(f"{SERVICE}未给出结论(Code {code} {str(said)[:80]})")
    if isinstance(data.get("labels"), str):
        labels = tuple(x for x in data["labels"].split(",") if x.strip())
        return Verdict(bool(labels), labels)
    found = _labels(data.get("Result"), "Label")
    level = data.get("RiskLevel")
    if isinstance(level, str):
        return Verdict(level.lower() in FLAGGED_LEVELS, found)
    return Verdict(bool(found), found)


class AliyunModerator:
    name = "aliyun"

    def __init__(
        self,
        base_url: str,
        access_key_id: str,
        access_key_secret: str,
        *,
        text_action: str = TEXT_ACTIONS[0],
        text_service: str = DEFAULT_TEXT_SERVICE,
        image_service: str = DEFAULT_IMAGE_SERVICE,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.text_action = text_action
        self.text_service = text_service
        self.image_service = image_service
        self._http = http.client(timeout)

    def signed(self, action: str, service: str, parameters: dict[str, Any]) -> dict[str, str]:
        """The form of one call: the common parameters, the call's own, the signature."""
        params = {
            "Action": action,
            "Version": VERSION,
            "Format": "JSON",
            "AccessKeyId": self.access_key_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": secrets.token_hex(16),
            "Timestamp": timestamp(),
            "Service": service,
            "ServiceParameters": json.dumps(parameters, ensure_ascii=False),
        }
        params["Signature"] = sign_rpc("POST", params, self._secret)
        return params

    async def _moderate(self, action: str, service: str, parameters: dict[str, Any]) -> Verdict:
        request = self._http.build_request(
            "POST", self.base_url + "/", data=self.signed(action, service, parameters)
        )
        return verdict_of(await http.call(self._http, request, SERVICE))

    async def check_text(self, text: str) -> Verdict:
        return await self._moderate(self.text_action, self.text_service, {"content": text})

    async def check_image(self, picture: bytes, url: str) -> Verdict:
        return await self._moderate(
            "ImageModeration", self.image_service, {"imageUrl": url, "dataId": secrets.token_hex(8)}
        )

    async def aclose(self) -> None:
        await self._http.aclose()
