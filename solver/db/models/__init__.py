"""All tables, registered on one metadata for Alembic.

`base` comes first: it installs the naming convention before any table is declared. A new
table module must be imported here, or Alembic will not see it (the parity test would then
report the table as missing from the models).
"""

from solver.db.models.audit_log import AuditLog
from solver.db.models.base import NAMING_CONVENTION, metadata
from solver.db.models.instant_close import (
    INSTANT_CLOSE_ACTIVE,
    INSTANT_CLOSE_TERMINAL,
    InstantClose,
    InstantCloseStatus,
)
from solver.db.models.instant_open import INSTANT_OPEN_TERMINAL, InstantOpen, InstantOpenStatus
from solver.db.models.notification import ActionStatus, Notification, StateType, new_notification_id
from solver.db.models.outbox import (
    INTENT_OPEN,
    ChainTx,
    FollowerBlock,
    FollowerCursor,
    IntentKind,
    IntentStatus,
    TxAttempt,
    TxIntent,
    TxStatus,
)
from solver.db.models.quote import Quote
from solver.db.models.strategy_order import (
    STRATEGY_LIVE,
    STRATEGY_TERMINAL,
    SUBORDER_LIVE,
    StrategyOrder,
    StrategyStatus,
    StrategySubOrder,
    StrategyType,
    SubOrderStatus,
)
from solver.db.models.trigger_order import (
    TRIGGER_ACTIVE,
    TRIGGER_TERMINAL,
    TriggerKind,
    TriggerOrder,
    TriggerStatus,
)

__all__ = [
    "INSTANT_CLOSE_ACTIVE",
    "INSTANT_CLOSE_TERMINAL",
    "INSTANT_OPEN_TERMINAL",
    "INTENT_OPEN",
    "NAMING_CONVENTION",
    "STRATEGY_LIVE",
    "STRATEGY_TERMINAL",
    "SUBORDER_LIVE",
    "TRIGGER_ACTIVE",
    "TRIGGER_TERMINAL",
    "ActionStatus",
    "AuditLog",
    "ChainTx",
    "FollowerBlock",
    "FollowerCursor",
    "InstantClose",
    "InstantCloseStatus",
    "InstantOpen",
    "InstantOpenStatus",
    "IntentKind",
    "IntentStatus",
    "Notification",
    "Quote",
    "StateType",
    "StrategyOrder",
    "StrategyStatus",
    "StrategySubOrder",
    "StrategyType",
    "SubOrderStatus",
    "TriggerKind",
    "TriggerOrder",
    "TriggerStatus",
    "TxAttempt",
    "TxIntent",
    "TxStatus",
    "metadata",
    "new_notification_id",
]
