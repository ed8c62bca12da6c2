"""initial: instant opens and closes, quote mirror, notifications, append-only audit log

Revision ID: 0001
Revises:
Create Date: 2026-11-21 00:00:00+00:00

Written by hand to match solver/db/models (tests/integration/test_db_migrations.py checks that
autogenerate finds no difference, and that every CHECK constraint name matches). Names follow
the naming convention of solver/db/models/base.py.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(78, 18)
ADDRESS = "'^0x[0-9a-fA-F]{40}$'"

INSTANT_OPEN_STATUSES = "'pending', 'sent', 'cancel_requested', 'opened', 'failed', 'cancelled'"
INSTANT_CLOSE_STATUSES = "'pending', 'sent', 'cancel_requested', 'filled', 'failed', 'cancelled'"
ACTIVE_CLOSE_WHERE = "status IN ('pending', 'sent', 'cancel_requested')"

# Append-only in the database itself: application bugs or a stray manual query cannot rewrite
# history. Row triggers catch UPDATE/DELETE, a statement trigger catches TRUNCATE.
AUDIT_FUNCTION = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
"""


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("create_time", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("modify_time", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def _version() -> sa.Column[object]:
    return sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "instant_open",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("temp_quote_id", sa.BigInteger(), nullable=False),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("symbol_id", sa.Integer(), nullable=False),
        sa.Column("position_type", sa.SmallInteger(), nullable=False),
        sa.Column("order_type", sa.SmallInteger(), nullable=False),
        sa.Column("requested_open_price", MONEY, nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("cva", MONEY, nullable=False),
        sa.Column("lf", MONEY, nullable=False),
        sa.Column("party_amm", MONEY, nullable=False),
        sa.Column("party_bmm", MONEY, nullable=False),
        sa.Column("max_funding_rate", MONEY, nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(24), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("quote_id", sa.BigInteger(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        _version(),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instant_open")),
        sa.CheckConstraint("temp_quote_id < 0", name=op.f("ck_instant_open_temp_quote_id_negative")),
        sa.CheckConstraint("quote_id IS NULL OR quote_id > 0", name=op.f("ck_instant_open_quote_id_positive")),
        sa.CheckConstraint(f"status IN ({INSTANT_OPEN_STATUSES})", name=op.f("ck_instant_open_status")),
        sa.CheckConstraint(
            "status <> 'opened' OR quote_id IS NOT NULL", name=op.f("ck_instant_open_opened_has_quote_id")
        ),
        sa.CheckConstraint("position_type IN (0, 1)", name=op.f("ck_instant_open_position_type")),
        sa.CheckConstraint("order_type IN (0, 1)", name=op.f("ck_instant_open_order_type")),
        sa.CheckConstraint(
            "quantity > 0 AND requested_open_price > 0 AND cva >= 0 AND lf >= 0"
            " AND party_amm >= 0 AND party_bmm >= 0 AND max_funding_rate >= 0",
            name=op.f("ck_instant_open_amounts"),
        ),
        sa.CheckConstraint(
            "idempotency_key IS NULL OR request_hash IS NOT NULL",
            name=op.f("ck_instant_open_idempotency_has_hash"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_instant_open_version_positive")),
        sa.CheckConstraint(f"account ~ {ADDRESS}", name=op.f("ck_instant_open_account_format")),
        sa.UniqueConstraint("account", "idempotency_key", name=op.f("uq_instant_open_account_idempotency_key")),
        sa.UniqueConstraint("temp_quote_id", name=op.f("uq_instant_open_temp_quote_id")),
        sa.UniqueConstraint("quote_id", name=op.f("uq_instant_open_quote_id")),
    )
    op.create_index("ix_instant_open_account_create_time", "instant_open", ["account", sa.text("create_time DESC")])
    op.create_index("ix_instant_open_status", "instant_open", ["status"])

    op.create_table(
        "instant_close",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("quote_id", sa.BigInteger(), nullable=False),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("quantity_to_close", MONEY, nullable=False),
        sa.Column("close_price", MONEY, nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(24), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("close_id", sa.BigInteger(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        _version(),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instant_close")),
        sa.CheckConstraint("quote_id > 0", name=op.f("ck_instant_close_quote_id_positive")),
        sa.CheckConstraint(f"status IN ({INSTANT_CLOSE_STATUSES})", name=op.f("ck_instant_close_status")),
        sa.CheckConstraint("quantity_to_close > 0 AND close_price > 0", name=op.f("ck_instant_close_amounts")),
        sa.CheckConstraint("close_id IS NULL OR close_id >= 0", name=op.f("ck_instant_close_close_id_non_negative")),
        sa.CheckConstraint(
            "idempotency_key IS NULL OR request_hash IS NOT NULL",
            name=op.f("ck_instant_close_idempotency_has_hash"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_instant_close_version_positive")),
        sa.CheckConstraint(f"account ~ {ADDRESS}", name=op.f("ck_instant_close_account_format")),
        sa.UniqueConstraint("account", "idempotency_key", name=op.f("uq_instant_close_account_idempotency_key")),
    )
    # At most one close in flight per quote, as on chain.
    op.create_index(
        "uq_instant_close_active_quote_id",
        "instant_close",
        ["quote_id"],
        unique=True,
        postgresql_where=sa.text(ACTIVE_CLOSE_WHERE),
    )
    op.create_index("ix_instant_close_account_create_time", "instant_close", ["account", sa.text("create_time DESC")])
    op.create_index("ix_instant_close_status", "instant_close", ["status"])

    op.create_table(
        "quote",
        sa.Column("quote_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("party_a", sa.String(42), nullable=False),
        sa.Column("party_b", sa.String(42), nullable=True),
        sa.Column("symbol_id", sa.Integer(), nullable=False),
        sa.Column("position_type", sa.SmallInteger(), nullable=False),
        sa.Column("order_type", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("requested_open_price", MONEY, nullable=False),
        sa.Column("opened_price", MONEY, nullable=True),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("closed_amount", MONEY, server_default=sa.text("0"), nullable=False),
        sa.Column("avg_closed_price", MONEY, nullable=True),
        sa.Column("cva", MONEY, nullable=False),
        sa.Column("lf", MONEY, nullable=False),
        sa.Column("party_amm", MONEY, nullable=False),
        sa.Column("party_bmm", MONEY, nullable=False),
        sa.Column("trading_fee", MONEY, nullable=False),
        sa.Column("deadline", sa.BigInteger(), nullable=False),
        sa.Column("quantity_to_close", MONEY, server_default=sa.text("0"), nullable=False),
        sa.Column("requested_close_price", MONEY, server_default=sa.text("0"), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("temp_quote_id", sa.BigInteger(), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("quote_id", name=op.f("pk_quote")),
        sa.CheckConstraint("quote_id > 0", name=op.f("ck_quote_quote_id_positive")),
        sa.CheckConstraint("temp_quote_id IS NULL OR temp_quote_id < 0", name=op.f("ck_quote_temp_quote_id_negative")),
        sa.CheckConstraint("status BETWEEN 0 AND 10", name=op.f("ck_quote_status")),
        sa.CheckConstraint("position_type IN (0, 1)", name=op.f("ck_quote_position_type")),
        sa.CheckConstraint("order_type IN (0, 1)", name=op.f("ck_quote_order_type")),
        sa.CheckConstraint(
            "requested_open_price >= 0 AND (opened_price IS NULL OR opened_price >= 0) AND quantity >= 0"
            " AND closed_amount >= 0 AND closed_amount <= quantity"
            " AND (avg_closed_price IS NULL OR avg_closed_price >= 0) AND cva >= 0 AND lf >= 0"
            " AND party_amm >= 0 AND party_bmm >= 0 AND trading_fee >= 0 AND quantity_to_close >= 0"
            " AND requested_close_price >= 0",
            name=op.f("ck_quote_amounts"),
        ),
        sa.CheckConstraint("parent_id >= 0", name=op.f("ck_quote_parent_id_non_negative")),
        sa.CheckConstraint(f"party_a ~ {ADDRESS}", name=op.f("ck_quote_party_a_format")),
        sa.CheckConstraint(f"party_b IS NULL OR party_b ~ {ADDRESS}", name=op.f("ck_quote_party_b_format")),
        sa.UniqueConstraint("temp_quote_id", name=op.f("uq_quote_temp_quote_id")),
    )
    op.create_index("ix_quote_party_a_status", "quote", ["party_a", "status"])
    op.create_index("ix_quote_symbol_id_status", "quote", ["symbol_id", "status"])

    op.create_table(
        "notification",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("quote_id", sa.BigInteger(), nullable=True),
        sa.Column("temp_quote_id", sa.BigInteger(), nullable=True),
        sa.Column("counterparty_address", sa.String(42), nullable=False),
        sa.Column("filled_amount_open", MONEY, nullable=True),
        sa.Column("filled_amount_close", MONEY, nullable=True),
        sa.Column("avg_price_open", MONEY, nullable=True),
        sa.Column("avg_price_close", MONEY, nullable=True),
        sa.Column("last_seen_action", sa.String(64), nullable=False),
        sa.Column("action_status", sa.String(16), nullable=False),
        sa.Column("state_type", sa.String(16), nullable=False),
        sa.Column("failure_type", sa.String(64), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("order_type", sa.SmallInteger(), nullable=False),
        _version(),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.CheckConstraint("quote_id IS NULL OR quote_id > 0", name=op.f("ck_notification_quote_id_positive")),
        sa.CheckConstraint(
            "temp_quote_id IS NULL OR temp_quote_id < 0", name=op.f("ck_notification_temp_quote_id_negative")
        ),
        sa.CheckConstraint(
            "action_status IN ('seen', 'success', 'failed')", name=op.f("ck_notification_action_status")
        ),
        sa.CheckConstraint("state_type IN ('alert', 'report')", name=op.f("ck_notification_state_type")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_notification_version_positive")),
        sa.CheckConstraint(f"account ~ {ADDRESS}", name=op.f("ck_notification_account_format")),
        sa.CheckConstraint(
            f"counterparty_address ~ {ADDRESS}", name=op.f("ck_notification_counterparty_address_format")
        ),
    )
    op.create_index("ix_notification_account_create_time", "notification", ["account", sa.text("create_time DESC")])
    op.create_index("ix_notification_account_quote_id", "notification", ["account", "quote_id"])
    op.create_index(
        "ix_notification_temp_quote_id",
        "notification",
        ["temp_quote_id"],
        postgresql_where=sa.text("temp_quote_id IS NOT NULL"),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.Text(), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(16), nullable=False),
        sa.Column("data", postgresql.JSONB(), server_default=sa.text("'{}'"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_entity_entity_id", "audit_log", ["entity", "entity_id"])
    op.execute(AUDIT_FUNCTION)
    op.execute(
        "CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
        " FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
    )


def downgrade() -> None:
    # Dropping the table drops its triggers; the function goes after.
    op.drop_table("audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_table("notification")
    op.drop_table("quote")
    op.drop_table("instant_close")
    op.drop_table("instant_open")
