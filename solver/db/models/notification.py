"""Notifications (http-api.md §6): the position-state history and WebSocket pushes."""

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index, SmallInteger, String, Text, text
from sqlmodel import Field, SQLModel

from solver.db.models.base import EAGER_DEFAULTS, address_check, created_at, modified_at, version_field
from solver.db.types import Address, EnumText, Id, Money, in_check


class ActionStatus(StrEnum):
    SEEN = "seen"
    SUCCESS = "success"
    FAILED = "failed"


class StateType(StrEnum):
    ALERT = "alert"
    REPORT = "report"


def new_notification_id() -> str:
    return str(uuid.uuid4())


class Notification(SQLModel, table=True):
    __tablename__ = "notification"
    __mapper_args__ = EAGER_DEFAULTS
    __table_args__ = (
        CheckConstraint("quote_id IS NULL OR quote_id > 0", name="quote_id_positive"),
        CheckConstraint("temp_quote_id IS NULL OR temp_quote_id < 0", name="temp_quote_id_negative"),
        CheckConstraint(in_check("action_status", ActionStatus), name="action_status"),
        CheckConstraint(in_check("state_type", StateType), name="state_type"),
        CheckConstraint("version >= 1", name="version_positive"),
        address_check("account"),
        address_check("counterparty_address"),
        Index("ix_notification_account_create_time", "account", text("create_time DESC")),
        Index("ix_notification_account_quote_id", "account", "quote_id"),
        # Lets the temp-id allocator find the smallest stored temp id without a table scan.
        Index("ix_notification_temp_quote_id", "temp_quote_id", postgresql_where=text("temp_quote_id IS NOT NULL")),
    )

    id: str = Field(default_factory=new_notification_id, primary_key=True, sa_type=String(36))
    account: str = Field(sa_type=Address())
    quote_id: int | None = Field(default=None, sa_type=Id())
    temp_quote_id: int | None = Field(default=None, sa_type=Id())
    counterparty_address: str = Field(sa_type=Address())
    filled_amount_open: Decimal | None = Field(default=None, sa_type=Money())
    filled_amount_close: Decimal | None = Field(default=None, sa_type=Money())
    avg_price_open: Decimal | None = Field(default=None, sa_type=Money())
    avg_price_close: Decimal | None = Field(default=None, sa_type=Money())
    last_seen_action: str = Field(sa_type=String(64))  # InstantRFQ, SendQuoteTransaction, …
    action_status: ActionStatus = Field(sa_type=EnumText(ActionStatus, 16))
    state_type: StateType = Field(sa_type=EnumText(StateType, 16))
    failure_type: str | None = Field(default=None, sa_type=String(64))
    failure_message: str | None = Field(default=None, sa_type=Text())
    error_code: int | None = None
    order_type: int = Field(sa_type=SmallInteger())
    # What produced it ("{tx_hash}:{log_index}" for a chain event, "{entity}:{id}:{step}" for the
    # solver's own steps), unique: a replayed event or a retried step never notifies twice.
    event_key: str | None = Field(default=None, sa_type=String(160), unique=True)
    version: int = version_field()
    create_time: datetime = created_at()
    modify_time: datetime = modified_at()
