"""Doubles of the moderation services: real HTTP servers on loopback that check the key
or the signature as the real service does, and misbehave on request."""

from __future__ import annotations

from shengtu.moderation.sandbox.aliyun import AliyunGreenDouble
from shengtu.moderation.sandbox.common import ModerationDouble
from shengtu.moderation.sandbox.openai import OpenAIModerationDouble

DOUBLES: dict[str, type[ModerationDouble]] = {
    "aliyun": AliyunGreenDouble,
    "openai": OpenAIModerationDouble,
}
