"""Aliyun 内容安全 (Green 2022-03-02)'s double: the RPC endpoint (``POST /``, parameters in
the form body or the query) for ``TextModerationPlus``, ``TextModeration`` and
``ImageModeration``. It checks a call as the gateway does: a known AccessKey ID
(``InvalidAccessKeyId.NotFound``, 404), the signature recomputed with its secret
(``SignatureDoesNotMatch``, 400), a fresh timestamp and an unused nonce; it fetches a
picture from its ``imageUrl`` as the service does."""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from shengtu.moderation.aliyun import VERSION, sign_rpc
from shengtu.moderation.sandbox.common import ModerationDouble, Outcome, picture_text

COMMON = (
    "Action",
    "Version",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Signature",
)
ACTIONS = ("TextModerationPlus", "TextModeration", "ImageModeration")
CLOCK_SKEW = timedelta(minutes=15)
# What the double flags text and pictures as (labels of Aliyun's own lists).
TEXT_LABEL = "sexual_content"
IMAGE_LABEL = "pornographic_adultContent"


class AliyunGreenDouble(ModerationDouble):
    kind: ClassVar[str] = "aliyun"
    prefix: ClassVar[str] = "/aliyun"

    def __init__(
        self, access_key_id: str = "", access_key_secret: str = "", *, slow_seconds: float = 3.0
    ) -> None:
        super().__init__(slow_seconds=slow_seconds)
        self.access_key_id = access_key_id or "LTAI" + secrets.token_hex(10)
        self.access_key_secret = access_key_secret or secrets.token_urlsafe(22)
        self._nonces: set[str] = set()

    def routes(self) -> list[BaseRoute]:
        return [Route("/", self._call, methods=["GET", "POST"])]

    def settings(self, base_url: str) -> dict[str, str]:
        return {
            "SHENGTU_MODERATION_PROVIDER": "aliyun",
            "SHENGTU_MODERATION_BASE_URL": base_url,
            "SHENGTU_MODERATION_ACCESS_KEY_ID": self.access_key_id,
            "SHENGTU_MODERATION_ACCESS_KEY_SECRET": self.access_key_secret,
        }

    def _refusal(self, status: int, code: str, message: str) -> JSONResponse:
        return JSONResponse(
            {
                "RequestId": secrets.token_hex(16).upper(),
                "HostId": "green-cip.cn-shanghai.aliyuncs.com",
                "Code": code,
                "Message": message,
            },
            status_code=status,
        )

    def _checked(self, method: str, params: dict[str, str]) -> JSONResponse | None:
        """The gateway's refusal of a call, or None when it is signed and fresh."""
        missing = [name for name in COMMON if not params.get(name)]
        if missing:
            return self._refusal(
                400, "MissingParameter", f"{missing[0]} is mandatory for this action."
            )
        if params["AccessKeyId"] != self.access_key_id:
            self.refused_keys += 1
            return self._refusal(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        unsigned = {k: v for k, v in params.items() if k != "Signature"}
        expected = sign_rpc(method, unsigned, self.access_key_secret)
        if not hmac.compare_digest(expected, params["Signature"]):
            self.refused_keys += 1
            return self._refusal(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
            )
        try:
            at = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            return self._refusal(
                400,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        if abs(datetime.now(UTC) - at) > CLOCK_SKEW:
            return self._refusal(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        if params["SignatureNonce"] in self._nonces:
            return self._refusal(
                400, "SignatureNonceUsed", "Specified signature nonce was used already."
            )
        self._nonces.add(params["SignatureNonce"])
        if params["Version"] != VERSION or params["Action"] not in ACTIONS:
            return self._refusal(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            )
        return None

    async def _call(self, request: Request) -> JSONResponse:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.form()).items()})
        refused = self._checked(request.method, params)
        if refused is not None:
            return refused
        try:
            service = json.loads(params.get("ServiceParameters") or "{}")
        except ValueError:
            service = None
        if not isinstance(service, dict) or not params.get("Service"):
            return self._answer(400, {}, "ServiceParameters or Service is invalid")
        if params["Action"] == "ImageModeration":
            return await self._image(service)
        return await self._text(params["Action"], service)

    def _answer(self, code: int, data: dict[str, Any], message: str = "OK") -> JSONResponse:
        # Green's own answers: HTTP 200 with the outcome in Code (Msg for pictures).
        key = "Msg" if "DataId" in data else "Message"
        body: dict[str, Any] = {
            "Code": code,
            key: message,
            "RequestId": secrets.token_hex(16).upper(),
        }
        if data:
            body["Data"] = data
        return JSONResponse(body)

    def _server_error(self) -> JSONResponse:
        return self._refusal(
            500, "InternalError", "The request processing has failed due to some unknown error."
        )

    async def _text(self, action: str, service: dict[str, Any]) -> JSONResponse:
        content = service.get("content")
        if not isinstance(content, str) or not content:
            return self._answer(400, {}, "content is empty")
        outcome = await self.judge("text", content[:200], content)
        if outcome == "fail":
            return self._server_error()
        flagged = outcome == "flag"
        if action == "TextModeration":
            return self._answer(200, {"labels": TEXT_LABEL if flagged else "", "reason": ""})
        result = (
            [{"Label": TEXT_LABEL, "Confidence": 99.0, "RiskWords": "", "Description": "色情内容"}]
            if flagged
            else [{"Label": "nonLabel", "Description": "未检测出风险"}]
        )
        return self._answer(200, {"RiskLevel": "high" if flagged else "none", "Result": result})

    async def _image(self, service: dict[str, Any]) -> JSONResponse:
        url = service.get("imageUrl")
        data_id = str(service.get("dataId") or "")
        if not isinstance(url, str) or not url:
            return self._answer(400, {"DataId": data_id}, "imageUrl is empty")
        picture = await self.fetch(url)
        if picture is None:
            # The service could not download the picture (its own code for that).
            return self._answer(408, {"DataId": data_id}, "download image failed")
        outcome: Outcome = await self.judge("image", url, picture_text(picture))
        if outcome == "fail":
            return self._server_error()
        flagged = outcome == "flag"
        result = (
            [{"Label": IMAGE_LABEL, "Confidence": 95.0, "Description": "色情内容"}]
            if flagged
            else [{"Label": "nonLabel", "Confidence": 99.0, "Description": "未检测出风险"}]
        )
        return self._answer(
            200,
            {"DataId": data_id, "Result": result, "RiskLevel": "high" if flagged else "none"},
        )
