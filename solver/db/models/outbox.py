"""The outbox: transaction intents, the signed transactions that carry them, and every hash sent.

intent (what must happen on chain, written in the same DB transaction as the request that
needs it) → chain_tx (one signer nonce; several intents when opens of one account share a
`_call`) → tx_attempt (each signed hash for that nonce: the first send and every fee-bumped
replacement). Every row is written *before* the step it describes is taken, so a restarted
worker can tell what may already be on chain and never sends anything twice.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Index, SmallInteger, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from solver.db.models.base import EAGER_DEFAULTS, address_check, created_at, modified_at, version_field
from solver.db.types import Address, EnumText, Id, in_check


class IntentKind(StrEnum):
    SEND_QUOTE = "send_quote"  # _call(account, [sendQuoteWithAffiliate]) for an instant open
    OPEN_QUOTE = "open_quote"  # lockAndOpenQuote as PartyB
    CANCEL_QUOTE = "cancel_quote"  # _call(account, [requestToCancelQuote])
    ACCEPT_CANCEL = "accept_cancel"  # acceptCancelRequest as PartyB (quote was LOCKED)
    CLOSE_REQUEST = "close_request"  # _call(account, [requestToClosePosition])
    FILL_CLOSE = "fill_close"  # fillCloseRequest as PartyB
    CANCEL_CLOSE = "cancel_close"  # _call(account, [requestToCancelCloseRequest])
    ACCEPT_CANCEL_CLOSE = "accept_cancel_close"  # acceptCancelCloseRequest as PartyB
    ALLOCATE_FOR_PARTY_B = "allocate_for_party_b"  # top up the solver's collateral for a partyA


class IntentStatus(StrEnum):
    QUEUED = "queued"  # waiting for its lane
    IN_TX = "in_tx"  # carried by a signed chain_tx (tx_id)
    DONE = "done"  # mined and its effects applied
    FAILED = "failed"  # refused by the pre-flight or reverted; its effects (failure) applied
    CANCELLED = "cancelled"  # dropped before it was signed


INTENT_OPEN = frozenset({IntentStatus.QUEUED, IntentStatus.IN_TX})


class TxStatus(StrEnum):
    SIGNED = "signed"  # recorded; broadcast (maybe) and not yet final
    MINED = "mined"  # a receipt with status 1 at the required depth; effects applied
    REVERTED = "reverted"  # mined with status 0; effects (failure) applied
    LOST = "lost"  # its nonce was used by a transaction the solver never signed


class TxIntent(SQLModel, table=True):
    __tablename__ = "tx_intent"
    __mapper_args__ = EAGER_DEFAULTS
    __table_args__ = (
        CheckConstraint(in_check("kind", IntentKind), name="kind"),
        CheckConstraint(in_check("status", IntentStatus), name="status"),
        CheckConstraint("status NOT IN ('in_tx', 'done') OR tx_id IS NOT NULL", name="in_tx_has_tx"),
        CheckConstraint("quote_id IS NULL OR quote_id > 0", name="quote_id_positive"),
        CheckConstraint("lane >= 0", name="lane_non_negative"),
        CheckConstraint("version >= 1", name="version_positive"),
        address_check("account"),
        # The worker's queue: queued intents of a lane in arrival order.
        Index("ix_tx_intent_queue", "lane", "id", postgresql_where=text("status = 'queued'")),
        Index("ix_tx_intent_tx_id", "tx_id"),
        Index("ix_tx_intent_instant_open_id", "instant_open_id"),
        Index("ix_tx_intent_instant_close_id", "instant_close_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Id())
    # What the intent is for, unique: a retried enqueue (same request, same step) is a no-op.
    key: str = Field(sa_type=String(128), unique=True)
    kind: IntentKind = Field(sa_type=EnumText(IntentKind, 32))
    status: IntentStatus = Field(
        default=IntentStatus.QUEUED,
        sa_type=EnumText(IntentStatus),
        sa_column_kwargs={"server_default": IntentStatus.QUEUED.value},
    )
    lane: int = Field(default=0, sa_type=SmallInteger())  # signer lane; an account always maps to one
    account: str = Field(sa_type=Address())  # the partyA it acts on or for
    instant_open_id: int | None = Field(default=None, sa_type=Id(), foreign_key="instant_open.id")
    instant_close_id: int | None = Field(default=None, sa_type=Id(), foreign_key="instant_close.id")
    quote_id: int | None = Field(default=None, sa_type=Id())
    # Step parameters that are not on the request row (e.g. why the solver cancels).
    payload: dict[str, Any] = Field(
        default_factory=dict, sa_type=JSONB(), sa_column_kwargs={"server_default": text("'{}'::jsonb")}
    )
    tx_id: int | None = Field(default=None, sa_type=Id(), foreign_key="chain_tx.id")
    position_in_tx: int | None = None  # index in the _call batch
    error_code: int | None = None
    error_message: str | None = Field(default=None, sa_type=Text())
    version: int = version_field()
    create_time: datetime = created_at()
    modify_time: datetime = modified_at()


class ChainTx(SQLModel, table=True):
    __tablename__ = "chain_tx"
    __mapper_args__ = EAGER_DEFAULTS
    __table_args__ = (
        CheckConstraint(in_check("status", TxStatus), name="status"),
        CheckConstraint("nonce >= 0", name="nonce_non_negative"),
        address_check("sender"),
        address_check("to_address"),
        # One transaction per signer nonce: replacements are attempts of the same row.
        UniqueConstraint("sender", "nonce"),
        Index("ix_chain_tx_open", "sender", "nonce", postgresql_where=text("status = 'signed'")),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Id())
    lane: int = Field(sa_type=SmallInteger())
    sender: str = Field(sa_type=Address())
    nonce: int = Field(sa_type=Id())
    to_address: str = Field(sa_type=Address())
    data: str = Field(sa_type=Text())  # 0x calldata
    gas_limit: int = Field(sa_type=Id())
    status: TxStatus = Field(
        default=TxStatus.SIGNED, sa_type=EnumText(TxStatus), sa_column_kwargs={"server_default": "signed"}
    )
    mined_hash: str | None = Field(default=None, sa_type=String(66))
    block_number: int | None = Field(default=None, sa_type=Id())
    gas_used: int | None = Field(default=None, sa_type=Id())
    revert_reason: str | None = Field(default=None, sa_type=Text())
    create_time: datetime = created_at()
    modify_time: datetime = modified_at()


class TxAttempt(SQLModel, table=True):
    __tablename__ = "tx_attempt"
    __mapper_args__ = EAGER_DEFAULTS
    __table_args__ = (
        CheckConstraint("max_fee_per_gas > 0 AND max_priority_fee_per_gas >= 0", name="fees"),
        Index("ix_tx_attempt_tx_id", "tx_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Id())
    tx_id: int = Field(sa_type=Id(), foreign_key="chain_tx.id")
    tx_hash: str = Field(sa_type=String(66), unique=True)
    max_fee_per_gas: int = Field(sa_type=Id())
    max_priority_fee_per_gas: int = Field(sa_type=Id())
    raw: str = Field(sa_type=Text())  # the signed transaction, so a restart can rebroadcast it
    broadcast_time: datetime | None = Field(
        default=None, sa_type=DateTime(timezone=True)
    )  # last time it was handed to a node
    create_time: datetime = created_at()


class FollowerCursor(SQLModel, table=True):
    """Where an event follower stands: the last block it applied and that block's hash."""

    __tablename__ = "follower_cursor"
    __mapper_args__ = EAGER_DEFAULTS

    name: str = Field(primary_key=True, sa_type=String(64))
    block_number: int = Field(sa_type=Id())
    block_hash: str = Field(sa_type=String(66))
    modify_time: datetime = modified_at()


class FollowerBlock(SQLModel, table=True):
    """Hashes of recently applied blocks, to find the common ancestor after a reorganisation."""

    __tablename__ = "follower_block"
    __mapper_args__ = EAGER_DEFAULTS

    name: str = Field(primary_key=True, sa_type=String(64))
    block_number: int = Field(primary_key=True, sa_type=Id(), sa_column_kwargs={"autoincrement": False})
    block_hash: str = Field(sa_type=String(66))


__all__ = [
    "INTENT_OPEN",
    "ChainTx",
    "FollowerBlock",
    "FollowerCursor",
    "IntentKind",
    "IntentStatus",
    "TxAttempt",
    "TxIntent",
    "TxStatus",
]
