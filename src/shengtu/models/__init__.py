"""Every table, imported in one place for Alembic and ``Base.metadata``."""

from shengtu.db import Base
from shengtu.models.accounts import ApiKey, User
from shengtu.models.audit import AuditEntry
from shengtu.models.catalog import PointsConfig
from shengtu.models.channels import Channel, ChannelKey, ChannelModel, TaskAttempt
from shengtu.models.codes import RedeemCode
from shengtu.models.exchanges import UpstreamExchange
from shengtu.models.groups import UserGroup
from shengtu.models.idempotency import IdempotencyKey
from shengtu.models.payments import (
    PaymentMethod,
    PaymentNotify,
    PaymentOrder,
    PaymentSettings,
    PaymentTier,
)
from shengtu.models.points import PointsAccount, PointsLedger
from shengtu.models.stats import StatsHour, StatsState, StatsUserDay, StatsUserHour
from shengtu.models.storage import StoredFile
from shengtu.models.tasks import AiTask
from shengtu.models.webhooks import (
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
    "PaymentMethod",
    "PaymentNotify",
    "PaymentOrder",
    "PaymentSettings",
    "PaymentTier",
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
    "UpstreamExchange",
    "User",
    "UserGroup",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookMessage",
]
