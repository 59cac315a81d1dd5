"""Every table, imported in one place for Alembic and ``Base.metadata``."""

from shengtu.accounts.models import ApiKey, User
from shengtu.catalog.models import PointsConfig
from shengtu.channels.models import Channel, ChannelKey, ChannelModel, TaskAttempt
from shengtu.codes.models import RedeemCode
from shengtu.db import Base
from shengtu.points.models import PointsAccount, PointsLedger
from shengtu.storage.models import StoredFile
from shengtu.tasks.models import AiTask

__all__ = [
    "AiTask",
    "ApiKey",
    "Base",
    "Channel",
    "ChannelKey",
    "ChannelModel",
    "PointsAccount",
    "PointsConfig",
    "PointsLedger",
    "RedeemCode",
    "StoredFile",
    "TaskAttempt",
    "User",
]
