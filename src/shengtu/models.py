"""Every table, imported in one place for Alembic and ``Base.metadata``."""

from shengtu.accounts.models import ApiKey, User
from shengtu.audit.models import AuditEntry
from shengtu.catalog.models import PointsConfig
from shengtu.channels.models import Channel, ChannelKey, ChannelModel, TaskAttempt
from shengtu.codes.models import RedeemCode
from shengtu.db import Base
from shengtu.groups.models import UserGroup
from shengtu.idempotency.models import IdempotencyKey
from shengtu.points.models import PointsAccount, PointsLedger
from shengtu.stats.models import StatsHour, StatsState, StatsUserDay, StatsUserHour
from shengtu.storage.models import StoredFile
from shengtu.tasks.models import AiTask
from shengtu.webhooks.models import (
    CallbackSecret,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
)

__all__ = [
    "AiTask",
    "ApiKey",
    "AuditEntry",
    "Base",
    "CallbackSecret",
    "Channel",
    "ChannelKey",
    "ChannelModel",
    "IdempotencyKey",
    "PointsAccount",
    "PointsConfig",
    "PointsLedger",
    "RedeemCode",
    "StatsHour",
    "StatsState",
    "StatsUserDay",
    "StatsUserHour",
    "StoredFile",
    "TaskAttempt",
    "User",
    "UserGroup",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookMessage",
]
