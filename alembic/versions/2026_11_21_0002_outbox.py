"""outbox: transaction intents, signed transactions and their attempts, event follower cursor

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 12:00:00+00:00

Written by hand to match solver/db/models/outbox.py (the parity test checks it).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADDRESS = "'^0x[0-9a-fA-F]{40}$'"
INTENT_KINDS = (
    "'send_quote', 'open_quote', 'cancel_quote', 'accept_cancel', 'close_request', 'fill_close',"
    " 'cancel_close', 'accept_cancel_close', 'allocate_for_party_b'"
)
INTENT_STATUSES = "'queued', 'in_tx', 'done', 'failed', 'cancelled'"
TX_STATUSES = "'signed', 'mined', 'reverted', 'lost'"


def _now(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "chain_tx",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("lane", sa.SmallInteger(), nullable=False),
        sa.Column("sender", sa.String(42), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("to_address", sa.String(42), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("gas_limit", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(24), server_default=sa.text("'signed'"), nullable=False),
        sa.Column("mined_hash", sa.String(66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("revert_reason", sa.Text(), nullable=True),
        _now("create_time"),
        _now("modify_time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_tx")),
        sa.CheckConstraint(f"status IN ({TX_STATUSES})", name=op.f("ck_chain_tx_status")),
        sa.CheckConstraint("nonce >= 0", name=op.f("ck_chain_tx_nonce_non_negative")),
        sa.CheckConstraint(f"sender ~ {ADDRESS}", name=op.f("ck_chain_tx_sender_format")),
        sa.CheckConstraint(f"to_address ~ {ADDRESS}", name=op.f("ck_chain_tx_to_address_format")),
        sa.UniqueConstraint("sender", "nonce", name=op.f("uq_chain_tx_sender_nonce")),
    )
    op.create_index("ix_chain_tx_open", "chain_tx", ["sender", "nonce"], postgresql_where=sa.text("status = 'signed'"))

    op.create_table(
        "tx_attempt",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tx_id", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("max_fee_per_gas", sa.BigInteger(), nullable=False),
        sa.Column("max_priority_fee_per_gas", sa.BigInteger(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("broadcast_time", sa.DateTime(timezone=True), nullable=True),
        _now("create_time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tx_attempt")),
        sa.ForeignKeyConstraint(["tx_id"], ["chain_tx.id"], name=op.f("fk_tx_attempt_tx_id_chain_tx")),
        sa.CheckConstraint("max_fee_per_gas > 0 AND max_priority_fee_per_gas >= 0", name=op.f("ck_tx_attempt_fees")),
        sa.UniqueConstraint("tx_hash", name=op.f("uq_tx_attempt_tx_hash")),
    )
    op.create_index("ix_tx_attempt_tx_id", "tx_attempt", ["tx_id"])

    op.create_table(
        "tx_intent",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(24), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("lane", sa.SmallInteger(), nullable=False),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("instant_open_id", sa.BigInteger(), nullable=True),
        sa.Column("instant_close_id", sa.BigInteger(), nullable=True),
        sa.Column("quote_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("tx_id", sa.BigInteger(), nullable=True),
        sa.Column("position_in_tx", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        _now("create_time"),
        _now("modify_time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tx_intent")),
        sa.ForeignKeyConstraint(
            ["instant_open_id"], ["instant_open.id"], name=op.f("fk_tx_intent_instant_open_id_instant_open")
        ),
        sa.ForeignKeyConstraint(
            ["instant_close_id"], ["instant_close.id"], name=op.f("fk_tx_intent_instant_close_id_instant_close")
        ),
        sa.ForeignKeyConstraint(["tx_id"], ["chain_tx.id"], name=op.f("fk_tx_intent_tx_id_chain_tx")),
        sa.CheckConstraint(f"kind IN ({INTENT_KINDS})", name=op.f("ck_tx_intent_kind")),
        sa.CheckConstraint(f"status IN ({INTENT_STATUSES})", name=op.f("ck_tx_intent_status")),
        sa.CheckConstraint(
            "status NOT IN ('in_tx', 'done') OR tx_id IS NOT NULL", name=op.f("ck_tx_intent_in_tx_has_tx")
        ),
        sa.CheckConstraint("quote_id IS NULL OR quote_id > 0", name=op.f("ck_tx_intent_quote_id_positive")),
        sa.CheckConstraint("lane >= 0", name=op.f("ck_tx_intent_lane_non_negative")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_tx_intent_version_positive")),
        sa.CheckConstraint(f"account ~ {ADDRESS}", name=op.f("ck_tx_intent_account_format")),
        sa.UniqueConstraint("key", name=op.f("uq_tx_intent_key")),
    )
    op.create_index("ix_tx_intent_queue", "tx_intent", ["lane", "id"], postgresql_where=sa.text("status = 'queued'"))
    op.create_index("ix_tx_intent_tx_id", "tx_intent", ["tx_id"])
    op.create_index("ix_tx_intent_instant_open_id", "tx_intent", ["instant_open_id"])
    op.create_index("ix_tx_intent_instant_close_id", "tx_intent", ["instant_close_id"])

    op.create_table(
        "follower_cursor",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        _now("modify_time"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_follower_cursor")),
    )
    op.create_table(
        "follower_block",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("block_number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.PrimaryKeyConstraint("name", "block_number", name=op.f("pk_follower_block")),
    )

    op.add_column("notification", sa.Column("event_key", sa.String(160), nullable=True))
    op.create_unique_constraint(op.f("uq_notification_event_key"), "notification", ["event_key"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_notification_event_key"), "notification", type_="unique")
    op.drop_column("notification", "event_key")
    op.drop_table("follower_block")
    op.drop_table("follower_cursor")
    op.drop_table("tx_intent")
    op.drop_table("tx_attempt")
    op.drop_table("chain_tx")
