"""trigger orders: stop loss and take profit per position

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 18:00:00+00:00

Written by hand to match solver/db/models/trigger_order.py (the parity test checks it).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(78, 18)
ADDRESS = "'^0x[0-9a-fA-F]{40}$'"
KINDS = "'stop_loss', 'take_profit'"
STATUSES = "'waiting', 'armed', 'triggered', 'filled', 'cancelled', 'failed'"
ACTIVE_WHERE = "status IN ('waiting', 'armed', 'triggered')"


def _now(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "trigger_order",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("quote_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("position_type", sa.SmallInteger(), nullable=False),
        sa.Column("symbol_id", sa.Integer(), nullable=False),
        sa.Column("trigger_price", MONEY, nullable=False),
        sa.Column("requested_price", MONEY, nullable=True),
        sa.Column("status", sa.String(24), server_default=sa.text("'waiting'"), nullable=False),
        sa.Column("quantity", MONEY, nullable=True),
        sa.Column("close_price", MONEY, nullable=True),
        sa.Column("fire_mark", MONEY, nullable=True),
        sa.Column("fire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("instant_close_id", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        _now("create_time"),
        _now("modify_time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trigger_order")),
        sa.ForeignKeyConstraint(
            ["instant_close_id"], ["instant_close.id"], name=op.f("fk_trigger_order_instant_close_id_instant_close")
        ),
        sa.CheckConstraint("quote_id > 0", name=op.f("ck_trigger_order_quote_id_positive")),
        sa.CheckConstraint(f"kind IN ({KINDS})", name=op.f("ck_trigger_order_kind")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_trigger_order_status")),
        sa.CheckConstraint("position_type IN (0, 1)", name=op.f("ck_trigger_order_position_type")),
        sa.CheckConstraint(
            "trigger_price > 0 AND (requested_price IS NULL OR requested_price >= 0)"
            " AND (quantity IS NULL OR quantity > 0) AND (close_price IS NULL OR close_price > 0)"
            " AND (fire_mark IS NULL OR fire_mark > 0)",
            name=op.f("ck_trigger_order_amounts"),
        ),
        sa.CheckConstraint(
            "status NOT IN ('triggered', 'filled') OR (instant_close_id IS NOT NULL AND quantity IS NOT NULL)",
            name=op.f("ck_trigger_order_fired_has_close"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_trigger_order_attempts_non_negative")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_trigger_order_version_positive")),
        sa.CheckConstraint(f"account ~ {ADDRESS}", name=op.f("ck_trigger_order_account_format")),
    )
    # One active stop loss and one active take profit per position.
    op.create_index(
        "uq_trigger_order_active_quote_id_kind",
        "trigger_order",
        ["quote_id", "kind"],
        unique=True,
        postgresql_where=sa.text(ACTIVE_WHERE),
    )
    op.create_index("ix_trigger_order_active", "trigger_order", ["symbol_id"], postgresql_where=sa.text(ACTIVE_WHERE))
    op.create_index("ix_trigger_order_account_create_time", "trigger_order", ["account", sa.text("create_time DESC")])
    op.create_index("ix_trigger_order_quote_id", "trigger_order", ["quote_id"])
    op.create_index("ix_trigger_order_modify_time", "trigger_order", ["modify_time"])


def downgrade() -> None:
    op.drop_table("trigger_order")
