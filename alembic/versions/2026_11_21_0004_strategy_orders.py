"""strategy orders (LIMIT and DCA) and their sub-orders

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 06:00:00+00:00

Written by hand to match solver/db/models/strategy_order.py (the parity test checks it).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(78, 18)
ADDRESS = "'^0x[0-9a-fA-F]{40}$'"
TYPES = "'limit', 'dca'"
STATUSES = (
    "'active', 'requested_cancellation', 'cancelled_by_user', 'cancelled_by_system', 'executed', 'max_retries_exceeded'"
)
SUB_STATUSES = "'sending', 'sent', 'opened', 'failed'"
LIVE_WHERE = "status IN ('active', 'requested_cancellation')"


def _now(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "strategy_order",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("symbol_id", sa.Integer(), nullable=False),
        sa.Column("position_type", sa.SmallInteger(), nullable=False),
        sa.Column("leverage", MONEY, nullable=False),
        sa.Column("initial_input_amount", MONEY, nullable=False),
        sa.Column("current_input_amount", MONEY, nullable=False),
        sa.Column("current_output_amount", MONEY, nullable=False),
        sa.Column("max_suborders", sa.SmallInteger(), nullable=False),
        sa.Column("max_invocations", sa.SmallInteger(), nullable=False),
        sa.Column("suborders_executed", sa.SmallInteger(), nullable=False),
        sa.Column("invocations_executed", sa.SmallInteger(), nullable=False),
        sa.Column("active_transactions", sa.SmallInteger(), nullable=False),
        sa.Column("slippage", MONEY, nullable=False),
        sa.Column("limit_price", MONEY, nullable=True),
        sa.Column("dca_delay_s", sa.Integer(), nullable=True),
        sa.Column("band_from", MONEY, nullable=True),
        sa.Column("band_to", MONEY, nullable=True),
        sa.Column("next_due_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(24), server_default=sa.text("'active'"), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        _now("create_time"),
        _now("modify_time"),
        sa.Column("close_time", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategy_order")),
        sa.UniqueConstraint("account", "idempotency_key", name=op.f("uq_strategy_order_account_idempotency_key")),
        sa.CheckConstraint(f"type IN ({TYPES})", name=op.f("ck_strategy_order_type")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_strategy_order_status")),
        sa.CheckConstraint("position_type IN (0, 1)", name=op.f("ck_strategy_order_position_type")),
        sa.CheckConstraint("leverage > 0", name=op.f("ck_strategy_order_leverage_positive")),
        sa.CheckConstraint(
            "initial_input_amount > 0 AND current_input_amount >= 0"
            " AND current_input_amount <= initial_input_amount AND current_output_amount >= 0",
            name=op.f("ck_strategy_order_amounts"),
        ),
        sa.CheckConstraint("slippage > 0 AND slippage <= 1", name=op.f("ck_strategy_order_slippage")),
        sa.CheckConstraint(
            "max_suborders BETWEEN 1 AND 255 AND max_invocations BETWEEN max_suborders AND 255"
            " AND suborders_executed BETWEEN 0 AND max_suborders"
            " AND invocations_executed BETWEEN 0 AND max_invocations AND active_transactions >= 0",
            name=op.f("ck_strategy_order_counters"),
        ),
        sa.CheckConstraint(
            "(type = 'limit' AND limit_price > 0 AND dca_delay_s IS NULL)"
            " OR (type = 'dca' AND limit_price IS NULL AND dca_delay_s > 0)",
            name=op.f("ck_strategy_order_settings"),
        ),
        sa.CheckConstraint(
            "(band_from IS NULL OR band_from > 0) AND (band_to IS NULL OR band_to > 0)"
            " AND (band_from IS NULL OR band_to IS NULL OR band_from <= band_to)",
            name=op.f("ck_strategy_order_band"),
        ),
        sa.CheckConstraint(
            f"(close_time IS NULL) = ({LIVE_WHERE})", name=op.f("ck_strategy_order_close_time_iff_terminal")
        ),
        sa.CheckConstraint(
            "idempotency_key IS NULL OR request_hash IS NOT NULL", name=op.f("ck_strategy_order_idempotency_has_hash")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_strategy_order_version_positive")),
        sa.CheckConstraint(f"account ~ {ADDRESS}", name=op.f("ck_strategy_order_account_format")),
    )
    op.create_index("ix_strategy_order_live", "strategy_order", ["symbol_id"], postgresql_where=sa.text(LIVE_WHERE))
    op.create_index("ix_strategy_order_account_id", "strategy_order", ["account", sa.text("id DESC")])
    op.create_index("ix_strategy_order_modify_time", "strategy_order", ["modify_time"])

    op.create_table(
        "strategy_suborder",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("invocation", sa.SmallInteger(), nullable=False),
        sa.Column("slots", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(16), server_default=sa.text("'sending'"), nullable=False),
        sa.Column("margin", MONEY, nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("mark", MONEY, nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("instant_open_id", sa.BigInteger(), nullable=True),
        sa.Column("quote_id", sa.BigInteger(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        _now("create_time"),
        _now("modify_time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategy_suborder")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["strategy_order.id"], name=op.f("fk_strategy_suborder_order_id_strategy_order")
        ),
        sa.ForeignKeyConstraint(
            ["instant_open_id"], ["instant_open.id"], name=op.f("fk_strategy_suborder_instant_open_id_instant_open")
        ),
        sa.UniqueConstraint("order_id", "invocation", name=op.f("uq_strategy_suborder_order_id_invocation")),
        sa.UniqueConstraint("instant_open_id", name=op.f("uq_strategy_suborder_instant_open_id")),
        sa.CheckConstraint(f"status IN ({SUB_STATUSES})", name=op.f("ck_strategy_suborder_status")),
        sa.CheckConstraint(
            "invocation BETWEEN 1 AND 255 AND slots BETWEEN 1 AND 255", name=op.f("ck_strategy_suborder_counters")
        ),
        sa.CheckConstraint(
            "margin > 0 AND quantity > 0 AND price > 0 AND mark > 0", name=op.f("ck_strategy_suborder_amounts")
        ),
        sa.CheckConstraint(
            "status = 'sending' OR status = 'failed' OR instant_open_id IS NOT NULL",
            name=op.f("ck_strategy_suborder_sent_has_open"),
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_strategy_suborder_version_positive")),
    )
    op.create_index(
        "ix_strategy_suborder_live",
        "strategy_suborder",
        ["order_id"],
        postgresql_where=sa.text("status IN ('sending', 'sent')"),
    )


def downgrade() -> None:
    op.drop_table("strategy_suborder")
    op.drop_table("strategy_order")
